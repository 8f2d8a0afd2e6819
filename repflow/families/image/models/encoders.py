"""Image encoders for inputs in [0, 1] of any channel count and size.

Each encoder normalises its input itself (per-channel mean/std stored as buffers), so attacks and
users work in [0, 1] pixel space and a registered model needs no separate preprocessing.
``encoder.out_dim`` is the size of the representation ``encoder(x)`` returns, shape (N, out_dim).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = ["SmallCNN", "ResNet18", "ProjectionHead", "ProbedEncoder", "DualBatchNorm", "ENCODERS", "build_encoder",
           "set_bn_branch", "bn_branch"]

BN_BRANCHES = ("clean", "adv")


class DualBatchNorm(nn.Module):
    """Two batch norms sharing a slot: ``clean`` for natural views, ``adv`` for adversarial ones.

    ACL's dual-stream encoder (Jiang et al. 2020) keeps separate normalisation statistics and affine
    parameters for the two input distributions while every other weight is shared. ``branch`` picks
    the one used by ``forward``; :func:`bn_branch` switches all of a model's DualBatchNorms at once.
    """

    def __init__(self, channels: int, dims: int = 2, branch: str = "clean"):
        super().__init__()
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.clean, self.adv = bn(channels), bn(channels)
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adv(x) if self.branch == "adv" else self.clean(x)


def set_bn_branch(module: nn.Module, branch: str) -> None:
    if branch not in BN_BRANCHES:
        raise ValueError(f"batch-norm branch {branch!r} unknown; allowed: {list(BN_BRANCHES)}")
    for m in module.modules():
        if isinstance(m, DualBatchNorm):
            m.branch = branch


@contextmanager
def bn_branch(branch: str, *modules: nn.Module) -> Iterator[None]:
    """Run ``modules`` with every DualBatchNorm on ``branch``; restores the previous branches after."""
    saved = [(m, m.branch) for mod in modules for m in mod.modules() if isinstance(m, DualBatchNorm)]
    for mod in modules:
        set_bn_branch(mod, branch)
    try:
        yield
    finally:
        for m, b in saved:
            m.branch = b


def _bn2d(channels: int, dual: bool) -> nn.Module:
    return DualBatchNorm(channels) if dual else nn.BatchNorm2d(channels)


class _Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (width, 2w, 4w), each halving resolution, then global average pool.

    ``stem_stride`` 2 makes the first convolution strided, so every later layer sees a quarter of the
    pixels (about a quarter of the FLOPs per image); see :func:`small_cnn_s2`.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, dual_bn: bool = False, stem_stride: int = 1):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.normalize = _Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
        chans = [in_channels, width, 2 * width, 4 * width]
        blocks: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=stem_stride if i == 0 else 1, padding=1, bias=False),
                       _bn2d(c_out, dual_bn), nn.ReLU(inplace=True),
                       nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _bn2d(c_out, dual_bn), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(self.normalize(x))).flatten(1)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dual_bn: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = _bn2d(c_out, dual_bn)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = _bn2d(c_out, dual_bn)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _bn2d(c_out, dual_bn))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3x3 stem without max-pool, four stages of two basic blocks."""

    def __init__(self, in_channels: int = 3, width: int = 64, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, dual_bn: bool = False):
        super().__init__()
        self.normalize = _Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), _bn2d(width, dual_bn),
                                  nn.ReLU(inplace=True))
        layers, c = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            c_out = width * mult
            stride = 1 if i == 0 else 2
            layers += [_BasicBlock(c, c_out, stride, dual_bn), _BasicBlock(c_out, c_out, 1, dual_bn)]
            c = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(self.stem(self.normalize(x)))).flatten(1)


class ProjectionHead(nn.Module):
    """SimCLR's MLP head g(h) = W2 ReLU(BN(W1 h)); the contrastive loss is applied to its output."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, dual_bn: bool = False):
        super().__init__()
        hidden = hidden_dim or in_dim
        bn = DualBatchNorm(hidden, dims=1) if dual_bn else nn.BatchNorm1d(hidden)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), bn, nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class ProbedEncoder(nn.Module):
    """Encoder followed by a linear classifier: the model attacked end to end in evaluation."""

    def __init__(self, encoder: nn.Module, probe: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.probe = probe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probe(self.encoder(x))


def small_cnn_s2(**kwargs: Any) -> SmallCNN:
    """:class:`SmallCNN` with a stride-2 first convolution: a 28×28 image costs about 16 MFLOP forward
    instead of 58 (width 32), for cheaper contrastive training on small images
    (``benchmarks/results/time_to_accuracy.md`` has its accuracy-vs-seconds curve against small_cnn)."""
    return SmallCNN(**kwargs, stem_stride=2)


ENCODERS: dict[str, Callable[..., nn.Module]] = {"small_cnn": SmallCNN, "small_cnn_s2": small_cnn_s2,
                                                 "resnet18": ResNet18}


def build_encoder(config: dict[str, Any]) -> nn.Module:
    """Build from ``{"name", "in_channels", "width", "mean", "std"}`` (the JSON saved with a checkpoint).

    ``"dual_bn": true`` builds ACL's dual-BN encoder; ``"bn_branch"`` ("clean" | "adv") is the branch
    it uses at inference (a registered ACL encoder answers with the branch its config names).
    """
    name = config.get("name")
    if name not in ENCODERS:
        raise ValueError(f"encoder {name!r} unknown; allowed: {sorted(ENCODERS)}")
    kwargs = {k: config[k] for k in ("in_channels", "width", "mean", "std", "dual_bn") if k in config}
    encoder = ENCODERS[name](**kwargs)
    if config.get("dual_bn"):
        set_bn_branch(encoder, config.get("bn_branch", "clean"))
    return encoder
