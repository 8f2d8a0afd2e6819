"""SimCLR-style view augmentation on batched tensors (any channel count, any device).

All randomness comes from an explicit CPU ``torch.Generator`` so that the same seed gives the same
views on CPU, whatever the device the images live on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_views"]


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def random_views(x: torch.Tensor, g: torch.Generator, *, crop_scale_min: float = 0.5, flip: bool = True,
                 brightness: float = 0.4, contrast: float = 0.4, noise_std: float = 0.0) -> torch.Tensor:
    """One random view per image. ``x``: float (N,C,H,W) in [0,1]; returns the same shape in [0,1].

    Random resized crop (area fraction in [crop_scale_min, 1], aspect ratio in [3/4, 4/3]) and
    horizontal flip as one affine resampling, then brightness and contrast jitter and Gaussian noise.
    """
    n, dev = x.shape[0], x.device
    area = _uniform(n, crop_scale_min, 1.0, g)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), g)
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)
    ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, tx
    theta[:, 1, 1], theta[:, 1, 2] = h, ty
    grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    b = _uniform(n, 1 - brightness, 1 + brightness, g).to(dev).view(n, 1, 1, 1)
    c = _uniform(n, 1 - contrast, 1 + contrast, g).to(dev).view(n, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out * b - mean) * c + mean
    if noise_std > 0:
        out = out + noise_std * torch.randn(out.shape, generator=g).to(dev)
    return out.clamp(0.0, 1.0)
