"""A small transposed-convolution decoder from a code vector to an image: the masked autoencoder's
decoder and BiGAN's generator (repflow.families.image.masked_ae, repflow.families.image.bigan) are both one of these.

Shapes: code (N, in_dim) → image (N, C, H, W) for any H, W ≥ 1 (the net renders 4·⌈H/4⌉ × 4·⌈W/4⌉ and
crops the bottom/right surplus).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvDecoder"]


class ConvDecoder(nn.Module):
    """Linear → (2·width, ⌈H/4⌉, ⌈W/4⌉) seed → two stride-2 transposed convolutions (each ×2 resolution,
    batch norm + ReLU between) → C channels. ``sigmoid`` squashes the output into [0, 1] (a generator
    of pixels); without it the output is unbounded (a regression target that may be normalised)."""

    def __init__(self, in_dim: int, image_shape: tuple[int, int, int], width: int = 32, sigmoid: bool = False):
        super().__init__()
        c, h, w = image_shape
        if min(c, h, w) < 1:
            raise ValueError(f"decoder image shape must be positive (C, H, W), got {tuple(image_shape)}")
        self.image_shape = (c, h, w)
        self.seed_shape = (2 * width, -(-h // 4), -(-w // 4))
        self.seed = nn.Sequential(nn.Linear(in_dim, self.seed_shape[0] * self.seed_shape[1] * self.seed_shape[2]),
                                  nn.BatchNorm1d(self.seed_shape[0] * self.seed_shape[1] * self.seed_shape[2]),
                                  nn.ReLU(inplace=True))
        self.up = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                nn.ConvTranspose2d(width, c, 4, stride=2, padding=1))
        self.sigmoid = sigmoid

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        x = self.up(self.seed(code).view(-1, *self.seed_shape))[:, :, :h, :w]
        return torch.sigmoid(x) if self.sigmoid else x
