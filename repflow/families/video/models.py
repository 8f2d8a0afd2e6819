"""The video watermarking family's networks: HiDDeN-style image encoder / decoder, the ItoV adaptation
(time merged into channels), a per-frame image baseline, a 3-D conv baseline, and a critic.

Shapes: a clip is float (N, 3, T, H, W) in [0, 1]; a message is float (N, L) with values in {0, 1}. Every
watermarker has ``embed(clip, msg) -> watermarked clip`` (same shape, not clamped, so training keeps the
gradient everywhere; clamp / quantise before saving) and ``extract(clip) -> logits`` (N, L), a bit being 1
where its logit is > 0. ``forward(clip, msg)`` = ``embed``, so a watermarker is usable as a module.

What is verified and what is a choice (ItoV: Ye et al., arXiv 2305.02781, 2023; only its abstract was read):

- verified (ItoV abstract): time merged into channels so an image network sees a clip as one image; spatial
  convolution is what matters; depthwise convolutions cut compute with little loss. HiDDeN's defaults
  (ando-khachatryan/HiDDeN): encoder 4 conv-BN-ReLU blocks of 64 channels, the message broadcast over the
  image and concatenated with the features and the image; decoder 7 blocks of 64, a block to L channels,
  global average pooling and a linear L → L; discriminator 3 blocks of 64 (stride 1), pooling, linear → 1;
  every conv 3×3 except the encoder's last (1×1). Its convs carry a bias, dropped here (BN follows).
- choices here: the message enters as a learned spatial code map (:class:`MessageMap`, after MBRS's message
  processor) and the decoder pools to an 8×8 grid before its linear head, because HiDDeN's per-pixel
  broadcast and global pooling did not learn within a CPU budget; the encoder outputs a residual added to
  the input (HiDDeN outputs the image itself), its last 1×1 conv initialised small so a fresh encoder is
  nearly the identity (:data:`RESIDUAL_INIT_GAIN`); the depthwise-separable block (depthwise k×k +
  pointwise 1×1, each followed by nothing until the block's BN + ReLU); the 3-D baseline's layout; ItoV's
  exact image backbone is unknown [U], HiDDeN's is the one used here.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.registry import Listed, Registry

__all__ = ["MessageMap", "MESSAGE_GRID", "MESSAGE_CODE",
           "HiDDeNEncoder", "HiDDeNDecoder", "Watermarker", "ItoV", "PerFrame", "Conv3D", "Critic",
           "WatermarkerEntry", "WATERMARKERS", "build_watermarker", "merge_time", "split_time",
           "RESIDUAL_INIT_GAIN"]

RESIDUAL_INIT_GAIN = 0.01
"""Factor applied to the default initialisation of the encoder's last 1×1 conv: the residual of a fresh
encoder is then about 1e-2 in pixel units (PSNR ≈ 40 dB), so training starts from an invisible mark and
raises its strength, instead of starting from a loud one it has to quieten."""


def _check_size(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def merge_time(clip: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) → (N, C·T, H, W), channel index c·T + t (einops 'b c t h w -> b (c t) h w')."""
    n, c, t, h, w = clip.shape
    return clip.reshape(n, c * t, h, w)


