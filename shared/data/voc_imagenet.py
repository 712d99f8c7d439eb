"""PASCAL VOC's 20 classes as sets of ImageNet-1k classes, for ImageNet classifiers explained on VOC.

An ImageNet-1k classifier has no "cat" logit: it has "tabby", "tiger cat", "Persian cat", ...
To explain a VOC object with such a classifier, each VOC class is mapped to the ImageNet-1k
classes that are kinds of it, named by WordNet id (``VOC_TO_IMAGENET``); their logit indices
are read from timm's own ImageNet metadata (``timm.data.ImageNetInfo``: its synset list is in
class-index order, so the index of a WordNet id is its position there), never typed by hand.

**Rule.** A VOC class maps to the ImageNet-1k classes whose WordNet synset is a hyponym of the
VOC class's synset (WordNet 3.0, the version ImageNet's ids are offsets of; the hierarchy was read
from WordNet's ``data.noun``), corrected where PASCAL's own annotation guidelines
(http://host.robots.ox.ac.uk/pascal/VOC/voc2007/guidelines.html, "Guidelines on categorisation")
draw the class wider or narrower than WordNet. Per class (ImageNet-1k indices):

============  ======================================  ==============================================
VOC class     ImageNet-1k classes                      basis
============  ======================================  ==============================================
aeroplane     airliner 404, warplane 895               WordNet ``airplane`` has only airliner; VOC's
                                                       aeroplane includes military planes (WordNet
                                                       files warplane under heavier-than-air craft).
                                                       Airship 405 (lighter-than-air) and wing 908 (a
                                                       part) are left out.
bicycle       bicycle-built-for-two 444, mountain      WordNet ``bicycle`` (444, 671); the guidelines
              bike 671, tricycle 870, unicycle 880     add "Includes tricycles, unicycles".
bird          the 59 bird classes 7-24, 80-100,        WordNet ``bird``.
              127-146
boat          aircraft carrier 403, canoe 472,         WordNet ``vessel, watercraft`` (boats and
              catamaran 484, container ship 510,       ships: the guidelines' boat is "Ships, rowing
              fireboat 554, gondola 576, lifeboat      boats, pedaloes"). Paddle 693 and paddlewheel
              625, liner 628, pirate 724, schooner     694 are parts, left out.
              780, speedboat 814, submarine 833,
              trimaran 871, wreck 913, yawl 914
bottle        beer bottle 440, pill bottle 720, pop    WordNet ``bottle`` (jugs are bottles there).
              bottle 737, water bottle 898, water
              jug 899, whiskey jug 901, wine bottle
              907
bus           minibus 654, school bus 779,             WordNet ``bus``.
              trolleybus 874
car           ambulance 407, beach wagon 436, cab      WordNet ``car``. Pickup 717, police van 734
              468, convertible 511, jeep 609,          (WordNet: trucks), go-kart 573 and golf cart
              limousine 627, minivan 656, Model T      575 (not cars) are left out.
              661, racer 751, sports car 817
cat           tabby 281, tiger cat 282, Persian cat    WordNet ``domestic cat`` (VOC's cat; the big
              283, Siamese cat 284, Egyptian cat 285   cats 286-293 are not VOC cats).
chair         barber chair 423, folding chair 559,     WordNet ``chair`` (park bench 703 is a bench).
              rocking chair 765, throne 857
cow           ox 345                                   WordNet ``cattle``; water buffalo 346 and
                                                       bison 347 are bovids but not cattle.
diningtable   dining table 532                         The same synset. Desk 526 and pool table 736
                                                       are tables, not tables to eat at.
dog           the 118 dog breeds 151-268               WordNet ``dog`` (domestic dog); wolves, foxes
                                                       and wild dogs 269-280 are not.
horse         sorrel 339                               WordNet ``horse``; zebra 340 is not one.
motorbike     moped 665, motor scooter 670             WordNet ``motorcycle`` has moped; motor
                                                       scooter (a wheeled vehicle in WordNet) is a
                                                       motorbike in VOC's sense.
person        (none)                                   Left out, see below.
pottedplant   pot, flowerpot 738                       The one container-for-content mapping: no
                                                       ImageNet-1k class is a plant in a pot; 738 is
                                                       "a container in which plants are cultivated"
                                                       (WordNet gloss) and a VOC potted plant's box
                                                       holds the pot. Vase 883 and daisy 985 are
                                                       left out (cut flowers, not potted plants).
sheep         ram 348                                  WordNet ``sheep``; bighorn 349 is a wild
                                                       (mountain) sheep, not the domestic sheep VOC
                                                       annotates.
sofa          studio couch 831                         WordNet ``sofa`` (a convertible sofa).
train         bullet train 466, electric locomotive    WordNet ``train`` has bullet train; VOC's
              547, freight car 565, passenger car      train includes locomotives and carriages seen
              705, steam locomotive 820                alone (as annotated). Streetcar 829 (a tram)
                                                       is left out.
tvmonitor     monitor 664, screen 782, television 851  ImageNet's display classes (WordNet files
                                                       them under equipment, device, system). Laptop
                                                       620 and desktop computer 527 are computers.
============  ======================================  ==============================================

**Left out: person.** ImageNet-1k's only persons are ballplayer 981, groom 982 and scuba diver
983 (WordNet hyponyms of ``person``). Their training images define them by context (a baseball
field, a wedding, diving gear), so the best of the three on an arbitrary VOC person explains that
context, not the person; and persons are in a large share of VOC images, so a noisy target would
weigh heavily. A step that meets a person counts it as left out (``UNMAPPED``).

The sets are disjoint (tested): an ImageNet class explains at most one VOC class.

**Explained target** (:func:`mapped_targets`): for a row of VOC class c on an image, the
highest-scoring ImageNet class within c's set on that image, i.e. the class the classifier itself
names for that object among the kinds of c. The Grad-CAM paper explains fine-grained ImageNet
classes of the objects of a cat-and-dog image, "tiger cat" and "boxer" (Fig. 1 c, i; the authors'
code, ramprs/grad-cam README: "283 = Tiger cat, 243 = Boxer. These correspond to ILSVRC synset
IDs", 1-based, i.e. our 282 and 242); it does not say how it picked them, so we let the
classifier's scores pick.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

VOC_TO_IMAGENET: dict[str, tuple[str, ...]] = {
    "aeroplane": ("n02690373", "n04552348"),
    "bicycle": ("n02835271", "n03792782", "n04482393", "n04509417"),
    "bird": (
        # 7-24: cock .. great grey owl
        "n01514668", "n01514859", "n01518878", "n01530575", "n01531178", "n01532829", "n01534433",
        "n01537544", "n01558993", "n01560419", "n01580077", "n01582220", "n01592084", "n01601694",
        "n01608432", "n01614925", "n01616318", "n01622779",
        # 80-100: black grouse .. black swan
        "n01795545", "n01796340", "n01797886", "n01798484", "n01806143", "n01806567", "n01807496",
        "n01817953", "n01818515", "n01819313", "n01820546", "n01824575", "n01828970", "n01829413",
        "n01833805", "n01843065", "n01843383", "n01847000", "n01855032", "n01855672", "n01860187",
        # 127-146: white stork .. albatross
        "n02002556", "n02002724", "n02006656", "n02007558", "n02009229", "n02009912", "n02011460",
        "n02012849", "n02013706", "n02017213", "n02018207", "n02018795", "n02025239", "n02027492",
        "n02028035", "n02033041", "n02037110", "n02051845", "n02056570", "n02058221",
    ),
    "boat": (
        "n02687172", "n02951358", "n02981792", "n03095699", "n03344393", "n03447447", "n03662601",
        "n03673027", "n03947888", "n04147183", "n04273569", "n04347754", "n04483307", "n04606251",
        "n04612504",
    ),
    "bottle": ("n02823428", "n03937543", "n03983396", "n04557648", "n04560804", "n04579145", "n04591713"),
    "bus": ("n03769881", "n04146614", "n04487081"),
    "car": (
        "n02701002", "n02814533", "n02930766", "n03100240", "n03594945", "n03670208", "n03770679",
        "n03777568", "n04037443", "n04285008",
    ),
    "cat": ("n02123045", "n02123159", "n02123394", "n02123597", "n02124075"),
    "chair": ("n02791124", "n03376595", "n04099969", "n04429376"),
    "cow": ("n02403003",),
    "diningtable": ("n03201208",),
    "dog": (
        # 151-268: the 118 dog breeds, Chihuahua .. Mexican hairless
        "n02085620", "n02085782", "n02085936", "n02086079", "n02086240", "n02086646", "n02086910",
        "n02087046", "n02087394", "n02088094", "n02088238", "n02088364", "n02088466", "n02088632",
        "n02089078", "n02089867", "n02089973", "n02090379", "n02090622", "n02090721", "n02091032",
        "n02091134", "n02091244", "n02091467", "n02091635", "n02091831", "n02092002", "n02092339",
        "n02093256", "n02093428", "n02093647", "n02093754", "n02093859", "n02093991", "n02094114",
        "n02094258", "n02094433", "n02095314", "n02095570", "n02095889", "n02096051", "n02096177",
        "n02096294", "n02096437", "n02096585", "n02097047", "n02097130", "n02097209", "n02097298",
        "n02097474", "n02097658", "n02098105", "n02098286", "n02098413", "n02099267", "n02099429",
        "n02099601", "n02099712", "n02099849", "n02100236", "n02100583", "n02100735", "n02100877",
        "n02101006", "n02101388", "n02101556", "n02102040", "n02102177", "n02102318", "n02102480",
        "n02102973", "n02104029", "n02104365", "n02105056", "n02105162", "n02105251", "n02105412",
        "n02105505", "n02105641", "n02105855", "n02106030", "n02106166", "n02106382", "n02106550",
        "n02106662", "n02107142", "n02107312", "n02107574", "n02107683", "n02107908", "n02108000",
        "n02108089", "n02108422", "n02108551", "n02108915", "n02109047", "n02109525", "n02109961",
        "n02110063", "n02110185", "n02110341", "n02110627", "n02110806", "n02110958", "n02111129",
        "n02111277", "n02111500", "n02111889", "n02112018", "n02112137", "n02112350", "n02112706",
        "n02113023", "n02113186", "n02113624", "n02113712", "n02113799", "n02113978",
    ),
    "horse": ("n02389026",),
    "motorbike": ("n03785016", "n03791053"),
    "person": (),
    "pottedplant": ("n03991062",),
    "sheep": ("n02412080",),
    "sofa": ("n04344873",),
    "train": ("n02917067", "n03272562", "n03393912", "n03895866", "n04310018"),
    "tvmonitor": ("n03782006", "n04152593", "n04404412"),
}
"""VOC class -> the WordNet ids of its ImageNet-1k classes (empty: no counterpart, left out)."""

UNMAPPED: tuple[str, ...] = tuple(c for c, wnids in VOC_TO_IMAGENET.items() if not wnids)
"""VOC classes with no ImageNet-1k counterpart (see the module docstring): ``("person",)``."""


@lru_cache(maxsize=1)
def _info():
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    if info.num_classes() != 1000:
        raise RuntimeError(f"timm's ImageNetInfo lists {info.num_classes()} classes, expected ImageNet-1k's 1000")
    return info


def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-1k's WordNet ids in class-index order, from timm's metadata (``ImageNetInfo().label_names()``)."""
    return tuple(_info().label_names())  # the synset list, in class-index order


