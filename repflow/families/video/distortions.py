"""The noise layer between embedding and extraction: per-clip distortions of (N, 3, T, H, W) clips in [0, 1].

Each distortion is a module ``d(clip, generator=None) -> clip`` of the same shape, differentiable with respect
to the clip (or straight-through: the forward pass is the real operation, the backward pass the identity), so
the encoder learns through it. Random choices (noise, crop window, dropped frames) come from ``generator``
(a CPU ``torch.Generator``; None: torch's global one), so a seeded run distorts the same way every time.
Random choices are per clip and shared by its frames (one crop window, one noise draw per pixel), except
``frame_drop``, whose choice is which frames.

``DISTORTIONS`` maps a name to the class; ``DISTORTIONS[name](**options)`` builds one. :class:`Combined`
picks one distortion per batch, as HiDDeN's combined noise layer and MBRS's ``Combined`` do.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.registry import Registry

__all__ = ["Distortion", "Identity", "GaussianNoise", "Blur", "Crop", "FrameDrop", "JpegApprox", "StraightThrough",
           "Combined", "DISTORTIONS", "straight_through", "jpeg_quantisation_tables", "LUMA_TABLE", "CHROMA_TABLE"]

DISTORTIONS: Registry[type[nn.Module]] = Registry("video distortion")


def _check_clip(clip: torch.Tensor) -> None:
    if clip.dim() != 5:
        raise ValueError(f"a clip must be (N, C, T, H, W), got shape {tuple(clip.shape)}")


def _uniform(shape: Sequence[int], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=generator).to(like.device, like.dtype)


class Distortion(nn.Module):
    """A clip → clip distortion (see the module docstring)."""

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


@DISTORTIONS.register("identity")
class Identity(Distortion):
    """No distortion (the clean channel)."""

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(clip)
        return clip


@DISTORTIONS.register("gaussian_noise")
class GaussianNoise(Distortion):
    """Adds i.i.d. Gaussian noise of standard deviation ``sigma`` (pixel units, [0, 1] scale); not clamped."""

    def __init__(self, sigma: float = 0.02):
        super().__init__()
        if not sigma >= 0:
            raise ValueError(f"gaussian_noise sigma must be >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(clip)
        noise = torch.randn(tuple(clip.shape), generator=generator).to(clip.device, clip.dtype)
        return clip + self.sigma * noise


@DISTORTIONS.register("blur")
class Blur(Distortion):
    """Gaussian blur of every frame with a ``kernel``×``kernel`` kernel (odd) of standard deviation ``sigma``
    pixels (default: OpenCV's rule 0.3·((k − 1)/2 − 1) + 0.8); reflect padding, so the size is kept."""

    def __init__(self, kernel: int = 3, sigma: float | None = None):
        super().__init__()
        if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"blur kernel must be an odd int >= 1, got {kernel!r}")
        sigma = 0.3 * ((kernel - 1) / 2 - 1) + 0.8 if sigma is None else sigma
        if not sigma > 0:
            raise ValueError(f"blur sigma must be > 0, got {sigma!r}")
        offsets = torch.arange(kernel, dtype=torch.float32) - kernel // 2
        taps = torch.exp(-offsets.square() / (2 * sigma * sigma))
        self.register_buffer("taps", taps / taps.sum(), persistent=False)
        self.kernel = kernel

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(clip)
        if self.kernel == 1:
            return clip
        n, c, t, h, w = clip.shape
        planes = clip.reshape(n * c * t, 1, h, w)
        pad = self.kernel // 2
        taps = self.taps.to(clip.dtype)
        planes = F.conv2d(F.pad(planes, (pad, pad, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1))
        planes = F.conv2d(F.pad(planes, (0, 0, pad, pad), mode="reflect"), taps.view(1, 1, -1, 1))
        return planes.reshape(n, c, t, h, w)


@DISTORTIONS.register("crop")
class Crop(Distortion):
    """Keeps a random window of ``fraction`` of the area (sides scaled by √fraction, same aspect ratio, one
    window per clip for all its frames) and resizes it back to H×W bilinearly.

    HiDDeN's crop instead hands the decoder the smaller window itself; the resize back keeps one shape through
    the pipeline (a decoder with global pooling would accept either) and adds the rescaling a re-encoded
    cropped video would undergo. Differentiable with respect to the kept pixels."""

    def __init__(self, fraction: float = 0.5):
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"crop fraction (kept share of the area) must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(clip)
        n, c, t, h, w = clip.shape
        side = math.sqrt(self.fraction)
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        corners = _uniform((n, 2), generator, clip)
        out = []
        for i in range(n):
            top = int(corners[i, 0].item() * (h - ch + 1)) if h > ch else 0
            left = int(corners[i, 1].item() * (w - cw + 1)) if w > cw else 0
            window = clip[i, :, :, top:top + ch, left:left + cw].transpose(0, 1)
            resized = F.interpolate(window, size=(h, w), mode="bilinear", align_corners=False)
            out.append(resized.transpose(0, 1))
        return torch.stack(out)


@DISTORTIONS.register("frame_drop")
class FrameDrop(Distortion):
    """Drops each frame after the first with probability ``p`` and repeats the last kept frame in its place
    (what a decoder shows for a lost frame); T is kept. Differentiable: the gradient of a repeated frame goes
    to the frame it repeats."""

    def __init__(self, p: float = 0.25):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"frame_drop p must be in [0, 1), got {p!r}")
        self.p = float(p)

    def source_frames(self, n: int, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, t) long: the frame each output frame shows (the last kept frame at or before it)."""
        kept = torch.rand((n, t), generator=generator) >= self.p
        kept[:, 0] = True
        index = torch.arange(t).expand(n, t)
        return torch.where(kept, index, torch.zeros_like(index)).cummax(dim=1).values

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(clip)
        n, c, t, h, w = clip.shape
        source = self.source_frames(n, t, generator).to(clip.device)
        return torch.gather(clip, 2, source.view(n, 1, t, 1, 1).expand(n, c, t, h, w))


LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55), (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62), (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99))
"""The JPEG standard's example luminance quantisation table (ITU-T T.81 Annex K, Table K.1), row-major."""
CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99), (18, 21, 26, 66, 99, 99, 99, 99), (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99), *(((99,) * 8,) * 4))
"""The standard's example chrominance table (Table K.2)."""


