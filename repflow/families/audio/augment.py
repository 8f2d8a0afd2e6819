"""BYOL-A's audio augmentations on batched normalised log-mel patches (N, 1, F, T).

Both are the official defaults of BYOL-A (Niizumi et al. 2021): mixup of a log-mel with another clip's in
the linear power domain (ratio 0.4) and a random resize crop from a virtual canvas (virtual crop scale
1.0 × 1.5, frequency and time scale 0.6–1.5). One difference, named: BYOL-A mixes with a FIFO memory of
the last 2048 inputs; here the partner is another clip of the same batch (a seeded permutation), which needs
no state between batches. All randomness comes from an explicit CPU generator (same seed, same views).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["log_mixup_exp", "random_resize_crop", "byol_a_view"]


def log_mixup_exp(x: torch.Tensor, g: torch.Generator, *, ratio: float = 0.4) -> torch.Tensor:
    """x' = log((1 − λ)·exp(x) + λ·exp(x_π)) with λ ~ U(0, ratio) per clip and π a random permutation:
    background sound from another clip, mixed as power, not as log power."""
    if ratio <= 0:
        return x
    n = x.shape[0]
    lam = (torch.rand(n, generator=g) * ratio).to(x.device).view(n, 1, 1, 1)
    partner = x[torch.randperm(n, generator=g).to(x.device)]
    return torch.logaddexp(x + torch.log1p(-lam), partner + torch.log(lam.clamp_min(1e-12)))


def random_resize_crop(x: torch.Tensor, g: torch.Generator, *, virtual_scale: tuple[float, float] = (1.0, 1.5),
                       freq_scale: tuple[float, float] = (0.6, 1.5), time_scale: tuple[float, float] = (0.6, 1.5)
                       ) -> torch.Tensor:
    """Crop a random region of a zero-padded canvas (the patch centred on it, canvas = patch size ×
    ``virtual_scale`` as (frequency, time)) and resize it to the patch size, bilinearly.

    The region's size is the patch size × a scale drawn from ``freq_scale`` / ``time_scale`` (clipped to
    the canvas). This teaches invariance to small pitch and time stretches and shifts: the positional
    changes the advneg method treats as negatives are larger than these.
    """
    n = x.shape[0]
    vf, vt = virtual_scale
    sf = (torch.rand(n, generator=g) * (freq_scale[1] - freq_scale[0]) + freq_scale[0]).clamp(max=vf)
    st = (torch.rand(n, generator=g) * (time_scale[1] - time_scale[0]) + time_scale[0]).clamp(max=vt)
    # centres in the patch's normalised coordinates ([-1, 1] spans the patch; the canvas spans ±v)
    cy = (torch.rand(n, generator=g) * 2 - 1) * (vf - sf)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (vt - st)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = st, cx
    theta[:, 1, 1], theta[:, 1, 2] = sf, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def byol_a_view(x: torch.Tensor, g: torch.Generator, *, mixup_ratio: float = 0.4,
                virtual_scale: tuple[float, float] = (1.0, 1.5), freq_scale: tuple[float, float] = (0.6, 1.5),
                time_scale: tuple[float, float] = (0.6, 1.5)) -> torch.Tensor:
    """One random view of every clip: mixup, then random resize crop (BYOL-A's order)."""
    return random_resize_crop(log_mixup_exp(x, g, ratio=mixup_ratio), g, virtual_scale=virtual_scale,
                              freq_scale=freq_scale, time_scale=time_scale)
