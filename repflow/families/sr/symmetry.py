"""The 8 symmetries of the square (the dihedral group D4) on image batches: the training loop's random flips
and 90° rotations, and the self-ensemble's 8 views. ``code`` in 0..7 names one: bit 0 flips left–right, bit 1
flips up–down, bit 2 then transposes."""
from __future__ import annotations

import torch

__all__ = ["dihedral", "undo_dihedral"]


def dihedral(x: torch.Tensor, code: int | torch.Tensor) -> torch.Tensor:
    """Symmetry ``code`` of (N, C, H, W). An int applies one symmetry to the whole batch (any H, W); a tensor
    (N,) of codes applies one per sample (square images, H == W), as the training augmentation draws them."""
    if isinstance(code, torch.Tensor):
        c = code.view(-1, 1, 1, 1).to(x.device)
        x = torch.where(c % 2 == 1, x.flip(-1), x)
        x = torch.where((c // 2) % 2 == 1, x.flip(-2), x)
        return torch.where(c // 4 == 1, x.transpose(-1, -2), x)
    if not 0 <= code <= 7:
        raise ValueError(f"dihedral code {code!r}: must be in 0..7")
    x = x.flip(-1) if code & 1 else x
    x = x.flip(-2) if code & 2 else x
    return x.transpose(-1, -2) if code & 4 else x


def undo_dihedral(y: torch.Tensor, code: int) -> torch.Tensor:
    """The inverse of :func:`dihedral` with the int ``code``."""
    if not 0 <= code <= 7:
        raise ValueError(f"dihedral code {code!r}: must be in 0..7")
    y = y.transpose(-1, -2) if code & 4 else y
    y = y.flip(-2) if code & 2 else y
    return y.flip(-1) if code & 1 else y