def split_time(image: torch.Tensor, frames: int) -> torch.Tensor:
    """The inverse of :func:`merge_time`: (N, C·T, H, W) → (N, C, T, H, W)."""
    n, ct, h, w = image.shape
    return image.reshape(n, ct // frames, frames, h, w)


def _check_clip(clip: torch.Tensor, frames: int | None = None) -> None:
    if clip.dim() != 5 or clip.shape[1] != 3:
        raise ValueError(f"a clip must be (N, 3, T, H, W), got shape {tuple(clip.shape)}")
    if frames is not None and clip.shape[2] != frames:
        raise ValueError(f"this watermarker was built for T={frames} frames, got a clip of {clip.shape[2]}")


def _check_message(msg: torch.Tensor, clip: torch.Tensor, bits: int) -> None:
    if msg.dim() != 2 or msg.shape != (clip.shape[0], bits):
        raise ValueError(f"message must be (N, L) = ({clip.shape[0]}, {bits}), got shape {tuple(msg.shape)}")


class ConvBNReLU(nn.Sequential):
    """k×k conv (or, ``depthwise``, depthwise k×k on c_in channels then pointwise 1×1 to c_out) → BN → ReLU;
    'same' padding, so (N, c_in, H, W) → (N, c_out, H/stride, W/stride). The depthwise pair costs
    k²·c_in + c_in·c_out MACs per pixel instead of k²·c_in·c_out."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, depthwise: bool = False):
        pad = kernel // 2
        if depthwise:
            convs = [nn.Conv2d(c_in, c_in, kernel, stride, pad, groups=c_in, bias=False),
                     nn.Conv2d(c_in, c_out, 1, bias=False)]
        else:
            convs = [nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False)]
        super().__init__(*convs, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


MESSAGE_GRID = 8
"""Side of the message code's spatial grid: the encoder lays the message out as a (code, 8, 8) map stretched
over the frame, and the decoder pools its features back to 8×8 cells before its linear head."""
MESSAGE_CODE = 8
"""Channels of the message code map (MBRS's message processor uses one; a few learn faster here)."""


class MessageMap(nn.Module):
    """msg (N, L) → code (N, MESSAGE_CODE, H, W): a linear map to a MESSAGE_CODE × MESSAGE_GRID² grid,
    stretched to H×W (nearest). MBRS's message processor in spirit: the message gets a spatial layout
    that does not depend on the content, so a decoder can find it. HiDDeN instead repeats the message at
    every pixel; at CPU scale that did not train (ItoV-dw, 64×64, T = 8, L = 32: bit accuracy 0.59 after 120
    steps, against 0.94 with this map), which is why every watermarker here uses the map."""

    def __init__(self, L: int):
        super().__init__()
        self.linear = nn.Linear(L, MESSAGE_CODE * MESSAGE_GRID * MESSAGE_GRID)

    def forward(self, msg: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        grid = self.linear(msg).view(len(msg), MESSAGE_CODE, MESSAGE_GRID, MESSAGE_GRID)
        return F.interpolate(grid, size=size, mode="nearest")


class HiDDeNEncoder(nn.Module):
    """(image (N, C, H, W), msg (N, L)) → watermarked image (N, C, H, W) = image + residual.

    ``blocks`` conv-BN-ReLU blocks of ``width`` on the image; then [message code map, features, image]
    (MESSAGE_CODE + width + C channels) → one more block → 1×1 conv to C channels (the residual, started
    small)."""

    def __init__(self, in_channels: int, L: int, width: int = 64, blocks: int = 4, depthwise: bool = False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("L", L), ("width", width), ("blocks", blocks)):
            _check_size(name, value)
        self.in_channels, self.L = in_channels, L
        self.message_map = MessageMap(L)
        self.features = nn.Sequential(*(ConvBNReLU(in_channels if i == 0 else width, width, depthwise=depthwise)
                                        for i in range(blocks)))
        self.after_concat = ConvBNReLU(MESSAGE_CODE + width + in_channels, width, depthwise=depthwise)
        self.to_residual = nn.Conv2d(width, in_channels, 1)
        with torch.no_grad():
            self.to_residual.weight.mul_(RESIDUAL_INIT_GAIN)
            self.to_residual.bias.zero_()

    def forward(self, image: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        code = self.message_map(msg, image.shape[-2:])
        mixed = torch.cat([code, self.features(image), image], dim=1)
        return image + self.to_residual(self.after_concat(mixed))


class HiDDeNDecoder(nn.Module):
    """image (N, C, H, W) → message logits (N, L): ``blocks`` conv-BN-ReLU blocks of ``width``, one block to
    MESSAGE_CODE channels, average pooling to MESSAGE_GRID × MESSAGE_GRID cells (so any H×W ≥ 8 px), linear
    to L (HiDDeN pools to one cell and maps L → L)."""

    def __init__(self, in_channels: int, L: int, width: int = 64, blocks: int = 7, depthwise: bool = False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("L", L), ("width", width), ("blocks", blocks)):
            _check_size(name, value)
        layers = [ConvBNReLU(in_channels if i == 0 else width, width, depthwise=depthwise) for i in range(blocks)]
        self.body = nn.Sequential(*layers, ConvBNReLU(width, MESSAGE_CODE, depthwise=depthwise),
                                  nn.AdaptiveAvgPool2d(MESSAGE_GRID), nn.Flatten())
        self.head = nn.Linear(MESSAGE_CODE * MESSAGE_GRID * MESSAGE_GRID, L)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image))


class Watermarker(nn.Module):
    """The interface: ``embed(clip, msg)`` and ``extract(clip)`` (shapes in the module docstring)."""

    L: int

    def embed(self, clip: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extract(self, clip: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, clip: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        return self.embed(clip, msg)


class ItoV(Watermarker):
    """ItoV: the clip's T frames merged into 3T channels, one HiDDeN image encoder / decoder on that image.
    Only the first layer's input and the last layer's output grow with T; built for one T."""

    def __init__(self, T: int, L: int, width: int = 64, encoder_blocks: int = 4, decoder_blocks: int = 7,
                 depthwise: bool = False):
        super().__init__()
        _check_size("T", T)
        self.T, self.L = T, L
        self.encoder = HiDDeNEncoder(3 * T, L, width, encoder_blocks, depthwise)
        self.decoder = HiDDeNDecoder(3 * T, L, width, decoder_blocks, depthwise)

    def embed(self, clip: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        _check_clip(clip, self.T)
        _check_message(msg, clip, self.L)
        return split_time(self.encoder(merge_time(clip), msg), self.T)

    def extract(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip, self.T)
        return self.decoder(merge_time(clip))


def _frames_as_batch(clip: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) → (N·T, C, H, W), frame t of clip n at row n·T + t."""
    n, c, t, h, w = clip.shape
    return clip.transpose(1, 2).reshape(n * t, c, h, w)


def _batch_as_frames(frames: torch.Tensor, t: int) -> torch.Tensor:
    nt, c, h, w = frames.shape
    return frames.reshape(nt // t, t, c, h, w).transpose(1, 2)


class PerFrame(Watermarker):
    """The image baseline: a 3-channel HiDDeN model on every frame, the same message in each; the clip's
    logits are the mean of its frames' logits. Works for any T; costs T image passes."""

    def __init__(self, L: int, width: int = 64, encoder_blocks: int = 4, decoder_blocks: int = 7,
                 depthwise: bool = False):
        super().__init__()
        self.L = L
        self.encoder = HiDDeNEncoder(3, L, width, encoder_blocks, depthwise)
        self.decoder = HiDDeNDecoder(3, L, width, decoder_blocks, depthwise)

    def embed(self, clip: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        _check_message(msg, clip, self.L)
        t = clip.shape[2]
        marked = self.encoder(_frames_as_batch(clip), msg.repeat_interleave(t, dim=0))
        return _batch_as_frames(marked, t)

    def extract(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        n, t = clip.shape[0], clip.shape[2]
        return self.decoder(_frames_as_batch(clip)).reshape(n, t, self.L).mean(dim=1)


class _Conv3dBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out),
                         nn.ReLU(inplace=True))


class Conv3D(Watermarker):
    """The 3-D conv baseline: HiDDeN's layout with 3×3×3 convolutions over (T, H, W) (the message code map
    repeated over time), average pooling over time and to MESSAGE_GRID² cells in the decoder. Any T; each
    layer costs 3× a per-frame layer (the temporal kernel): 3× the per-frame model, ~19× ItoV at T=8, 64×64,
    width 32."""

    def __init__(self, L: int, width: int = 64, encoder_blocks: int = 4, decoder_blocks: int = 7):
        super().__init__()
        for name, value in (("L", L), ("width", width), ("encoder_blocks", encoder_blocks),
                            ("decoder_blocks", decoder_blocks)):
            _check_size(name, value)
        self.L = L
        self.features = nn.Sequential(*(_Conv3dBNReLU(3 if i == 0 else width, width) for i in range(encoder_blocks)))
        self.message_map = MessageMap(L)
        self.after_concat = _Conv3dBNReLU(MESSAGE_CODE + width + 3, width)
        self.to_residual = nn.Conv3d(width, 3, 1)
        with torch.no_grad():
            self.to_residual.weight.mul_(RESIDUAL_INIT_GAIN)
            self.to_residual.bias.zero_()
        self.decoder_body = nn.Sequential(*(_Conv3dBNReLU(3 if i == 0 else width, width)
                                            for i in range(decoder_blocks)),
                                          _Conv3dBNReLU(width, MESSAGE_CODE),
                                          nn.AdaptiveAvgPool3d((1, MESSAGE_GRID, MESSAGE_GRID)), nn.Flatten())
        self.head = nn.Linear(MESSAGE_CODE * MESSAGE_GRID * MESSAGE_GRID, L)

    def embed(self, clip: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        _check_message(msg, clip, self.L)
        code = self.message_map(msg, clip.shape[-2:]).unsqueeze(2).expand(-1, -1, clip.shape[2], -1, -1)
        mixed = torch.cat([code, self.features(clip), clip], dim=1)
        return clip + self.to_residual(self.after_concat(mixed))

    def extract(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        return self.head(self.decoder_body(clip))


class Critic(nn.Module):
    """HiDDeN's discriminator on clips, ItoV style: clip (N, 3, T, H, W) → merged to (N, 3T, H, W) →
    ``blocks`` conv-BN-ReLU blocks of ``width`` → global average pool → linear → one logit per clip (N,),
    high for "watermarked". Built for one T (the merge fixes the input channels). ``stride`` 1 is HiDDeN's;
    2 cuts the critic's cost about 4× per block (its blocks see only pooled statistics in the end)."""

    def __init__(self, T: int, width: int = 64, blocks: int = 3, depthwise: bool = False, stride: int = 1):
        super().__init__()
        for name, value in (("T", T), ("width", width), ("blocks", blocks)):
            _check_size(name, value)
        _check_size("stride", stride)
        self.T = T
        self.body = nn.Sequential(*(ConvBNReLU(3 * T if i == 0 else width, width, stride=stride, depthwise=depthwise)
                                    for i in range(blocks)), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, 1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip, self.T)
        return self.head(self.body(merge_time(clip))).squeeze(1)


@dataclass(frozen=True, kw_only=True)
class WatermarkerEntry(Listed):
    """``factory(T=..., L=..., **kw)`` builds the watermarker (T only if the factory takes it); ``fixed``
    are keyword values the entry pins (``itov_dw``'s ``depthwise=True``), which a caller may not override."""

    factory: Callable[..., Watermarker]
    fixed: Mapping[str, Any] = field(default_factory=dict)


WATERMARKERS: Registry[WatermarkerEntry] = Registry("video watermarker")
_ITOV_PAPER = ("Ye et al. 2023, 'ItoV: Efficiently Adapting Deep Learning-based Image Watermarking to Video "
               "Watermarking' (arXiv 2305.02781)")
_HIDDEN_PAPER = "Zhu, Kaplan, Johnson, Fei-Fei 2018, 'HiDDeN: Hiding Data With Deep Networks' (ECCV)"
WATERMARKERS.register("per_frame", WatermarkerEntry(
    factory=PerFrame, paper=_HIDDEN_PAPER,
    summary="the image baseline: a HiDDeN encoder / decoder on every frame with the same message, decoder "
            "logits averaged over frames (T image passes)"))
WATERMARKERS.register("itov", WatermarkerEntry(
    factory=ItoV, paper=_ITOV_PAPER,
    summary="time merged into channels (3T): one HiDDeN image encoder / decoder sees the clip as one image"))
WATERMARKERS.register("itov_dw", WatermarkerEntry(
    factory=ItoV, fixed={"depthwise": True}, paper=_ITOV_PAPER,
    summary="ItoV with depthwise-separable blocks (depthwise 3×3 + pointwise 1×1): several times fewer MACs"))
WATERMARKERS.register("conv3d", WatermarkerEntry(
    factory=Conv3D, paper=_ITOV_PAPER,
    summary="the 3-D conv baseline: HiDDeN's layout with 3×3×3 convolutions over time and space"))


def build_watermarker(name: str, T: int, L: int, **kw: Any) -> Watermarker:
    """The registered watermarker ``name`` for clips of ``T`` frames and ``L``-bit messages; ``kw`` are its
    constructor's keywords (width, encoder_blocks, decoder_blocks, depthwise). An unknown name, keyword or
    pinned keyword raises ValueError naming it."""
    entry = WATERMARKERS[name]
    accepted = [p for p in inspect.signature(entry.factory).parameters if p not in ("T", "L")]
    for key in kw:
        if key in entry.fixed:
            raise ValueError(f"video watermarker {name!r} pins {key}={entry.fixed[key]!r}; it cannot be set")
        if key not in accepted:
            allowed = [p for p in accepted if p not in entry.fixed]
            raise ValueError(f"video watermarker {name!r} has no option {key!r}; allowed: {allowed}")
    _check_size("T", T)
    _check_size("L", L)
    frames = {"T": T} if "T" in inspect.signature(entry.factory).parameters else {}
    return entry.factory(L=L, **frames, **kw, **entry.fixed)
