"""PSNR and SSIM as super-resolution papers report them (EDSR, MSRN, SHSR; their MATLAB evaluation scripts).

The convention, pinned so numbers compare with published tables:
1. Both images are quantised to 8 bits first (``round(clamp(x, 0, 1) * 255)``): papers score the PNG files
   their models wrote, not the network's float output.
2. Only the luma is scored: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in [0, 1] (MATLAB's
   ``rgb2ycbcr``, BT.601, Y in [16, 235]), kept as float (``rgb2ycbcr(im2double(I))``, not its uint8 output).
3. ``scale`` pixels are shaved off every border (the upsampler cannot know what lies past the edge).
4. Data range 255. PSNR = 10 log10(255^2 / MSE) per image (inf for identical images).
5. SSIM as Wang et al.'s ``ssim_index.m``: an 11x11 Gaussian window with sigma 1.5 (normalised to sum 1),
   K1 = 0.01, K2 = 0.03, local statistics with population (1/N) covariance, only where the window lies
   fully inside the image ('valid'), averaged over that map. No automatic down-sampling (the later ``ssim.m``
   shrinks large images first; SR scripts call ``ssim_index``).

All functions take batches (N, 3, H, W): float in [0, 1] or uint8; scores are float64 tensors (N,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["rgb_to_y", "quantise", "shave", "psnr_y", "ssim_y", "ssim", "gaussian_window", "MetricError",
           "Y_WEIGHTS", "SSIM_WINDOW", "SSIM_SIGMA", "SSIM_K1", "SSIM_K2", "DATA_RANGE"]

Y_WEIGHTS = (65.481, 128.553, 24.966)
"""BT.601 luma weights on R, G, B in [0, 1], giving Y - 16 in [0, 219] (MATLAB's ``rgb2ycbcr``)."""
DATA_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class MetricError(ValueError):
    """Images the metrics cannot score; the message names the argument, its shape or dtype, and what is allowed."""


def _check_rgb(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
        raise MetricError(f"{name} must be RGB images (N, 3, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise MetricError(f"{name} must be uint8 or float in [0, 1], got {x.dtype}")


def quantise(x: Tensor) -> Tensor:
    """Float images in [0, 1] → the float64 values 0..255 an 8-bit file stores (clamped, rounded half to even,
    as ``torch.round``; MATLAB rounds half away from zero, which differs only at exact .5); uint8 as is."""
    if x.dtype == torch.uint8:
        return x.to(torch.float64)
    return torch.round(x.detach().to(torch.float64).clamp(0, 1) * 255)


def rgb_to_y(x: Tensor) -> Tensor:
    """RGB (N, 3, H, W), float in [0, 1] or uint8 → luma (N, 1, H, W) float64 in [16, 235] (not rounded).
    Float input is used as given (no quantisation; :func:`psnr_y` and :func:`ssim_y` quantise first)."""
    _check_rgb("rgb_to_y input", x)
    rgb = x.to(torch.float64) / 255 if x.dtype == torch.uint8 else x.to(torch.float64)
    weights = torch.tensor(Y_WEIGHTS, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return 16 + (rgb * weights).sum(dim=1, keepdim=True)


def shave(x: Tensor, border: int) -> Tensor:
    """``x`` (..., H, W) without ``border`` pixels on each side (0 keeps all)."""
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise MetricError(f"shave: border {border!r} must be an int >= 0")
    height, width = x.shape[-2:]
    if 2 * border >= min(height, width):
        raise MetricError(f"shave: border {border} leaves nothing of a {height}x{width} image")
    return x[..., border:height - border, border:width - border] if border else x


def _y_pair(sr: Tensor, hr: Tensor, scale: int) -> tuple[Tensor, Tensor]:
    _check_rgb("sr", sr)
    _check_rgb("hr", hr)
    if sr.shape != hr.shape:
        raise MetricError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} must have the same shape "
                          "(crop hr to the model's output size first)")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 0:
        raise MetricError(f"scale {scale!r} must be an int >= 0 (the border shaved, in pixels)")
    to_y = [rgb_to_y(quantise(x).to(torch.uint8)) for x in (sr, hr)]
    return shave(to_y[0], scale), shave(to_y[1], scale)


def psnr_y(sr: Tensor, hr: Tensor, scale: int) -> Tensor:
    """Y-channel PSNR (dB) per image (N,), after 8-bit quantisation and shaving ``scale`` pixels; inf where
    the shaved Y channels are identical."""
    y_sr, y_hr = _y_pair(sr, hr, scale)
    mse = (y_sr - y_hr).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(DATA_RANGE ** 2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """The 1-D Gaussian (size,) float64, summing to 1; SSIM's 2-D window is its outer product."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-offsets.square() / (2 * sigma * sigma))
    return taps / taps.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = DATA_RANGE) -> Tensor:
    """Mean SSIM per image (N,) of single-channel images (N, 1, H, W), Wang et al.'s definition: Gaussian
    window (:func:`gaussian_window`), population covariance, 'valid' map only (H, W >= 11)."""
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 1:
        raise MetricError(f"ssim takes two (N, 1, H, W) images of one shape, got {tuple(x.shape)} and "
                          f"{tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise MetricError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels (after shaving), "
                          f"got {x.shape[-2]}x{x.shape[-1]}")
    taps = gaussian_window().to(x.device)
    rows, cols = taps.view(1, 1, -1, 1), taps.view(1, 1, 1, -1)

    def local_mean(z: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(z, rows), cols)

    x, y = x.to(torch.float64), y.to(torch.float64)
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x.square()
    var_y = local_mean(y * y) - mu_y.square()
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    ssim_map = numerator / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def ssim_y(sr: Tensor, hr: Tensor, scale: int) -> Tensor:
    """Y-channel SSIM per image (N,), after 8-bit quantisation and shaving ``scale`` pixels (:func:`ssim`)."""
    y_sr, y_hr = _y_pair(sr, hr, scale)
    return ssim(y_sr, y_hr)

