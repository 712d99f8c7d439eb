"""Methods listed once on the leaderboard when their maps are one method's (shared.pipeline.equal_maps)."""


import torch

from shared.pipeline.equal_maps import EQUAL_TOLERANCE, equal_methods
from shared.pipeline.map_files import save_maps
from shared.pipeline.leaderboard import find_equalities, main


def _maps(seed: int) -> torch.Tensor:
    return torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_a_positive_factor_per_image_is_the_same_method():
    a = _maps(0)
    scaled = a * torch.tensor([2.0, 0.5, 7.0, 1e-3])[:, None, None]
    found = equal_methods("resnet", {"gradcam": a, "hirescam": scaled, "other": _maps(1)})
    assert [(e.method, e.same_as) for e in found] == [("hirescam", "gradcam")]
    assert found[0].max_diff < 1e-6


def test_a_difference_above_the_tolerance_or_a_sign_flip_is_another_method():
    a = _maps(0)
    b = a.clone()
    b[0, 0, 0] += 3 * EQUAL_TOLERANCE * float(a[0].abs().max())
    assert equal_methods("resnet", {"gradcam": a, "nearly": b}) == []
    assert equal_methods("resnet", {"gradcam": a, "negated": -a}) == []  # a negative factor is not a rescaling


def test_all_zero_maps_equal_nothing():
    zero = torch.zeros(4, 8, 8)
    assert equal_methods("vit", {"a": zero, "b": zero.clone(), "c": _maps(2)}) == []


def test_the_earlier_paper_names_the_group(tmp_path):
    # XGrad-CAM (2020) and HiResCAM (2020) repeat Grad-CAM's (2017) maps: Grad-CAM is named, whatever the file order
    a = _maps(3)
    paths = []
    for name, maps in [("zeta_unknown", _maps(4)), ("gradcam", a * 3), ("eigencam", _maps(5))]:
        path = tmp_path / "resnet" / f"{name}.safetensors"
        save_maps(path, maps, {"method": name})
        paths.append(str(path))
    same = tmp_path / "resnet" / "gradcam_copy.safetensors"
    save_maps(same, a, {"method": "gradcam_copy"})
    found = find_equalities([str(same), *paths])
    assert [(e.model, e.method, e.same_as) for e in found] == [("resnet", "gradcam_copy", "gradcam")]
