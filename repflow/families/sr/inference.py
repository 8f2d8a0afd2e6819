"""Inference utilities for the SR models: self-ensemble (the "+" variants), parameter and MAC counts, and
tiled upscaling of images of any size with bounded memory and no seams."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from repflow import costs
from repflow.costs import count_params
from repflow.families.sr.symmetry import dihedral, undo_dihedral
from repflow.progress import progress

__all__ = ["ENSEMBLE_ORDER", "self_ensemble", "count_params", "count_macs", "count_other_ops", "tile_spans",
           "upscaled_tiles", "upscale_tiled"]

Upscaler = Callable[[torch.Tensor], torch.Tensor]


ENSEMBLE_ORDER = (0, 5, 3, 6, 1, 4, 2, 7)
"""The self-ensemble's symmetry codes (:func:`~repflow.families.sr.symmetry.dihedral`) in the order it sums them:
the rotations by 0, 90, 180 and 270°, then the same after a left–right flip (the order fixes the float sum)."""


def self_ensemble(model: Upscaler, x: torch.Tensor) -> torch.Tensor:
    """Mean over the 8 symmetries T of the square (4 rotations × optional flip) of T⁻¹(model(T(x))).

    The "+" variants of SR papers (EDSR+, SHSR+): 8 forward passes, no training. For a model that is
    already equivariant to these symmetries it returns the model's output.
    """
    total = None
    for code in ENSEMBLE_ORDER:
        out = undo_dihedral(model(dihedral(x, code)), code)
        total = out if total is None else total + out
    return total / 8


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on a tensor of ``input_shape`` (e.g. (1, 3, 48, 48)), by
    :func:`repflow.costs.count_macs`: a k×k conv from Cin to Cout channels on an H×W output counts
    H·W·Cin·Cout·k² MACs, the convention of SR papers' MAC tables (and of thop / ptflops for convolutions)."""
    if len(input_shape) != 4 or any(not isinstance(s, int) or s < 1 for s in input_shape):
        raise ValueError(f"input_shape must be 4 positive ints (N, C, H, W), got {input_shape!r}")
    reference = next(model.parameters(), None)
    x = torch.rand(input_shape, device=reference.device if reference is not None else "cpu",
                   dtype=reference.dtype if reference is not None else torch.float32)
    return costs.count_macs(model, x)


_MAC_OPS = {"convolution", "mm", "addmm", "bmm"}
"""aten ops :func:`count_macs` counts; :func:`count_other_ops` counts every other op that writes elements."""
_TAPS = {"upsample_bicubic2d": 16, "upsample_bilinear2d": 4}
"""Input taps read per output element by the interpolations (the pooling ops' taps come from their kernel)."""


class _ElementOps(TorchDispatchMode):
    """Counts, per aten op name, the element operations of every op outside :data:`_MAC_OPS` that writes a new
    tensor: its output elements × the taps each reads (k² for a k×k pooling window, 16 for bicubic, else 1)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__.rstrip("_")
        if name in _MAC_OPS or not isinstance(out, torch.Tensor) or func.is_view:
            return out
        if name in ("avg_pool2d", "max_pool2d_with_indices"):
            kernel = args[1]
            taps = kernel[0] * (kernel[1] if len(kernel) > 1 else kernel[0])
        else:
            taps = _TAPS.get(name, 1)
        self.ops[name] += out.numel() * taps
        return out


def count_other_ops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """What :func:`count_macs` leaves out, on one forward pass of a random tensor of ``input_shape``: element
    operations per aten op (``add``, ``mul``, ``avg_pool2d``, ``rsqrt``, ``relu``, ``cat``, copies, ...), each
    op's output elements × the input taps each reads (k² for pooling, 16 for bicubic upsampling). Views
    (reshape, chunk) count zero; so do the convolutions and matrix products, which :func:`count_macs` counts.
    An element operation is not a MAC (an add or a max is one arithmetic op, an average over k² taps k²); both
    are counts of work, and the measured time says what they cost together."""
    if len(input_shape) != 4 or any(not isinstance(s, int) or s < 1 for s in input_shape):
        raise ValueError(f"input_shape must be 4 positive ints (N, C, H, W), got {input_shape!r}")
    reference = next(model.parameters(), None)
    x = torch.rand(input_shape, device=reference.device if reference is not None else "cpu",
                   dtype=reference.dtype if reference is not None else torch.float32)
    counter = _ElementOps()
    with torch.no_grad(), counter:
        model(x)
    return dict(counter.ops.most_common())


def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Along one axis of ``size`` LR pixels: (core start, core end, window start, window end) per tile.

    Cores of ``tile − 2·overlap`` pixels partition [0, size); each window is its core plus up to ``overlap``
    pixels of context per side, cut at the image's edges (where the model sees the image's own border, as
    on the whole image). An image smaller than one tile is one window, the whole axis.
    """
    core = tile - 2 * overlap
    spans = []
    for start in range(0, size, core):
        end = min(start + core, size)
        spans.append((start, end, max(0, start - overlap), min(size, end + overlap)))
    return spans


