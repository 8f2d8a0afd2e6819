"""Parameter and multiply-accumulate counts of networks, for the cost columns of every family's tables.

``count_macs`` takes any callable and its inputs, so a single-input model (an SR network) and a method of one
(a watermarker's ``embed(clip, msg)`` and ``extract(clip)``) are counted the same way.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_macs"]


def count_params(model: nn.Module) -> int:
    """Trainable and frozen parameters (a weight shared between layers counts once); buffers excluded."""
    return sum(p.numel() for p in model.parameters())


def count_macs(fn: Callable[..., Any], *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one call ``fn(*inputs)``, counted by torch's ``FlopCounterMode``.

    It counts matrix products and convolutions only (2 FLOPs per MAC): a k×k conv from Cin to Cout channels
    (``groups`` g) on an H×W output counts H·W·Cout·(Cin/g)·k² MACs, a k_t×k×k 3-D conv k_t times that per
    output frame; biases, activations, normalisation, pooling, interpolation and reshapes count zero.
    Runs without gradients; a module in training mode stays so (batch norm then updates its running stats).
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*inputs)
    return counter.get_total_flops() // 2
