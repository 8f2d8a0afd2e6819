"""Pieces the MDVAE and its baselines share: diagonal-Gaussian heads and KLs, the reparameterisation, the
standardisation of latent sequences, and :class:`SequenceModel`, the interface every representation model
of the family has (so one training loop, one probe and one swap code path serve them all).

A batch is a dict of float tensors: ``"audio"`` (B, T, D_a) and / or ``"visual"`` (B, T, D_v), the frozen
VQ-VAEs' pre-quantisation latents of a clip's frames, one row per video frame. Each model reads the
modalities in its ``modalities`` and ignores the others.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["Gaussian", "GaussianHead", "mlp", "gaussian_kl", "standard_normal_kl", "gaussian_nll",
           "SequenceModel", "Batch", "MODALITIES"]

MODALITIES = ("audio", "visual")
Batch = Mapping[str, torch.Tensor]
LOG_2PI = math.log(2 * math.pi)


class Gaussian(NamedTuple):
    """A diagonal Gaussian: mean and log-variance of the same shape (…, d)."""

    mu: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None) -> torch.Tensor:
        """A reparameterised draw μ + σ·ε; the mean itself when ``generator`` is None (deterministic
        inference, e.g. representations and reconstructions)."""
        if generator is None:
            return self.mu
        eps = torch.randn(self.mu.shape, generator=generator, dtype=self.mu.dtype, device=self.mu.device)
        return self.mu + torch.exp(0.5 * self.logvar) * eps


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh, last_activation: bool = True) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, each followed by ``activation`` (the last one only if
    ``last_activation``)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """input (…, d_in) → hidden tanh layers → two linear maps to μ and log σ² (…, d_out): the shape of every
    prior and posterior network in the official code (an MLP with tanh, then μ and log σ² side by side)."""

    def __init__(self, d_in: int, hidden: list[int], d_out: int):
        super().__init__()
        self.body = mlp([d_in, *hidden])
        width = hidden[-1] if hidden else d_in
        self.mu = nn.Linear(width, d_out)
        self.logvar = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> Gaussian:
        h = self.body(x)
        return Gaussian(self.mu(h), self.logvar(h))


def gaussian_kl(q: Gaussian, p: Gaussian) -> torch.Tensor:
    """KL(q ‖ p) in nats between diagonal Gaussians, summed over the last dim: (…, d) → (…)."""
    var_ratio = torch.exp(q.logvar - p.logvar)
    mean_term = (q.mu - p.mu).square() * torch.exp(-p.logvar)
    return 0.5 * (var_ratio + mean_term - 1 + p.logvar - q.logvar).sum(-1)


def standard_normal_kl(q: Gaussian) -> torch.Tensor:
    """KL(q ‖ N(0, I)) in nats, summed over the last dim."""
    return 0.5 * (q.mu.square() + torch.exp(q.logvar) - 1 - q.logvar).sum(-1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """−log N(x; mean, I) in nats, summed over the last dim: the reconstruction term of a latent vector whose
    decoder outputs the mean of a unit-variance Gaussian (the latents are standardised first, so unit
    variance is the scale of the data, not an arbitrary choice)."""
    return 0.5 * ((x - mean).square() + LOG_2PI).sum(-1)


class SequenceModel(nn.Module):
    """What every representation model of the family provides (shapes in the module docstring).

    - ``terms(batch, beta=, generator=)``: the negative ELBO and its parts, each in **nats per frame**
      (``loss`` = Σ reconstructions + β·Σ KLs), to minimise.
    - ``static(batch)`` → (B, S): the clip-level representation (posterior mean of w, or the mean of the
      frame latents for a model without a static latent).
    - ``dynamic(batch)`` → (B, T, Z): the per-frame latents' posterior means.
    - ``reconstruct(batch)`` → {modality: (B, T, D)}: decoded latents from posterior means, in the units of
      the input.

    Inputs are standardised per dimension with buffers set by :meth:`fit_standardisation` (from training
    data; :func:`~repflow.families.av.training.train_sequence_model` fits them on its first batch if the
    caller did not), so that a unit-variance reconstruction term weighs the same against the KLs whatever
    the scale of a VQ-VAE's latents.
    """

    modalities: tuple[str, ...] = ()

    def __init__(self, dims: Mapping[str, int]):
        super().__init__()
        self.dims = dict(dims)
        for name, dim in self.dims.items():
            if name not in MODALITIES:
                raise ValueError(f"unknown modality {name!r}; allowed: {list(MODALITIES)}")
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise ValueError(f"{name} latent size must be an int >= 1, got {dim!r}")
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.register_buffer("standardisation_fitted", torch.tensor(False))

    @torch.no_grad()
    def fit_standardisation(self, batch: Batch) -> None:
        """Set each modality's per-dimension mean and std from (N, T, D) training latents."""
        for name in self.modalities:
            flat = self._input(batch, name, standardise=False).reshape(-1, self.dims[name])
            getattr(self, f"{name}_mean").copy_(flat.mean(0))
            getattr(self, f"{name}_std").copy_(flat.std(0, correction=0).clamp_min(1e-6))
        self.standardisation_fitted.fill_(True)

    def _input(self, batch: Batch, name: str, standardise: bool = True) -> torch.Tensor:
        if name not in batch:
            raise ValueError(f"{type(self).__name__} needs the {name!r} latents; the batch has {sorted(batch)}")
        x = batch[name]
        if x.dim() != 3 or x.shape[-1] != self.dims[name]:
            raise ValueError(f"{name} latents must be (B, T, {self.dims[name]}), got shape {tuple(x.shape)}")
        if not standardise:
            return x
        return (x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def _unstandardise(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return x * getattr(self, f"{name}_std") + getattr(self, f"{name}_mean")

    def terms(self, batch: Batch, *, beta: float = 1.0,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def static(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def dynamic(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError
