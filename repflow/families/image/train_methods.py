"""Every training method of the image family, registered: importing this module imports each method's own
module (SimCLR and GenRep in :mod:`~repflow.families.image.contrastive`, ACL/DynACL, masked_ae, BiGAN in theirs),
each of which registers itself in :data:`TRAIN_METHODS`. Callers that pick a method by name (the params schema,
the stages, ``repflow families``) import the table from here, so none of them sees a partial table and no method
module imports another one back.

A new method is its module (with its ``TRAIN_METHODS.register`` call) plus one line in the import below.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

# each registers its methods on import (imported by full name, so a stage's code closure skips the declaration)
import repflow.families.image.acl  # noqa: F401
import repflow.families.image.masked_ae  # noqa: F401
import repflow.families.image.bigan  # noqa: F401
from repflow.families.image.contrastive import TRAIN_METHODS, TrainMethod
from repflow.families.image.models import ProjectionHead

__all__ = ["TRAIN_METHODS", "TrainMethod", "build_training_head", "load_training_head"]


def build_training_head(method: str, out_dim: int, image_shape: tuple[int, int, int], *, proj_dim: int,
                        dual_bn: bool) -> tuple[nn.Module, dict[str, Any]]:
    """The module trained next to the encoder for ``train.method`` = ``method``, and its JSON config.

    Contrastive methods: SimCLR's :class:`ProjectionHead` (``out_dim`` → ``proj_dim``, dual batch norm for
    adversarial methods), config ``{"in_dim", "out_dim", "dual_bn"}``. Pretext methods: the method's
    :class:`PretextHead` (``proj_dim`` unused), config ``{"pretext": method, "in_dim", "image_shape",
    "options"}``. :func:`load_training_head` rebuilds either from its config.
    """
    entry = TRAIN_METHODS[method]
    if entry.pretext is None:
        head = ProjectionHead(out_dim, proj_dim, dual_bn=dual_bn)
        return head, {"in_dim": out_dim, "out_dim": proj_dim, "dual_bn": dual_bn}
    if dual_bn:
        raise ValueError(f"training method {method!r} has a pretext head, which has no dual batch norm "
                         "(only adversarial contrastive methods use it)")
    head = entry.pretext(out_dim, tuple(image_shape))
    return head, {"pretext": method, **head.config()}


def load_training_head(config: dict[str, Any], state: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    """Rebuild a :func:`build_training_head` module from its ``config`` and load ``state`` into it; a config
    or state that does not fit raises ValueError naming ``path`` (the file both came from)."""
    try:
        if "pretext" in config:
            entry = TRAIN_METHODS[config["pretext"]]
            if entry.pretext is None:
                raise ValueError(f"training method {config['pretext']!r} has no pretext head")
            head = entry.pretext(config["in_dim"], tuple(config["image_shape"]), **config.get("options", {}))
        else:
            head = ProjectionHead(config["in_dim"], config["out_dim"], dual_bn=config.get("dual_bn", False))
        head.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: training head config {config} does not rebuild: {exc}") from None
    return head
