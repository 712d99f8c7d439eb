"""The template method against an independent computation (move to tests/papers/test_<id>.py).

On a conv → ReLU → global-average-pool → linear network, Grad-CAM's weights are the class's
linear weights over the number of positions, so its map is ReLU(Σ_k w_ck A_k) / hw: the class
activation map, computed here by hand from the network's parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.explain import ClassTarget, build_explainer
from shared.models.adapter import ModelAdapter


class GapNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def test_template_cam_is_the_class_activation_map() -> None:
    torch.manual_seed(0)
    adapter = ModelAdapter(GapNet(), "cnn", "classifier", "act", mean=(0, 0, 0), std=(1, 1, 1)).explain_mode()
    images, labels = torch.rand(2, 3, 8, 8), torch.tensor([0, 2])
    maps = build_explainer("template_cam", adapter)(images, ClassTarget(labels))
    with torch.no_grad():
        A = adapter.model.act(adapter.model.conv(images))
        expected = torch.einsum("bk,bkhw->bhw", adapter.model.fc.weight[labels], A).clamp_min(0) / 64
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-7)
