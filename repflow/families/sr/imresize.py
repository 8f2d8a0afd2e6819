"""MATLAB-style bicubic resizing, the convention super-resolution papers (EDSR, MSRN, SHSR) use to make their
low-resolution inputs. Pure torch.

What MATLAB's ``imresize(I, scale, 'bicubic')`` does, and what :func:`imresize` reproduces for float images:

- Keys' cubic kernel with a = -0.5 (support [-2, 2]).
- Output pixel ``i`` (1-based) sits at input coordinate ``u = i / scale + 0.5 * (1 - 1 / scale)``, so pixel
  *areas* line up (the centre of the output's first pixel maps to the centre of the input's first ``1/scale``
  pixels).
- Antialiasing when shrinking (scale < 1): the kernel is stretched by ``1 / scale`` (``scale * cubic(scale * x)``,
  support ``4 / scale`` input pixels), so it is a low-pass filter at the new sampling rate.
- The weights of each output pixel are normalised to sum to 1.
- Beyond the border the image is mirrored half-sample symmetrically (index 0 reads pixel 1, -1 reads pixel 2,
  n + 1 reads pixel n): MATLAB's ``symmetric`` padding.
- Output size ``ceil(in * scale)``; with an explicit output size, each dimension's scale is ``out / in``.

Order of the two passes: MATLAB resizes the dimension with the smaller scale first. Each pass here is a linear
map on one axis, ``Y = R_h X R_w^T``, and the two maps commute, so for float images the order changes
nothing but float64 rounding; :func:`imresize` applies H then W. (For uint8 input MATLAB rounds between
passes, which makes the order matter; callers here resize floats and quantise once at the end, see
:func:`repflow.families.sr.patches.lr_of`.)

Other bicubics, measured against this one on the 14 scikit-image photos (LR images as 8-bit RGB; PSNR of
the other LR against ours, mean over the photos at x2 / x3 / x4):

- PIL ``Image.resize(..., BICUBIC)`` (Pillow 13): 56.1 / 56.1 / 56.0 dB. Pillow also uses a = -0.5 and
  stretches the kernel when shrinking, so it antialiases too; it differs by truncating the kernel at the
  border (renormalising) instead of mirroring (up to 11-13 grey levels in the outer 3 pixels) and by its
  fixed-point, 8-bit intermediate between passes (up to 3-4 levels on ~10-14% of interior values). The
  bicubic-upscaling baseline's Y-PSNR moves by less than 0.01 dB when its LR comes from PIL (0.08 dB at x2
  on the far smoother mate-backgrounds photos, whose baseline is 48 dB).
- ``torch.nn.functional.interpolate(mode="bicubic")``: a = -0.75 and no antialiasing: 36.3 / 31.0 / 30.2 dB,
  i.e. a different, aliased LR image; with ``antialias=True`` (a = -0.5, truncated border) 68.1 / 64.4 / 62.3 dB.

So the LR images here are MATLAB's; PIL would be a near miss, torch's default bicubic a different task.
(``python -m benchmarks.sr_bicubic``; results in ``benchmarks/results/sr_bicubic.md``.)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["imresize", "resize_matrix", "cubic", "CUBIC_A", "ImresizeError"]

CUBIC_A = -0.5
"""Keys' cubic parameter MATLAB uses (PyTorch and OpenCV use -0.75)."""


class ImresizeError(ValueError):
    """A scale, size or input :func:`imresize` cannot use; the message names the argument and what is allowed."""


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = :data:`CUBIC_A`, zero outside [-2, 2]."""
    a = CUBIC_A
    ax = x.abs()
    near = ((a + 2) * ax - (a + 3)) * ax * ax + 1
    far = ((a * ax - 5 * a) * ax + 8 * a) * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def resize_matrix(in_length: int, out_length: int, scale: float, *, antialias: bool = True) -> Tensor:
    """The (out_length, in_length) float64 matrix of one resizing pass: row i holds output pixel i's weights on
    the input pixels, after mirroring the out-of-range taps back inside (a tap beyond the border adds its weight
    to the pixel it mirrors to). Rows sum to 1."""
    shrink = antialias and scale < 1
    width = 4.0 / scale if shrink else 4.0
    out_pos = torch.arange(1, out_length + 1, dtype=torch.float64)
    centre = out_pos / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(centre - width / 2)
    taps = math.ceil(width) + 2
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    distance = centre[:, None] - index
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    period = 2 * in_length
    folded = torch.remainder(index.long() - 1, period)
    source = torch.where(folded < in_length, folded, period - 1 - folded)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    matrix.scatter_add_(1, source, weights)
    return matrix


def _output_size(in_size: tuple[int, int], scale: float | None,
                 size: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[float, float]]:
    if (scale is None) == (size is None):
        raise ImresizeError(f"imresize takes exactly one of scale and size, got scale={scale!r}, size={size!r}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
            raise ImresizeError(f"imresize: scale {scale!r} must be a positive finite number")
        out = tuple(math.ceil(n * scale - 1e-9) for n in in_size)
        if min(out) < 1:
            raise ImresizeError(f"imresize: scale {scale} turns {in_size} into an empty image {out}")
        return out, (float(scale), float(scale))
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in size)):
        raise ImresizeError(f"imresize: size {size!r} must be two positive ints (height, width)")
    return (size[0], size[1]), (size[0] / in_size[0], size[1] / in_size[1])


def imresize(x: Tensor, scale: float | None = None, size: tuple[int, int] | None = None, *,
             antialias: bool = True) -> Tensor:
    """Resize float images (N, C, H, W) (or (C, H, W), (H, W)) like MATLAB's bicubic ``imresize``.

    Give ``scale`` (output ``ceil(H * scale) x ceil(W * scale)``) or ``size`` ``(height, width)``. Values are
    not clamped: bicubic overshoots near edges, and the caller clamps to its range. ``antialias=False`` is
    MATLAB's ``'Antialiasing', false`` (kept for checks against published no-antialias numbers). Computed in
    float64 and returned in ``x``'s dtype on ``x``'s device; differentiable in ``x``.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ImresizeError(f"imresize takes a float tensor, got {getattr(x, 'dtype', type(x).__name__)}; "
                            "convert uint8 images with .float() / 255 first")
    if not 2 <= x.ndim <= 4:
        raise ImresizeError(f"imresize takes (H, W), (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    in_size = (x.shape[-2], x.shape[-1])
    if min(in_size) < 1:
        raise ImresizeError(f"imresize: empty image of shape {tuple(x.shape)}")
    (out_h, out_w), (scale_h, scale_w) = _output_size(in_size, scale, size)
    rows = resize_matrix(in_size[0], out_h, scale_h, antialias=antialias).to(x.device)
    cols = resize_matrix(in_size[1], out_w, scale_w, antialias=antialias).to(x.device)
    out = torch.matmul(rows, x.to(torch.float64))
    out = torch.matmul(out, cols.T)
    return out.to(x.dtype)
