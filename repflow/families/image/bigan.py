"""BiGAN / ALI as a generative-contrastive pretext task: Donahue et al. 2017, 'Adversarial Feature
Learning' (ICLR); Dumoulin et al. 2017, 'Adversarially Learned Inference' (ICLR).

Three players on the image family's shared encoder:

- encoder E(x) = W · f(x): the shared encoder f (any ``build_encoder`` encoder, pooled (N, out_dim)
  code) and a linear map to z (N, z_dim);
- generator G(z) → image in [0, 1] (a small transposed-conv net,
:class:`repflow.families.image.models.decoders.ConvDecoder`),
  z ~ N(0, I);
- discriminator D(x, z) → one logit on JOINT pairs: real pairs (x, E(x)) against generated ones (G(z), z).

The game (BiGAN eq. 3, ALI eq. 1): min_{E,G} max_D  E_x[log σ(D(x, E(x)))] + E_z[log(1 − σ(D(G(z), z)))].
Per batch (logits d_real = D(x, E(x)), d_fake = D(G(z), z); softplus(t) = −log σ(−t)):

    L_D  = mean softplus(−d_real) + mean softplus(d_fake)            (D: real pairs 1, generated 0)
    L_EG = mean softplus(d_real)  + mean softplus(−d_fake)           (E, G: the labels swapped)

L_EG is the non-saturating form, the GAN paper's "maximise log D(G(z))" trick: the minimax form's
gradient vanishes for E and G while D wins, as it does early on. ALI's released code
(IshmaelBelghazi/ALI, ``ali/bricks.py``) writes exactly these two softplus losses; BiGAN's paper (Donahue,
Krähenbühl and Darrell, ICLR 2017) likewise trains E and G on the "inverted" labels.

One optimizer, simultaneous updates. The family's training loop has one Adam over the encoder and
this head, and one backward per batch. The loss it gets is L_D + L_EG, built so that each player
receives only the gradient of its own loss:

- L_D sees E(x) and G(z) DETACHED, so it sends no gradient to E or G;
- L_EG runs D through ``torch.func.functional_call`` with D's parameters DETACHED, so it sends no
  gradient to D (while still back-propagating through D's function to E and G).

So one backward gives ∂L_D/∂θ_D and ∂L_EG/∂θ_{E,G}, and the optimizer step updates all players at once
from the same batch (simultaneous gradient descent, as ALI's code does), rather than GAN's alternating
D-then-G steps. Adam's per-parameter scaling keeps the two losses' scales from mixing; the head asks the
loop for β1 = 0.5 (``adam_betas``), the papers' setting (both use Adam with β1 = 0.5, lr 1e-4 to 2e-4).
At the train stage's default lr 1e-3 the discriminator wins quickly
(benchmarks/results/pretext_mechanism.md).

Why BiGAN rather than an adversarial autoencoder (AAE): BiGAN's encoder is trained ONLY through the
adversarial game between real pairs and generated pairs (there is no reconstruction term; E must
invert G for D to be fooled), which makes it the survey's generative-contrastive class proper: the
discriminator "contrasts" the two joint distributions. An AAE's encoder is driven mainly by pixel
reconstruction, with the adversary only shaping the code's prior: mostly a generative (auto-encoding)
method.

The generator and discriminator are discarded after training; only the shared encoder is evaluated.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from repflow.families.image.contrastive import TRAIN_METHODS, PretextHead, TrainMethod
from repflow.families.image.models.decoders import ConvDecoder

__all__ = ["BiGANHead", "JointDiscriminator"]


def _conv_out(size: int) -> int:
    return (size + 2 - 4) // 2 + 1


class JointDiscriminator(nn.Module):
    """D(x, z): two stride-2 4×4 convolutions on x (LeakyReLU 0.2), a linear layer on z, then an MLP on
    the concatenation → one logit per pair, shape (N,). No batch norm: a batch of real pairs and one of
    generated pairs must be judged independently (and the frozen-parameter pass must not move running
    statistics)."""

    def __init__(self, image_shape: tuple[int, int, int], z_dim: int, width: int = 32, hidden: int = 256):
        super().__init__()
        c, h, w = image_shape
        fh, fw = _conv_out(_conv_out(h)), _conv_out(_conv_out(w))
        if fh < 1 or fw < 1:
            raise ValueError(f"bigan discriminator: image {h}x{w} too small (needs at least 4x4)")
        self.x_net = nn.Sequential(nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.z_net = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(nn.Linear(2 * width * fh * fw + hidden, hidden), nn.LeakyReLU(0.2),
                                   nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.x_net(x), self.z_net(z)], dim=1)).squeeze(1)


class BiGANHead(PretextHead):
    """E's linear map to z, G and D for an encoder of ``in_dim`` features on ``image_shape`` (C, H, W)
    images; ``z_dim``: latent size (default 64); ``width``: channels of G and D. Uses only the first
    view: x is the loop's configured augmentation of the image."""

    adam_betas = (0.5, 0.999)

    def __init__(self, in_dim: int, image_shape: tuple[int, int, int], *, z_dim: int = 64, width: int = 32):
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"bigan z_dim = {z_dim}: must be >= 1")
        self.in_dim, self.image_shape, self.z_dim, self.width = in_dim, tuple(image_shape), z_dim, width
        self.to_z = nn.Linear(in_dim, z_dim)
        self.image_generator = ConvDecoder(z_dim, self.image_shape, width=width, sigmoid=True)
        self.discriminator = JointDiscriminator(self.image_shape, z_dim, width=width)
        self._stats: dict[str, float] = {}

    def encode(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """E(x) = W f(x), shape (N, z_dim)."""
        return self.to_z(encoder(x))

    def reconstruct(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """G(E(x)): never trained for directly; how close it is to x shows whether E inverts G."""
        return self.image_generator(self.encode(encoder, x))

    def player_losses(self, encoder: nn.Module, x: torch.Tensor, *, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_D, L_EG) for views ``x``; L_D only reaches D's parameters, L_EG only E's and G's."""
        z_real = self.encode(encoder, x)
        z_prior = torch.randn(len(x), self.z_dim, generator=generator).to(x.device)
        x_fake = self.image_generator(z_prior)
        d_real = self.discriminator(x, z_real.detach())
        d_fake = self.discriminator(x_fake.detach(), z_prior)
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        eg_real = functional_call(self.discriminator, frozen, (x, z_real))
        eg_fake = functional_call(self.discriminator, frozen, (x_fake, z_prior))
        loss_eg = F.softplus(eg_real).mean() + F.softplus(-eg_fake).mean()
        with torch.no_grad():
            self._stats = {"d_accuracy": ((d_real > 0).float().mean() + (d_fake < 0).float().mean()).item() / 2,
                           "d_loss": loss_d.item(), "eg_loss": loss_eg.item()}
        return loss_d, loss_eg

    def loss(self, encoder: nn.Module, v1: torch.Tensor, v2: torch.Tensor, *,
             generator: torch.Generator) -> torch.Tensor:
        loss_d, loss_eg = self.player_losses(encoder, v1, generator=generator)
        return loss_d + loss_eg

    def batch_stats(self) -> dict[str, float]:
        """``d_accuracy`` (share of real and generated pairs D classifies right, 0.5 = chance), ``d_loss``,
        ``eg_loss`` of the last batch."""
        return dict(self._stats)

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "image_shape": list(self.image_shape),
                "options": {"z_dim": self.z_dim, "width": self.width}}


TRAIN_METHODS.register("bigan", TrainMethod(
    paradigm="generative-contrastive", losses=("ntxent",), pretext=BiGANHead,
    paper="Donahue et al. 2017, 'Adversarial Feature Learning' (ICLR); Dumoulin et al. 2017, "
          "'Adversarially Learned Inference' (ICLR)",
    summary="BiGAN/ALI: a discriminator tells (x, E(x)) from (G(z), z); encoder and generator learn only by "
            "fooling it (non-saturating losses, simultaneous updates)"))