def imagenet_name(index: int) -> str:
    """The first lemma of ImageNet-1k class ``index`` (282 -> "tiger cat"), from timm's metadata."""
    return _info().index_to_description(int(index)).split(",")[0]


@lru_cache(maxsize=1)
def _index_of() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


def imagenet_indices(voc_class: str) -> tuple[int, ...]:
    """The ImageNet-1k class indices VOC class ``voc_class`` maps to, ascending (empty if unmapped)."""
    if voc_class not in VOC_TO_IMAGENET:
        raise KeyError(f"{voc_class!r} is not a PASCAL VOC class; VOC classes: {sorted(VOC_TO_IMAGENET)}")
    index = _index_of()
    missing = [w for w in VOC_TO_IMAGENET[voc_class] if w not in index]
    if missing:
        raise RuntimeError(f"WordNet ids {missing} of {voc_class!r} are not in timm's ImageNet-1k list")
    return tuple(sorted(index[w] for w in VOC_TO_IMAGENET[voc_class]))


def is_mapped(voc_class: str) -> bool:
    """Whether ``voc_class`` has ImageNet-1k classes (False for ``person``)."""
    return bool(imagenet_indices(voc_class))


def mapped_targets(logits, voc_classes: Sequence[str]):
    """The explained ImageNet class per row: the highest-scoring class within the row's VOC set.

    ``logits`` (B, 1000) from an ImageNet-1k classifier, ``voc_classes`` one VOC class per row.
    Returns (B,) int64 on ``logits``' device. Ties go to the lower index (``torch.argmax``). A row
    whose class is unmapped (``person``) is an error: callers leave such rows out first.
    """
    import torch

    if logits.ndim != 2 or logits.shape[1] != 1000:
        raise ValueError(f"logits must be (B, 1000) ImageNet-1k scores, got {tuple(logits.shape)}")
    if len(voc_classes) != logits.shape[0]:
        raise ValueError(f"{len(voc_classes)} VOC classes for {logits.shape[0]} rows of logits")
    names = list(dict.fromkeys(voc_classes))
    table = torch.zeros(len(names), 1000, dtype=torch.bool)
    for k, name in enumerate(names):
        indices = imagenet_indices(name)
        if not indices:
            raise ValueError(f"VOC class {name!r} has no ImageNet-1k classes (unmapped); leave its rows out")
        table[k, list(indices)] = True
    rows = torch.tensor([names.index(n) for n in voc_classes], dtype=torch.long)
    allowed = table[rows].to(logits.device)
    scores = logits.detach().float().masked_fill(~allowed, float("-inf"))
    return scores.argmax(dim=1)
