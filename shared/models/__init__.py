"""Models: registered small timm networks, adapters, training, checkpoints, quality gates.

``import shared.models`` registers ``resnet_small``, ``vgg_small`` and ``vit_small_shapes``
into timm, so ``timm.create_model("vgg_small")`` works afterwards. ``wrap(model)`` makes an
adapter for your own timm / torchvision network.
"""

from .adapter import IMAGENET_MEAN, IMAGENET_STD, LayerNotFoundError, ModelAdapter
from .checkpoint import CheckpointError, load_checkpoint, read_sidecar, save_checkpoint
from .wrap import wrap
from .zoo import adapter_spec, build, build_adapter, build_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckpointError",
    "LayerNotFoundError",
    "ModelAdapter",
    "adapter_spec",
    "build",
    "build_adapter",
    "build_model",
    "load_checkpoint",
    "read_sidecar",
    "save_checkpoint",
    "wrap",
]
