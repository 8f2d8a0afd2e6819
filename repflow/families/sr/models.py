"""The super-resolution family's networks: SHSR, the EDSR baseline it is compared with, and bicubic (the floor).

Every model maps a float RGB batch (N, 3, h, w) in [0, 1] to (N, 3, scale·h, scale·w). The learned models
do not clamp their output (training needs the gradient everywhere); clamp before metrics or saving.

Every model also has ``receptive_radius``: an upper bound, in LR pixels, on how far from an output pixel's
own LR position (``i // scale``) an input pixel can influence it (None: unbounded). Tiled upscaling
(:func:`repflow.families.sr.inference.upscale_tiled`) with at least this much context per side reproduces
the whole-image output exactly.

What of SHSR is verified and what is reconstructed (the paper's method section was not readable):

- verified (abstract and README of the paper; the PMRN precursor's abstract): SMB derives larger-scale
  features from smaller ones sequentially, "in a recursive way based on the linearity of convolution with
  restricted parameters"; PMRN's block "substitutes the larger filters with small filter combinations"
  (so a chain of 3×3 convolutions whose receptive fields are 3, 5, 7); DTB is "a normalization manner"
  transformation, not attention, with "scaling and bias factors" over spatial and channel-wise
  correlations (PMRN's CPA: channel- and pixel-wise factors "in parallel"); the code runs inside the
  MSRN-PyTorch framework, whose MSRN fuses every block's output with a 1×1 convolution, upsamples by
  convolution + pixel shuffle and subtracts the DIV2K RGB mean first (read in MIVRC/MSRN-PyTorch).
- reconstructed: the exact SMB equations (three ReLU steps, 1×1 fusion, skip), the DTB branches, the
  normalisation statistics (see :class:`DTB`), where DTB sits in a block (see :class:`SHSRBlock`; the default,
  on the SMB's branch, chosen by a measured ablation), channel / block counts.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.registry import Listed, Registry

__all__ = ["SMB", "DTB", "DTB_PLACEMENTS", "DEFAULT_DTB_PLACEMENT", "SHSR", "EDSRBaseline", "Bicubic", "Upsampler",
           "SRModel", "SR_MODELS", "build_sr_model", "DIV2K_RGB_MEAN"]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
"""The mean RGB of DIV2K in [0, 1], subtracted before the head and added back after the tail (as EDSR and
MSRN do): the network then models a zero-centred signal."""


def _upsampling_steps(scale: int) -> list[int]:
    """Pixel-shuffle factors whose product is ``scale``: ×3 is one step, ×2**k is k ×2 steps (as EDSR)."""
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise ValueError(f"scale must be an int (2, 3, 4 or 8), got {scale!r}")
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ValueError(f"scale {scale} unsupported by the learned upsampler; allowed: 3 or a power of two (2, 4, 8)")


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


def _check_size(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _add_skip(residual: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The global skip: ``residual`` (N, 3, s·h, s·w) + the bicubic upsampling of ``lr`` (unclamped, so the
    gradient reaches every pixel)."""
    return residual + F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)


