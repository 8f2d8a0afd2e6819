"""Supervised classifiers for inputs in [0, 1]: the transfer-attack model zoo and the networks that
distilled sets are evaluated on.

Every classifier is a sequence of *named stages* (``model.layer_names``); ``model.split(name)`` returns
(front, back) with ``back(front(x)) == model(x)``, which is what feature-level attacks (SVD logit
fusion) and feature inspection need. Like the encoders, each classifier normalises its own input.
Output: logits (N, num_classes).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from repflow.families.image.models.encoders import _BasicBlock, _Normalize

__all__ = ["Classifier", "CLASSIFIERS", "build_classifier"]


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)  # instance norm with affine, as in DC/DM's ConvNet
    if kind == "group":
        return nn.GroupNorm(min(4, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm {kind!r} unknown; allowed: batch, instance, group, none")


class Classifier(nn.Module):
    """``normalize`` followed by named stages run in order; the last stage returns logits."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = _Normalize(mean, std)
        self.stages = nn.Sequential(stages)

    @property
    def layer_names(self) -> list[str]:
        """Stage names, in order; any but the last is a valid split point."""
        return [name for name, _ in self.stages.named_children()]

    def split(self, layer: str) -> tuple[nn.Module, nn.Module]:
        """(front, back): front maps an image to the output of stage ``layer``, back maps that to logits."""
        names = self.layer_names
        if layer not in names[:-1]:
            raise ValueError(f"classifier has no split layer {layer!r}; valid layers: {names[:-1]}")
        cut = names.index(layer) + 1
        children = list(self.stages.children())
        return nn.Sequential(self.normalize, *children[:cut]), nn.Sequential(*children[cut:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.normalize(x))


POOLS = ("flatten", "gap")


def convnet(in_shape: Sequence[int], num_classes: int, width: int = 64, depth: int = 3, norm: str = "instance",
            pool: str = "flatten", mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None) -> Classifier:
    """The dataset-distillation ConvNet (DC/DM/GLaD): ``depth`` × [conv3×3 → norm → ReLU → avg-pool 2],
    then a linear head on the flattened (width · h · w) map (``pool="flatten"``, DC/DM's head) or on its
    global average (``pool="gap"``, width features; the head of Inception/ResNet surrogates)."""
    if pool not in POOLS:
        raise ValueError(f"pool {pool!r} unknown; allowed: {', '.join(POOLS)}")
    c, h, w = in_shape
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(depth):
        stages[f"block{i + 1}"] = nn.Sequential(nn.Conv2d(c if i == 0 else width, width, 3, padding=1),
                                                _norm(norm, width), nn.ReLU(inplace=True), nn.AvgPool2d(2))
        h, w = h // 2, w // 2
    if h < 1 or w < 1:
        raise ValueError(f"convnet depth {depth} pools a {in_shape[1]}x{in_shape[2]} input below 1 pixel")
    if pool == "gap":
        stages["fc"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
    else:
        stages["fc"] = nn.Sequential(nn.Flatten(), nn.Linear(width * h * w, num_classes))
    return Classifier(stages, mean or [0.5] * c, std or [0.25] * c)


def mlp(in_shape: Sequence[int], num_classes: int, width: int = 256, depth: int = 2,
        mean: Sequence[float] | None = None, std: Sequence[float] | None = None, **_: Any) -> Classifier:
    """``depth`` fully connected ReLU layers of ``width`` units on the flattened image."""
    c, h, w = in_shape
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    d_in = c * h * w
    for i in range(depth):
        layer = [nn.Flatten()] if i == 0 else []
        stages[f"fc{i + 1}"] = nn.Sequential(*layer, nn.Linear(d_in, width), nn.ReLU(inplace=True))
        d_in = width
    stages["out"] = nn.Linear(d_in, num_classes)
    return Classifier(stages, mean or [0.5] * c, std or [0.25] * c)


def resnet(in_shape: Sequence[int], num_classes: int, width: int = 16, mean: Sequence[float] | None = None,
           std: Sequence[float] | None = None, **_: Any) -> Classifier:
    """A small ResNet (ResNet-8): 3×3 stem, three stages of one basic block (width, 2w, 4w), global pool."""
    c = in_shape[0]
    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["stem"] = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True))
    stages["stage1"] = _BasicBlock(width, width, 1)
    stages["stage2"] = _BasicBlock(width, 2 * width, 2)
    stages["stage3"] = _BasicBlock(2 * width, 4 * width, 2)
    stages["head"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))
    return Classifier(stages, mean or [0.5] * c, std or [0.25] * c)


CLASSIFIERS = {"convnet": convnet, "mlp": mlp, "resnet": resnet}


def build_classifier(config: dict[str, Any]) -> Classifier:
    """Build from a JSON-able config: ``{"arch", "in_shape": [C, H, W], "num_classes"}`` plus the
    architecture's own options (``width``, ``depth``, ``norm``, ``pool``, ``mean``, ``std``). The result keeps the
    config as ``model.config``."""
    arch = config.get("arch")
    if arch not in CLASSIFIERS:
        raise ValueError(f"classifier arch {arch!r} unknown; allowed: {sorted(CLASSIFIERS)}")
    kwargs = {k: v for k, v in config.items() if k not in ("arch", "in_shape", "num_classes")}
    model = CLASSIFIERS[arch](tuple(config["in_shape"]), int(config["num_classes"]), **kwargs)
    model.config = dict(config)  # what rebuilds it: saved beside its weights
    return model
