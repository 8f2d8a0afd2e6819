"""The transfer-attack model zoo: one white-box surrogate and black-box targets of other seeds,
architectures and training (SVD-SSA's CPU-scale protocol, research notes §4.4).

Pure functions: uint8 images and labels in, a trained :class:`models.Classifier` out. Which member
plays which part is data (``ZooSpec.role``), so the evaluate stage can build any subset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from repflow.families.image.models import Classifier, build_classifier
from repflow.families.image.supervised import train_classifier

__all__ = ["ZOO_SPECS", "ZooSpec", "member_role", "train_zoo_member"]

ROLES = ("surrogate", "target", "defence")


@dataclass(frozen=True)
class ZooSpec:
    """One zoo member. ``model``: :func:`models.build_classifier` options other than the shapes;
    ``seed_offset`` is added to the caller's seed, so two members of the same architecture differ only
    in initialisation and batch order; ``adversarial``: PGD training params (see ``train_classifier``)."""

    name: str
    role: str
    model: dict[str, Any]
    seed_offset: int = 0
    adversarial: dict[str, Any] | None = None
    lr: float = 1e-3
    notes: str = field(default="", compare=False)


_INSTANCE_CONVNET = {"arch": "convnet", "width": 32, "depth": 3, "norm": "instance"}
_BN_GAP_CONVNET = {"arch": "convnet", "width": 32, "depth": 3, "norm": "batch", "pool": "gap"}

ZOO_SPECS: dict[str, ZooSpec] = {spec.name: spec for spec in [
    ZooSpec("convnet_bn_gap", "surrogate", _BN_GAP_CONVNET, seed_offset=6000,
            notes="3-block ConvNet with batch norm and a global-average-pooled head, like the paper's Inception-v3; "
                  "SVD fusion splits it at block2"),
    ZooSpec("convnet", "target", _INSTANCE_CONVNET,
            notes="3-block ConvNet with instance norm and a flattened head (DC/DM's; the surrogate before issue 13: "
                  "instance norm removes σ₁ and u₁'s per-channel scale from a rank-1 block2 feature)"),
    ZooSpec("convnet_seed1", "target", _INSTANCE_CONVNET, seed_offset=1000,
            notes="convnet's architecture, another seed"),
    ZooSpec("mlp", "target", {"arch": "mlp", "width": 256, "depth": 2}, seed_offset=2000, notes="2×256 ReLU MLP"),
    ZooSpec("wide_cnn_bn", "target", {"arch": "convnet", "width": 64, "depth": 3, "norm": "batch"}, seed_offset=3000,
            notes="2× wider ConvNet with batch norm and a flattened head"),
    ZooSpec("resnet8", "target", {"arch": "resnet", "width": 16}, seed_offset=4000,
            notes="ResNet-8, widths 16-32-64; as the surrogate SVD fusion splits it at stage2"),
    ZooSpec("convnet_pgd", "defence", _INSTANCE_CONVNET, seed_offset=5000, adversarial={"eps": 0.1, "steps": 3},
            notes="convnet's architecture, PGD-3 adversarially trained at ε = 0.1"),
]}


def member_role(name: str, surrogate: str) -> str:
    """The part zoo member ``name`` plays when ``surrogate`` is the white-box model: "surrogate" for it
    alone; a member whose spec is the default surrogate but is not chosen becomes a "target"."""
    if name == surrogate:
        return "surrogate"
    role = ZOO_SPECS[name].role
    return "target" if role == "surrogate" else role


def train_zoo_member(spec: ZooSpec, images: torch.Tensor, labels: torch.Tensor, *, seed: int, epochs: int,
                     batch_size: int = 128, num_classes: int | None = None,
                     device: torch.device | str = "cpu") -> Classifier:
    """Build ``spec``'s classifier for uint8 (N, C, H, W) ``images`` (normalised by their per-channel
    mean and std) and train it; returns it in eval mode on ``device``. Reproducible on CPU per seed."""
    if spec.role not in ROLES:
        raise ValueError(f"zoo member {spec.name!r} has role {spec.role!r}; allowed: {list(ROLES)}")
    pixels = images.float().div(255).transpose(0, 1).flatten(1)
    config = {**spec.model, "in_shape": list(images.shape[1:]),
              "num_classes": num_classes if num_classes is not None else int(labels.max()) + 1,
              "mean": pixels.mean(1).tolist(), "std": pixels.std(1).clamp_min(1e-3).tolist()}
    member_seed = seed + spec.seed_offset
    torch.manual_seed(member_seed)
    model = build_classifier(config)
    train_classifier(model, images, labels, epochs=epochs, lr=spec.lr, batch_size=batch_size, seed=member_seed,
                     device=device, adversarial=spec.adversarial)
    return model.eval()