class MeanShift(nn.Module):
    """Adds ``sign`` × the DIV2K mean per channel (a fixed buffer, not trained)."""

    def __init__(self, sign: float):
        super().__init__()
        self.register_buffer("shift", sign * torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class Upsampler(nn.Sequential):
    """Per step of factor r: 3×3 conv C → r²·C, then pixel shuffle (r² channels → r×r pixels)."""

    def __init__(self, scale: int, channels: int):
        steps = _upsampling_steps(scale)
        layers: list[nn.Module] = []
        for r in steps:
            layers += [_conv3x3(channels, r * r * channels), nn.PixelShuffle(r)]
        super().__init__(*layers)
        self.n_convs = len(steps)


class SMB(nn.Module):
    """Sequential multi-scale block: f1 = ReLU(W1∗x), f2 = ReLU(W2∗f1), f3 = ReLU(W3∗f2), out = 1×1 conv of
    [f1, f2, f3] + x. Each Wi is 3×3, so f1, f2, f3 see 3×3, 5×5, 7×7 neighbourhoods: the larger scales
    are derived from the smaller ones instead of computed by parallel larger kernels (MSRN's 3×3 + 5×5).

    ``shared``: one W for all steps (the "recursive, restricted parameters" reading: the same operator
    applied again); ``steps`` convolution weights otherwise. Shape-preserving on (N, C, H, W).
    """

    def __init__(self, channels: int, steps: int = 3, shared: bool = False):
        super().__init__()
        _check_size("channels", channels)
        _check_size("steps", steps)
        self.steps, self.shared = steps, shared
        self.convs = nn.ModuleList(_conv3x3(channels, channels) for _ in range(1 if shared else steps))
        self.fuse = nn.Conv2d(steps * channels, channels, 1)

    @property
    def receptive_radius(self) -> int:
        return self.steps

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The fused multi-scale features without the skip: 1×1 conv of [f1, f2, f3]."""
        scales, f = [], x
        for i in range(self.steps):
            f = F.relu(self.convs[0 if self.shared else i](f))
            scales.append(f)
        return self.fuse(torch.cat(scales, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + x


class DTB(nn.Module):
    """Distribution transformation block: y = γ(x) ⊙ (x − μ)/σ + β(x), on (N, C, H, W).

    γ = 1 + γ_c + γ_s and β = β_c + β_s, where (γ_c, β_c) (N, 2C, ·) come from a channel branch (the
    mean μ → 1×1 conv C → max(4, C/reduction) → LeakyReLU(0.2) → 1×1 conv → 2C) and (γ_s, β_s)
    (N, 2, H, W) from a spatial branch (3×3 conv C → 2), broadcast together: scaling and bias factors
    that depend jointly on channel and position. The ``1 +`` makes a freshly initialised block start near
    plain normalisation.

    Statistics μ, σ² are per sample and channel, never over the batch (so train and eval behave alike and
    a batch of one is fine). ``window``:

    - an odd int k (default 7): over the k×k neighbourhood of each pixel (zero padding excluded). The
      block then has a finite receptive field, so tiled upscaling is exact, and a 48×48 training patch and
      a full test image see the same statistics; the channel branch then runs on the local means.
    - None: over the whole H×W map (instance normalisation; the channel branch on global average pooling).
      The output then depends on the whole image: a tile's statistics differ from the image's, so tiled
      upscaling shows seams, and statistics of small training patches differ from full images'.

    The gain 1/√(σ² + eps) is at most eps^(-1/2) (31.6 at the default 1e-3) where a window is flat: there the
    block multiplies whatever small variation is left (float noise, JPEG ringing) by up to that much. On the
    trunk placement (:class:`SHSRBlock`) that amplified output replaces the features the next block sees; on
    the branch placement it is only added to them.

    Alternatives not taken: batch statistics (batch norm; EDSR showed it hurts SR and it makes an output
    depend on the other images in the batch), no centring (a pure RMS scale, which keeps the mean).
    ``eps`` (in feature units squared) bounds the gain 1/σ on flat regions. The bottleneck is leaky, not
    ReLU as in RCAN-style attention: its input μ varies little across pixels, so with a ReLU a narrow
    bottleneck's units can all start inactive and the branch never learns (seen in a 8-channel test model).
    """

    def __init__(self, channels: int, window: int | None = 7, reduction: int = 4, eps: float = 1e-3):
        super().__init__()
        _check_size("channels", channels)
        _check_size("reduction", reduction)
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1
                                   or window % 2 == 0):
            raise ValueError(f"DTB window must be an odd int >= 1 (local statistics) or None (whole map), "
                             f"got {window!r}")
        if not eps > 0:
            raise ValueError(f"DTB eps must be > 0, got {eps!r}")
        self.window, self.eps = window, eps
        hidden = max(4, channels // reduction)
        self.channel_branch = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LeakyReLU(0.2),
                                            nn.Conv2d(hidden, 2 * channels, 1))
        self.spatial_branch = nn.Conv2d(channels, 2, 3, padding=1)

    @property
    def receptive_radius(self) -> int | None:
        return None if self.window is None else max(self.window // 2, 1)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance per sample and channel: (N, C, 1, 1) for ``window=None``, else (N, C, H, W)."""
        if self.window is None:
            return x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), unbiased=False, keepdim=True)
        mean = self._box_mean(x)
        return mean, (self._box_mean(x * x) - mean * mean).clamp_min(0.0)

    def _box_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The k×k window mean with zero padding excluded: a k×1 then a 1×k depthwise sum with a ones kernel
        (k + k MACs a pixel, which :func:`~repflow.families.sr.inference.count_macs` counts), divided by the
        number of in-image pixels in each window (a rectangle, so the product of the row and column counts).
        CPU time of a forward + backward on (4, 16, 48, 48): a tenth of ``avg_pool2d``'s."""
        k, r = self.window, self.window // 2
        channels, (height, width) = x.shape[1], x.shape[2:]
        column = x.new_ones(channels, 1, k, 1)
        total = F.conv2d(F.conv2d(x, column, padding=(r, 0), groups=channels), column.transpose(2, 3),
                         padding=(0, r), groups=channels)
        rows = F.conv1d(x.new_ones(1, 1, height), x.new_ones(1, 1, k), padding=r).view(height, 1)
        cols = F.conv1d(x.new_ones(1, 1, width), x.new_ones(1, 1, k), padding=r).view(1, width)
        return total / (rows * cols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.moments(x)
        normalised = (x - mean) * torch.rsqrt(var + self.eps)
        gamma_c, beta_c = self.channel_branch(mean).chunk(2, dim=1)
        gamma_s, beta_s = self.spatial_branch(x).chunk(2, dim=1)
        return (1 + gamma_c + gamma_s) * normalised + beta_c + beta_s


DTB_PLACEMENTS = ("trunk", "branch")
"""Where an SHSR block applies its DTB (see :class:`SHSRBlock`)."""
DEFAULT_DTB_PLACEMENT = "branch"
"""SHSR's default since issue 32's ablation (benchmarks/results/shsr.md: at ×2, 5 seeds, the branch beat the
trunk on every seed); checkpoints written before it hold no placement and were ``"trunk"``."""


class SHSRBlock(nn.Module):
    """One SMB with its DTB, placed by ``placement``:

    - ``"trunk"``: DTB(SMB(x)) + x, where SMB(x) = fuse + x already holds the skip: the whole trunk, identity
      path included, is normalised and re-scaled in every block.
    - ``"branch"``: x + DTB(fuse): only the SMB's fused multi-scale features are transformed, the identity path
      passes untouched (as the PMRN precursor's attention block modulates a side branch).

    Without DTB just SMB(x), whose own skip is then the block's (adding x again would double the identity path).
    """

    def __init__(self, channels: int, dtb: bool, shared: bool, window: int | None, placement: str,
                 eps: float = 1e-3):
        super().__init__()
        if placement not in DTB_PLACEMENTS:
            raise ValueError(f"DTB placement {placement!r} unknown; allowed: {', '.join(DTB_PLACEMENTS)}")
        self.smb = SMB(channels, shared=shared)
        self.dtb = DTB(channels, window=window, eps=eps) if dtb else None
        self.placement = placement

    @property
    def receptive_radius(self) -> int | None:
        if self.dtb is None:
            return self.smb.receptive_radius
        r = self.dtb.receptive_radius
        return None if r is None else self.smb.receptive_radius + r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtb is None:
            return self.smb(x)
        if self.placement == "branch":
            return x + self.dtb(self.smb.branch(x))
        return self.dtb(self.smb(x)) + x


class SHSR(nn.Module):
    """Head 3×3 conv → ``blocks`` SHSR blocks → 1×1 conv over all block outputs + head features →
    upsampler (conv + pixel shuffle) → 3×3 output conv; DIV2K mean removed before, added after.

    ``dtb=False`` is the ablation without distribution transformation; ``shared=True`` shares each SMB's
    3×3 weight across its steps; ``window`` is DTB's statistics window and ``dtb_eps`` its variance floor
    (see :class:`DTB`); ``dtb_placement`` puts DTB on the trunk or on the SMB's branch (see :class:`SHSRBlock`).
    ``global_skip`` (default on) adds the bicubic upsampling of the input to the output, so the network
    learns only the missing detail; off, the DIV2K mean is added back instead (as MSRN and EDSR do).
    It is on because it helps at small scale: ×2, 16 channels, 4 blocks, 800 Adam steps (lr 1e-3, batch 8
    of 48×48 HR patches from skimage's bundled images, L1) reached Y-PSNR 33.2 / 34.0 dB (seeds 0 / 1)
    on four held-out images without it, far below bicubic's 38.0 dB, and 38.2 / 37.6 dB with it.
    At the defaults (32 channels, 6 blocks) it has 238,527 parameters at ×2 and 275,519 at ×4
    (127,551 at ×2 with ``shared``), and 0.565 / 0.928 GMACs on a 48×48 LR input at ×2 / ×4 (DTB's window
    sums included; the element-wise work is counted apart by
    :func:`~repflow.families.sr.inference.count_other_ops`).
    """

    def __init__(self, scale: int, channels: int = 32, blocks: int = 6, dtb: bool = True, shared: bool = False,
                 window: int | None = 7, global_skip: bool = True, dtb_placement: str = DEFAULT_DTB_PLACEMENT,
                 dtb_eps: float = 1e-3):
        super().__init__()
        _upsampling_steps(scale)
        _check_size("channels", channels)
        _check_size("blocks", blocks)
        self.scale, self.global_skip = scale, global_skip
        self.sub_mean, self.add_mean = MeanShift(-1.0), MeanShift(1.0)
        self.head = _conv3x3(3, channels)
        self.body = nn.ModuleList(SHSRBlock(channels, dtb, shared, window, dtb_placement, dtb_eps)
                                  for _ in range(blocks))
        self.fusion = nn.Conv2d(blocks * channels, channels, 1)
        self.upsampler = Upsampler(scale, channels)
        self.tail = _conv3x3(channels, 3)
        self.config = {"arch": "shsr", "scale": scale, "channels": channels, "blocks": blocks, "dtb": dtb,
                       "shared": shared, "window": window, "global_skip": global_skip,
                       "dtb_placement": dtb_placement, "dtb_eps": dtb_eps}

    @property
    def receptive_radius(self) -> int | None:
        per_block = [b.receptive_radius for b in self.body]
        if any(r is None for r in per_block):
            return None
        # head + blocks + one LR pixel per upsampler conv + the output conv (≤ 1 LR pixel at any resolution)
        radius = 1 + sum(per_block) + self.upsampler.n_convs + 1
        return max(radius, 2) if self.global_skip else radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(self.sub_mean(x))
        outputs, f = [], head
        for block in self.body:
            f = block(f)
            outputs.append(f)
        fused = self.fusion(torch.cat(outputs, dim=1)) + head
        residual = self.tail(self.upsampler(fused))
        return _add_skip(residual, x, self.scale) if self.global_skip else self.add_mean(residual)


class ResBlock(nn.Module):
    """EDSR's residual block: x + res_scale · conv(ReLU(conv(x))), no batch norm."""

    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(_conv3x3(channels, channels), nn.ReLU(inplace=True), _conv3x3(channels, channels))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class EDSRBaseline(nn.Module):
    """EDSR (Lim et al. 2017): head conv → ``blocks`` residual blocks → conv, + head features → upsampler →
    output conv; DIV2K mean removed before, added after.

    ``global_skip``: as :class:`SHSR`'s (on by default in both, so the two differ only in their body).
    Defaults: 16 blocks (EDSR's own "baseline" depth) at 32 channels (SHSR's width), so the two differ in
    the block design, not the width; 343,939 parameters at ×2, 380,931 at ×4 (0.796 / 1.159 GMACs on a
    48×48 LR input). ``res_scale`` 1, as EDSR's baseline (0.1 is for its 256-channel model).
    At equal 3×3-conv depth (9 blocks = 18 convs, SHSR's 6 × 3) EDSR would be smaller than SHSR (214,467
    parameters, 0.498 GMACs at ×2); the claim under test is that SHSR matches EDSR's baseline
    configuration with fewer parameters and MACs.
    """

    def __init__(self, scale: int, channels: int = 32, blocks: int = 16, res_scale: float = 1.0,
                 global_skip: bool = True):
        super().__init__()
        _upsampling_steps(scale)
        _check_size("channels", channels)
        _check_size("blocks", blocks)
        self.scale, self.global_skip = scale, global_skip
        self.sub_mean, self.add_mean = MeanShift(-1.0), MeanShift(1.0)
        self.head = _conv3x3(3, channels)
        self.body = nn.Sequential(*(ResBlock(channels, res_scale) for _ in range(blocks)),
                                  _conv3x3(channels, channels))
        self.upsampler = Upsampler(scale, channels)
        self.tail = _conv3x3(channels, 3)
        self.n_blocks = blocks
        self.config = {"arch": "edsr", "scale": scale, "channels": channels, "blocks": blocks,
                       "res_scale": res_scale, "global_skip": global_skip}

    @property
    def receptive_radius(self) -> int:
        return 1 + 2 * self.n_blocks + 1 + self.upsampler.n_convs + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(self.sub_mean(x))
        residual = self.tail(self.upsampler(self.body(head) + head))
        return _add_skip(residual, x, self.scale) if self.global_skip else self.add_mean(residual)


class Bicubic(nn.Module):
    """Bicubic upsampling (torch's, ``align_corners=False``, a = −0.75), clamped to [0, 1]; no parameters.
    Not MATLAB's ``imresize`` (which antialiases when downscaling only, so upscaling agrees closely)."""

    def __init__(self, scale: int):
        super().__init__()
        _check_size("scale", scale, minimum=1)
        self.scale = scale
        self.config = {"arch": "bicubic", "scale": scale}

    receptive_radius = 2
    """An output pixel's 4×4 taps lie within ±2 LR pixels of ``i // scale``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class SRModel(Listed):
    """``factory(scale, **kw)`` builds the network; ``fixed`` are keyword values the entry pins (the
    ablation's ``dtb=False``), which a caller may not override."""

    factory: Callable[..., nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)


SR_MODELS: Registry[SRModel] = Registry("sr model")
_SHSR_PAPER = ("Liu, Zhang, Wang, Ma, Gao 2023, 'Sequential Hierarchical Learning with Distribution "
               "Transformation for Image Super-Resolution' (ACM TOMM, arXiv 2007.09552)")
SR_MODELS.register("shsr", SRModel(
    factory=SHSR, paper=_SHSR_PAPER,
    summary="sequential multi-scale blocks (chained 3×3 convs: receptive fields 3, 5, 7, fused) each followed "
            "by a distribution transformation (normalise, then content-dependent channel × spatial scale and "
            "bias); 1×1 fusion of all blocks, pixel-shuffle upsampler"))
SR_MODELS.register("shsr_no_dtb", SRModel(
    factory=SHSR, fixed={"dtb": False}, paper=_SHSR_PAPER,
    summary="SHSR without the distribution transformation blocks (the ablation)"))
SR_MODELS.register("edsr", SRModel(
    factory=EDSRBaseline,
    paper="Lim, Son, Kim, Nah, Lee 2017, 'Enhanced Deep Residual Networks for Single Image Super-Resolution' "
          "(CVPRW)",
    summary="the EDSR baseline (residual conv-ReLU-conv blocks, no batch norm) at SHSR's width: the "
            "baseline of similar size"))
SR_MODELS.register("bicubic", SRModel(
    factory=Bicubic, paper="Keys 1981, 'Cubic convolution interpolation for digital image processing' (IEEE TASSP)",
    summary="bicubic interpolation, no parameters: the floor every learned model must beat"))


def build_sr_model(name: str, scale: int, **kw: Any) -> nn.Module:
    """The registered model ``name`` for upscaling factor ``scale``; ``kw`` are its constructor's keywords
    (channels, blocks, ...). An unknown name, keyword or pinned keyword raises ValueError naming it."""
    entry = SR_MODELS[name]
    accepted = [p for p in inspect.signature(entry.factory).parameters if p != "scale"]
    for key in kw:
        if key in entry.fixed:
            raise ValueError(f"sr model {name!r} pins {key}={entry.fixed[key]!r}; it cannot be set")
        if key not in accepted:
            allowed = [p for p in accepted if p not in entry.fixed]
            raise ValueError(f"sr model {name!r} has no option {key!r}; allowed: {allowed}")
    return entry.factory(scale, **{**kw, **entry.fixed})