def jpeg_quantisation_tables(quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(luma, chroma) 8×8 tables for ``quality`` 1..100 by the IJG rule libjpeg and Pillow use: scale =
    5000/q below 50, 200 − 2q from 50; entry = clamp(⌊(base·scale + 50)/100⌋, 1, 255). Quality 50 gives the
    base tables, 100 all ones."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality must be an int in 1..100, got {quality!r}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    tables = []
    for base in (LUMA_TABLE, CHROMA_TABLE):
        table = torch.div(torch.tensor(base) * scale + 50, 100, rounding_mode="floor")
        tables.append(table.clamp(1, 255).float())
    return tables[0], tables[1]


def _dct_matrix(size: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (size×size): coefficients of a block B are D B Dᵀ, and Dᵀ C D inverts."""
    k = torch.arange(size, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(size, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * size)) * math.sqrt(2 / size)
    d[0] /= math.sqrt(2)
    return d.float()


_RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
"""JFIF's full-range RGB → YCbCr (Cb, Cr then offset by 128 on the 0..255 scale)."""


def _cubic_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) + (x − round(x))³: within 0.125 of round(x), with gradient 3(x − round(x))² (Shin & Song 2017)."""
    rounded = torch.round(x)
    return rounded.detach() + (x - rounded.detach()) ** 3


def _straight_through_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


@DISTORTIONS.register("jpeg_approx")
class JpegApprox(Distortion):
    """A differentiable approximation of JPEG compression at ``quality`` (1..100), per frame.

    On the 0..255 scale: RGB → YCbCr (JFIF), minus 128, 8×8 block DCT (orthonormal DCT-II), divided by the
    quality-scaled standard tables (:func:`jpeg_quantisation_tables`; luma for Y, chroma for Cb and Cr),
    rounded, multiplied back, inverse DCT, back to RGB, /255. ``rounding``:

    - "cubic" (default): round(x) + (x − round(x))³ (Shin & Song 2017, 'JPEG-resistant adversarial images'):
      the forward value is within 1/8 of a quantisation step of real rounding, the gradient is 3(x − round(x))²,
      small near integers.
    - "straight_through": the forward value is exact rounding, the gradient the identity.

    Not modelled: chroma subsampling (this is 4:4:4, as Pillow's ``subsampling=0``), the integer IDCT of real
    decoders, clamping to 0..255 (the output is not clamped, so the gradient reaches every pixel), entropy
    coding (lossless). H and W that are not multiples of 8 are padded by edge replication and cropped back.
    """

    def __init__(self, quality: int = 50, rounding: str = "cubic"):
        super().__init__()
        luma, chroma = jpeg_quantisation_tables(quality)
        roundings: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "cubic": _cubic_round, "straight_through": _straight_through_round}
        if rounding not in roundings:
            raise ValueError(f"jpeg_approx rounding {rounding!r} unknown; allowed: {sorted(roundings)}")
        self.quality, self.rounding = quality, rounding
        self._round = roundings[rounding]
        self.register_buffer("tables", torch.stack([luma, chroma, chroma]), persistent=False)
        self.register_buffer("dct", _dct_matrix(), persistent=False)
        rgb_to_ycbcr = torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64)
        self.register_buffer("rgb_to_ycbcr", rgb_to_ycbcr.float(), persistent=False)
        self.register_buffer("ycbcr_to_rgb", torch.linalg.inv(rgb_to_ycbcr).float(), persistent=False)

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(clip)
        if clip.shape[1] != 3:
            raise ValueError(f"jpeg_approx needs RGB clips (N, 3, T, H, W), got shape {tuple(clip.shape)}")
        n, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2).reshape(n * t, 3, h, w)
        pad_h, pad_w = -h % 8, -w % 8
        if pad_h or pad_w:
            frames = F.pad(frames, (0, pad_w, 0, pad_h), mode="replicate")
        hp, wp = h + pad_h, w + pad_w
        offset = torch.tensor([0.0, 128.0, 128.0], device=clip.device).view(1, 3, 1, 1)
        ycbcr = torch.einsum("oc,bchw->bohw", self.rgb_to_ycbcr, frames * 255) + offset - 128
        blocks = ycbcr.reshape(n * t, 3, hp // 8, 8, wp // 8, 8).permute(0, 1, 2, 4, 3, 5)
        coeffs = self.dct @ blocks @ self.dct.T
        tables = self.tables.view(1, 3, 1, 1, 8, 8)
        coeffs = self._round(coeffs / tables) * tables
        blocks = self.dct.T @ coeffs @ self.dct
        ycbcr = blocks.permute(0, 1, 2, 4, 3, 5).reshape(n * t, 3, hp, wp) + 128 - offset
        rgb = torch.einsum("oc,bchw->bohw", self.ycbcr_to_rgb, ycbcr) / 255
        return rgb[:, :, :h, :w].reshape(n, t, 3, h, w).transpose(1, 2)


class StraightThrough(Distortion):
    """Wraps a non-differentiable clip → clip function (a real codec round trip: H.264, JPEG files) so the
    forward value is ``fn(clip)`` and the backward pass is the identity: out = clip + (fn(clip) − clip),
    the bracket detached. ``fn`` gets the detached clip and may return any same-shape tensor."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None):
        super().__init__()
        self.fn = fn
        self.name = name or getattr(fn, "__name__", repr(fn))

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_clip(clip)
        with torch.no_grad():
            out = self.fn(clip.detach())
        if out.shape != clip.shape:
            raise ValueError(f"{self.name} changed the clip's shape {tuple(clip.shape)} → {tuple(out.shape)}; "
                             "a straight-through distortion must keep it")
        return clip + (out.to(clip.dtype) - clip).detach()

    def extra_repr(self) -> str:
        return self.name


def straight_through(fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None) -> StraightThrough:
    """:class:`StraightThrough` of ``fn`` (e.g. ``straight_through(h264_roundtrip)``)."""
    return StraightThrough(fn, name)


class Combined(Distortion):
    """Applies one of ``distortions`` per call (per batch), chosen uniformly. The choice and the chosen
    distortion's randomness come from the caller's ``generator`` when one is passed (so a training run whose
    generator is re-seeded each epoch repeats exactly, resumed or not), else from the module's own generator
    seeded with ``seed``. ``last`` is the index chosen by the latest call."""

    def __init__(self, distortions: Sequence[nn.Module], seed: int = 0):
        super().__init__()
        if not distortions:
            raise ValueError("Combined needs at least one distortion")
        self.distortions = nn.ModuleList(distortions)
        self.generator = torch.Generator().manual_seed(seed)
        self.last: int | None = None

    def choose(self, generator: torch.Generator | None = None) -> int:
        source = generator if generator is not None else self.generator
        self.last = int(torch.randint(len(self.distortions), (1,), generator=source).item())
        return self.last

    def forward(self, clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.distortions[self.choose(generator)](clip, generator if generator is not None else self.generator)
