"""Definition variants (shared.metrics.definitions): each against the library it follows, on the
same model, maps and targets; Average Gain by hand; the comparison of rankings on made-up scores."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn

from shared.metrics import average_drop_increase, average_gain, masked_images, normalised_minimum, pointing_game
from shared.metrics.definitions import BY_NAME, DEFINITIONS, families, per_image_values
from shared.pipeline import definitions as page
from shared.pipeline import metric_agreement

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def toy():
    """A tiny CNN classifier on normalised input, [0, 1] images, min-max normalised maps, targets."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(96, 5)).eval()
    images = torch.rand(6, 3, 16, 16)
    maps = torch.rand(6, 16, 16)
    maps = (maps - maps.amin((1, 2), keepdim=True)) / (maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True))
    with torch.no_grad():
        classes = net(normalise(images)).argmax(1)

    def score(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return net(normalise(x)).softmax(1).gather(1, classes[index].view(-1, 1)).squeeze(1)

    return net, images, maps, classes, score


def test_average_gain_by_hand():
    y = torch.tensor([0.5, 0.9, 1.0, 0.2], dtype=torch.float64)
    o = torch.tensor([0.75, 0.5, 1.0, 0.6], dtype=torch.float64)
    # (0.75-0.5)/0.5 = 0.5; no gain; Y = 1: nothing to gain; (0.6-0.2)/0.8 = 0.5
    assert average_gain(y, o).tolist() == pytest.approx([50.0, 0.0, 0.0, 50.0])
    with pytest.raises(ValueError, match="probabilities"):
        average_gain(torch.tensor([1.5]), torch.tensor([0.2]))


def test_normalised_masking_is_the_normalised_input_times_the_map(toy):
    _, images, maps, _, _ = toy
    got = normalise(masked_images(images, maps, "normalised", MEAN))
    assert torch.allclose(got, normalise(images) * maps.unsqueeze(1), atol=1e-5)
    assert torch.equal(masked_images(images, maps, "image"), images * maps.unsqueeze(1))


def library_values(toy):
    """Y and O (normalised masking) through our average_drop_increase, as the scores step does."""
    _, images, maps, _, score = toy
    r = average_drop_increase(maps, images, score, masking="normalised", mean=MEAN)[1.0]
    return r.base, r.masked


def test_average_drop_at_torchcam_equals_torchcam(toy):
    from torchcam.metrics import ClassificationMetric

    net, images, maps, classes, _ = toy

    class GivenMaps:
        """torch-cam's extractor protocol, returning our maps (torch-cam's own CAMs are min-max normalised too)."""

        model = net

        def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
            return [maps]

        def fuse_cams(self, cams):
            return cams[0]

        @contextmanager
        def _hooks_off(self):
            yield

    metric = ClassificationMetric(GivenMaps(), lambda logits: logits.softmax(-1))
    metric.update(normalise(images), class_idx=classes.tolist())
    theirs = metric.summary()
    y, o = library_values(toy)
    ours_drop = (100.0 * (y - o).clamp_min(0) / (y + 1e-7)).mean() / 100  # the scores step's average_drop@torchcam
    ours_increase = (o > y).double().mean()
    assert float(ours_drop) == pytest.approx(theirs["avg_drop"], rel=1e-5, abs=1e-7)
    assert float(ours_increase) == pytest.approx(theirs["conf_increase"])


def test_average_drop_at_pytorch_grad_cam_equals_drop_in_confidence(toy):
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    net, images, maps, classes, _ = toy
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    drop = DropInConfidence()(normalise(images), maps.numpy(), targets, net)
    increase = IncreaseInConfidence()(normalise(images), maps.numpy(), targets, net)
    y, o = library_values(toy)
    # pytorch-grad-cam: float32 scores, not divided by Y; ours in per cent
    assert np.allclose((y - o).clamp_min(0).numpy(), drop, atol=2e-6)
    clear = ((o - y).abs() > 1e-5).numpy()  # float32 there, float64 here: only near-ties could differ
    assert clear.sum() >= 3 and np.array_equal((o > y).numpy()[clear], increase.astype(bool)[clear])


def test_quantus_minimum_baseline_is_the_normalised_images_minimum(toy):
    from quantus.helpers.utils import get_baseline_dict

    _, images, _, _, _ = toy
    base = normalised_minimum(images, MEAN, STD)
    for i in range(images.shape[0]):
        arr = normalise(images[i : i + 1])[0].numpy()
        theirs = get_baseline_dict(arr, return_shape=arr.shape)["black"]
        assert torch.allclose(normalise(base[i : i + 1]), torch.full((1, 3, 16, 16), float(theirs)), atol=1e-5)


def test_pointing_game_without_tolerance_equals_quantus():
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(1)
    maps = torch.rand(5, 12, 12)
    masks = torch.zeros(5, 12, 12, dtype=torch.bool)
    masks[:, 3:8, 2:9] = True
    ours = pointing_game(maps, masks, tolerance=0.0)
    metric = quantus.PointingGame(disable_warnings=True, display_progressbar=False)
    theirs = metric(model=None, x_batch=np.zeros((5, 1, 12, 12), np.float32), y_batch=np.zeros(5, int),
                    a_batch=maps.numpy()[:, None], s_batch=masks.numpy()[:, None].astype(np.float32))
    assert ours.tolist() == [float(t) for t in theirs]


def test_every_definition_is_documented_and_families_have_variants():
    assert len({d.name for d in DEFINITIONS}) == len(DEFINITIONS)
    for d in DEFINITIONS:
        assert d.name.startswith(d.metric + "@") and d.follows and d.differs
    assert all(len(v) >= 2 for v in families().values())
    assert {"average_drop@torchcam", "average_drop@pytorch_grad_cam", "deletion@rise_code", "deletion@black", "pointing_game@tol15", "pointing_game@tol0"} <= set(BY_NAME)


def test_maxboxacc_per_image_values_average_to_the_metric():
    torch.manual_seed(2)
    hits = (torch.rand(20, 7, 3) > 0.5).long()
    v2 = per_image_values({"maxboxacc_v2": {"hits": hits.tolist()}}, BY_NAME["maxboxacc@v2"])
    assert sum(v2) / 20 == pytest.approx(float(hits.double().mean(0).amax(0).mean()))
    v1 = per_image_values({"maxboxacc": {"hits": hits[..., 0].tolist()}}, BY_NAME["maxboxacc@v1"])
    assert sum(v1) / 20 == pytest.approx(float(hits[..., 0].double().mean(0).max()))


def fake_scores(values: dict[str, list[float]], n: int = 30) -> dict:
    return {"image_ids": list(range(n)), "per_image": values}


def test_a_constructed_flip_is_found_and_significant():
    g = torch.Generator().manual_seed(3)
    noise = lambda: (0.01 * torch.randn(30, generator=g)).tolist()  # noqa: E731
    # under pointing_game@tol15 a is far better; under @tol0 b is: the order reverses
    a = fake_scores({"pointing_game": [0.9 + e for e in noise()], "pointing_game@tol0": [0.1 + e for e in noise()]})
    b = fake_scores({"pointing_game": [0.2 + e for e in noise()], "pointing_game@tol0": [0.8 + e for e in noise()]})
    c = fake_scores({"pointing_game": [0.5 + e for e in noise()], "pointing_game@tol0": [0.5 + e for e in noise()]})
    result = page.compare_model("m", {"a": a, "b": b, "c": c}, 200, 0.95, 0)
    (entry,) = result["metrics"]
    assert entry["metric"] == "pointing_game"
    assert entry["ranks"]["pointing_game@tol15"] == {"a": 1, "c": 2, "b": 3}
    assert entry["ranks"]["pointing_game@tol0"] == {"b": 1, "c": 2, "a": 3}
    assert entry["tau"][0]["tau"] == pytest.approx(-1.0)
    assert {(f["a"], f["b"]) for f in entry["flips"]} == {("a", "b"), ("a", "c"), ("b", "c")}
    assert all(f["significant"] for f in entry["flips"])
    assert "significant flips" in page.render({"models": [result]})


def test_metric_agreement_orients_lower_is_better():
    from shared.results import Provenance, ResultRecord

    prov = Provenance()

    def rec(metric, method, value):
        return ResultRecord(metric=metric, value=value, ci_low=value, ci_high=value, n=1, provenance=prov, method=method, model="m", dataset="d")

    values = {"a": 0.1, "b": 0.5, "c": 0.9}
    records = [rec("insertion", k, v) for k, v in values.items()] + [rec("deletion", k, v) for k, v in values.items()]
    records += [rec("pointing_game", k, 1 - v) for k, v in values.items()]
    (m,) = metric_agreement.agreement(records)["models"]
    tau = dict(zip(m["metrics"], m["tau"]))
    i = m["metrics"].index
    # deletion: lower is better, so the same numbers order the methods in reverse of insertion
    assert tau["insertion"][i("deletion")] == pytest.approx(-1.0)
    assert tau["deletion"][i("pointing_game")] == pytest.approx(1.0)