def _check_tiling(scale: int, tile: int, overlap: int) -> None:
    for name, value, minimum in (("scale", scale, 1), ("tile", tile, 1), ("overlap", overlap, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must be larger than 2·overlap ({2 * overlap}): each tile needs a core "
                         f"of at least one pixel besides its {overlap} px of context per side")


def upscaled_tiles(model: Upscaler, window: Callable[[int, int, int, int], torch.Tensor], height: int, width: int,
                   scale: int, *, tile: int = 96, overlap: int = 16
                   ) -> Iterator[tuple[tuple[int, int, int, int], torch.Tensor]]:
    """The HR output of an ``height`` × ``width`` LR image tile by tile: ((row0, row1, col0, col1) in HR pixels,
    float (N, 3, row1 − row0, col1 − col0) core output) per tile, in row-major order.

    ``window(r0, r1, c0, c1)`` returns the float (N, 3, r1 − r0, c1 − c0) LR window in [0, 1]: the caller keeps
    the image in whatever form is cheapest (a float tensor, or uint8 converted one window at a time) and
    writes each core where it likes, so memory beyond the caller's arrays is one tile's. Each window is its
    core plus ``overlap`` LR pixels of context per side; only the core's output is kept. If ``overlap`` ≥
    the model's ``receptive_radius`` (see :mod:`.models`), every kept pixel is computed from exactly the
    inputs it sees on the whole image, so the result equals the whole-image output up to float rounding: no
    seams. Runs under ``torch.no_grad``; the model's train / eval mode is left as is (use eval)."""
    _check_tiling(scale, tile, overlap)
    windows = [(r, c) for r in tile_spans(height, tile, overlap) for c in tile_spans(width, tile, overlap)]
    for (r0, r1, wr0, wr1), (c0, c1, wc0, wc1) in progress(windows, desc="upscale tiles", unit="tile"):
        lr = window(wr0, wr1, wc0, wc1)
        with torch.no_grad():  # not around the yield: the caller's grad mode stays its own
            sr = model(lr)
        expected = (lr.shape[0], 3, scale * (wr1 - wr0), scale * (wc1 - wc0))
        if tuple(sr.shape) != expected:
            raise ValueError(f"model returned {tuple(sr.shape)} for an LR tile of {wr1 - wr0}×{wc1 - wc0}; "
                             f"expected {expected}: does the model upscale by scale={scale}?")
        core = sr[:, :, scale * (r0 - wr0):scale * (r1 - wr0), scale * (c0 - wc0):scale * (c1 - wc0)]
        yield (scale * r0, scale * r1, scale * c0, scale * c1), core


def upscale_tiled(model: Upscaler, image: torch.Tensor, scale: int, *, tile: int = 96,
                  overlap: int = 16) -> torch.Tensor:
    """Upscale ``image`` (N, 3, H, W) by ``scale``, running ``model`` on LR windows of at most ``tile``×``tile``
    pixels (:func:`upscaled_tiles`: no seams when ``overlap`` covers the model's receptive radius); returns
    the float (N, 3, scale·H, scale·W) output. ``model`` may be any upscaler, e.g. a self-ensemble."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [0, 1], got dtype {image.dtype}")
    _check_tiling(scale, tile, overlap)
    n, _, height, width = image.shape
    out = image.new_zeros(n, 3, scale * height, scale * width)
    for (r0, r1, c0, c1), core in upscaled_tiles(model, lambda a, b, c, d: image[:, :, a:b, c:d], height, width,
                                                 scale, tile=tile, overlap=overlap):
        out[:, :, r0:r1, c0:c1] = core
    return out
