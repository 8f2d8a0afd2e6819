"""Generative side: the conditional VAE that trains the generator, a Fréchet distance in a judge
classifier's feature space, and GenRep's latent-space multiview sampling.

GenRep (Jahanian et al., ICLR 2022): anchors z₁ ~ t·TN(−2, 2) and positive views z₂ = z₁ + t·σ·TN(−2, 2)
(per-dimension truncated normal); the "independent" control draws every view independently from the
same class.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.progress import progress

__all__ = ["truncated_normal", "genrep_latents", "vae_loss", "train_cvae", "frechet_distance", "generate_images",
           "VIEW_MODES"]

VIEW_MODES = ("gaussian", "independent")
"""How :func:`genrep_latents` draws a generated anchor's positive views."""


def truncated_normal(shape: tuple[int, ...], g: torch.Generator, bound: float = 2.0) -> torch.Tensor:
    """Standard normal samples truncated to [−bound, bound] (resampled, not clipped)."""
    out = torch.empty(shape)
    nn.init.trunc_normal_(out, mean=0.0, std=1.0, a=-bound, b=bound, generator=g)
    return out


def genrep_latents(n_anchors: int, k: int, z_dim: int, *, sigma: float, g: torch.Generator,
                   truncation: float = 1.0, mode: str = "gaussian") -> torch.Tensor:
    """Latents (n_anchors, 1 + k, z_dim): view 0 is the anchor, views 1..k its positives.

    ``gaussian``: z_j = z_0 + truncation·σ·TN(−2, 2) (GenRep's "gauss" views); ``independent``: every
    view is an independent draw (same class is enforced by the caller's labels).
    """
    if mode not in VIEW_MODES:
        raise ValueError(f"view mode {mode!r}; allowed: {', '.join(VIEW_MODES)}")
    if k < 1 or sigma < 0:
        raise ValueError(f"need k >= 1 and sigma >= 0, got k={k}, sigma={sigma}")
    anchors = truncation * truncated_normal((n_anchors, 1, z_dim), g)
    if mode == "independent":
        return torch.cat([anchors, truncation * truncated_normal((n_anchors, k, z_dim), g)], dim=1)
    return torch.cat([anchors, anchors + truncation * sigma * truncated_normal((n_anchors, k, z_dim), g)], dim=1)


def vae_loss(x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO per image: Bernoulli reconstruction (summed over pixels) + β·KL(q(z|x,c) ‖ N(0, I))."""
    rec = F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return rec + beta * kl, rec, kl


def train_cvae(generator: nn.Module, encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
               epochs: int, batch_size: int, lr: float, beta: float, device: torch.device, seed: int,
               on_epoch: Callable[[int, dict[str, float]], bool] | None = None) -> list[dict[str, float]]:
    """Train the generator as the decoder of a conditional VAE on uint8 (N,C,H,W) images.

    ``on_epoch(epoch, stats)`` returning True stops training early (the caller's quality check).
    """
    generator.to(device).train()
    encoder.to(device).train()
    opt = torch.optim.Adam(list(generator.parameters()) + list(encoder.parameters()), lr=lr)
    history = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(images), generator=g)
        sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
        for start in progress(range(0, len(images), batch_size), desc=f"generator epoch {epoch + 1}/{epochs}",
                              unit="batch"):
            idx = order[start:start + batch_size]
            x = images[idx].to(device).float().div_(255)
            c = labels[idx].to(device)
            mu, logvar = encoder(x, c)
            z = mu + torch.randn(mu.shape, generator=g).to(device) * (0.5 * logvar).exp()
            loss, rec, kl = vae_loss(generator(z, c), x, mu, logvar, beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for key, v in (("loss", loss), ("reconstruction", rec), ("kl", kl)):
                sums[key] += v.item() * len(idx)
        stats = {"epoch": epoch + 1, **{k: v / len(images) for k, v in sums.items()}}
        history.append(stats)
        if on_epoch is not None and on_epoch(epoch + 1, stats):
            break
    generator.eval()
    encoder.eval()
    return history


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, d) and b (M, d) (as in FID):
    ‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)

    def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
        vals, vecs = torch.linalg.eigh((m + m.T) / 2)
        return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T

    root_a = sqrtm_psd(cov_a)
    cross = sqrtm_psd(root_a @ cov_b @ root_a)
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(cov_a + cov_b - 2 * cross))


@torch.no_grad()
def generate_images(generator: nn.Module, z: torch.Tensor, c: torch.Tensor, *, batch_size: int = 500,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Render latents z (N, z_dim) with classes c (N,) to uint8 (N,C,H,W) images on CPU."""
    generator.eval()
    out = [generator(z[i:i + batch_size].to(device), c[i:i + batch_size].to(device)).mul(255).round().byte().cpu()
           for i in range(0, len(z), batch_size)]
    return torch.cat(out)
