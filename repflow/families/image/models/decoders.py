"""Small decoders trained next to the image family's encoder and discarded after training.

- :class:`ConvDecoder`: a code vector → an image, by transposed convolutions (BiGAN's generator,
  :mod:`repflow.families.image.bigan`). Shapes: code (N, in_dim) → image (N, C, H, W) for any H, W ≥ 1
  (the net renders 4·⌈H/4⌉ × 4·⌈W/4⌉ and crops the bottom/right surplus).
- :class:`PatchDecoder`: an encoder's spatial feature map → one patch of pixels per patch position (the
  masked autoencoder's decoder, :mod:`repflow.families.image.masked_ae`). Shapes: features (N, D, h, w)
  → patches (N, L, C·p·p), L = (H/p)·(W/p), patches in row-major order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvDecoder", "PatchDecoder"]


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


class PatchDecoder(nn.Module):
    """MAE's lightweight decoder reduced to a per-patch MLP on a CNN's feature map (as SparK and ConvMAE
    decode a CNN's spatial features): the map (N, D, h, w) is brought to the patch grid (gh, gw) (average
    pooled when larger, bilinearly upsampled when smaller, unchanged when equal), a learned position
    embedding (MAE's ``decoder_pos_embed``; learned here, not sin-cos) is added, and every position
    independently goes through 1×1 conv D → width, GELU, 1×1 conv width → C·p·p (MAE's
    ``decoder_pred``: a linear map to the patch's pixels). Outputs are unbounded (pixel or normalised-pixel
    regression targets). The position embedding lets a position whose features say little still predict
    its place's typical content, as MAE's mask tokens (shared, plus position) do."""

    def __init__(self, in_dim: int, grid: tuple[int, int], patch_pixels: int, width: int = 64):
        super().__init__()
        if min(in_dim, *grid, patch_pixels, width) < 1:
            raise ValueError(f"patch decoder sizes must be positive: in_dim {in_dim}, grid {tuple(grid)}, "
                             f"patch_pixels {patch_pixels}, width {width}")
        self.grid = tuple(grid)
        self.pos_embed = nn.Parameter(torch.zeros(1, in_dim, *self.grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.mlp = nn.Sequential(nn.Conv2d(in_dim, width, 1), nn.GELU(), nn.Conv2d(width, patch_pixels, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) → (N, L, C·p·p), position l = row · gw + column of the patch grid."""
        if features.shape[-2:] != self.grid:
            h, w = features.shape[-2:]
            if h >= self.grid[0] and w >= self.grid[1]:
                features = F.adaptive_avg_pool2d(features, self.grid)
            else:
                features = F.interpolate(features, size=self.grid, mode="bilinear", align_corners=False)
        out = self.mlp(features + self.pos_embed)
        return out.flatten(2).transpose(1, 2)
