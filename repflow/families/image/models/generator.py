"""Class-conditional generator with an explicit style mapping and a synthesis that can stop at, and
restart from, any intermediate feature map (what GLaD optimises), plus the VAE encoder that trains it.

Shapes: ``z`` (B, z_dim); class ``c`` (B,) int; styles ``w`` (B, num_layers, w_dim), one style vector
per synthesis layer (StyleGAN's "w+"), all equal to ``mapping(z, c)`` unless edited; images
(B, C, H, W) in [0, 1]. Feature map l is the output of synthesis layer l: l = 0 is the seed (H/4 × W/4,
from w[:, 0]); l = 1..3 are the styled blocks (H/4, H/2, H); rendering from l uses w[:, l+1:].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConditionalGenerator", "ConditionalEncoder", "GeneratorSampler"]


class _StyledConv(nn.Module):
    """Conv 3×3 → instance norm → per-channel (1 + scale, bias) from the style vector (AdaIN) → LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.InstanceNorm2d(c_out, affine=False)
        self.style = nn.Linear(w_dim, 2 * c_out)
        nn.init.zeros_(self.style.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        scale, bias = self.style(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return F.leaky_relu(self.norm(self.conv(x)) * (1 + scale) + bias, 0.2)


class ConditionalGenerator(nn.Module):
    """G(z, c) = synthesis(mapping(z, c)). Output size (C, H, W) needs H and W divisible by 4."""

    def __init__(self, num_classes: int, out_shape: tuple[int, int, int], z_dim: int = 32, w_dim: int = 64,
                 channels: int = 64):
        super().__init__()
        c, h, w = out_shape
        if h % 4 or w % 4:
            raise ValueError(f"generator output {h}x{w}: height and width must be divisible by 4")
        self.num_classes, self.out_shape, self.z_dim, self.w_dim = num_classes, tuple(out_shape), z_dim, w_dim
        self.seed_shape = (channels, h // 4, w // 4)
        self.embed = nn.Embedding(num_classes, z_dim)
        self.mapping_net = nn.Sequential(nn.Linear(2 * z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim),
                                         nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim))
        self.seed = nn.Linear(w_dim, channels * (h // 4) * (w // 4))
        ch = [channels, channels, channels // 2, channels // 2]
        self.blocks = nn.ModuleList([
            _StyledConv(ch[0], ch[1], w_dim, upsample=False),
            _StyledConv(ch[1], ch[2], w_dim, upsample=True),
            _StyledConv(ch[2], ch[3], w_dim, upsample=True),
        ])
        self.to_image = nn.Conv2d(ch[3], c, 1)

    @property
    def num_layers(self) -> int:
        """Synthesis layers that take a style vector: the seed and each styled block."""
        return len(self.blocks) + 1

    @property
    def layers(self) -> list[int]:
        """Valid split points for :meth:`features` / :meth:`render_from`."""
        return list(range(self.num_layers))

    def mapping(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        w = self.mapping_net(torch.cat([z, self.embed(c)], dim=1))
        return w.unsqueeze(1).expand(-1, self.num_layers, -1)

    def _check_layer(self, layer: int) -> None:
        if layer not in self.layers:
            raise ValueError(f"generator has no layer {layer!r}; valid layers: {self.layers}")

    def features(self, w: torch.Tensor, layer: int) -> torch.Tensor:
        """Feature map after synthesis layer ``layer`` (0 = the seed)."""
        self._check_layer(layer)
        x = self.seed(w[:, 0]).view(-1, *self.seed_shape)
        for i, block in enumerate(self.blocks, start=1):
            if i >= layer + 1:
                break
            x = block(x, w[:, i])
        return x

    def render_from(self, feat: torch.Tensor, w: torch.Tensor, layer: int) -> torch.Tensor:
        """Continue synthesis from the feature map at ``layer`` with styles ``w`` → image in [0, 1]."""
        self._check_layer(layer)
        x = feat
        for i, block in enumerate(self.blocks, start=1):
            if i > layer:
                x = block(x, w[:, i])
        return torch.sigmoid(self.to_image(x))

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        return self.render_from(self.features(w, 0), w, 0)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.synthesis(self.mapping(z, c))


class ConditionalEncoder(nn.Module):
    """q(z | x, c) of the VAE that trains the generator: returns (mu, logvar), each (B, z_dim)."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int], z_dim: int = 32, channels: int = 64):
        super().__init__()
        c, h, w = in_shape
        self.net = nn.Sequential(nn.Conv2d(c, channels // 2, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(channels // 2, channels, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.embed = nn.Embedding(num_classes, 64)
        self.head = nn.Linear(channels * (h // 4) * (w // 4) + 64, 2 * z_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(torch.cat([self.net(x), self.embed(c)], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)


class GeneratorSampler(nn.Module):
    """One-tensor front end for export and serving: input (B, z_dim + 1) = latent ⊕ class index."""

    def __init__(self, generator: ConditionalGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        return self.generator(zc[:, :-1], zc[:, -1].long())
