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
                       freq_scale: tuple[float, float] = (0.6, 1.5), time_scale: tuple[float, float] = (0.6, 1.5),
                       max_freq_shift: float | None = None) -> torch.Tensor:
    """Crop a random region of a zero-padded canvas (the patch centred on it, canvas = patch size ×
    ``virtual_scale`` as (frequency, time)) and resize it to the patch size, bilinearly.

    The region's size is the patch size × a scale drawn from ``freq_scale`` / ``time_scale`` (clipped to
    the canvas). This teaches invariance to small pitch and time stretches and shifts.

    ``max_freq_shift`` (mel bins; None = BYOL-A's unbounded crop): the most any row of the patch may move in
    frequency. Output row y (normalised to [-1, 1]) reads input row s·y + c, so content at input row u lands
    at (u − c)/s and moves by (u(1 − s) − c)/s; over the patch the largest move is (|1 − s| + |c|)/s, × F/2
    in bins. The scale is clamped to where that can stay within the bound (1/(1 + d) ≤ s ≤ 1/(1 − d), d the
    bound in normalised units) and the centre drawn within what is left (|c| ≤ d·s − |1 − s|). Why: BYOL-A's
    crop moves content by up to ~40 of 64 bins, which teaches exactly the invariance to frequency position
    that advneg's negatives (and a task whose classes sit at different frequencies) need the encoder to lack.
    """
    n, f = x.shape[0], x.shape[-2]
    vf, vt = virtual_scale
    sf = (torch.rand(n, generator=g) * (freq_scale[1] - freq_scale[0]) + freq_scale[0]).clamp(max=vf)
    st = (torch.rand(n, generator=g) * (time_scale[1] - time_scale[0]) + time_scale[0]).clamp(max=vt)
    # centres in the patch's normalised coordinates ([-1, 1] spans the patch; the canvas spans ±v)
    cy = (torch.rand(n, generator=g) * 2 - 1) * (vf - sf)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (vt - st)
    if max_freq_shift is not None:
        d = 2 * max_freq_shift / f
        sf = sf.clamp(min=1 / (1 + d), max=1 / (1 - d) if d < 1 else float("inf"))
        room = (d * sf - (1 - sf).abs()).clamp_min(0)
        cy = cy.clamp(min=-room, max=room)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = st, cx
    theta[:, 1, 1], theta[:, 1, 2] = sf, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def byol_a_view(x: torch.Tensor, g: torch.Generator, *, mixup_ratio: float = 0.4,
                virtual_scale: tuple[float, float] = (1.0, 1.5), freq_scale: tuple[float, float] = (0.6, 1.5),
                time_scale: tuple[float, float] = (0.6, 1.5), max_freq_shift: float | None = None) -> torch.Tensor:
    """One random view of every clip: mixup, then random resize crop (BYOL-A's order)."""
    return random_resize_crop(log_mixup_exp(x, g, ratio=mixup_ratio), g, virtual_scale=virtual_scale,
                              freq_scale=freq_scale, time_scale=time_scale, max_freq_shift=max_freq_shift)
