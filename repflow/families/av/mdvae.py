"""MDVAE (Sadok et al. 2024, 'A multimodal dynamical variational autoencoder for audiovisual speech
representation learning'): stage 2, on the frozen VQ-VAEs' pre-quantisation latent sequences.

Latents of a clip of T frames (the paper's abstract; the official code's ``config_mdvae/model/default.yaml``):

- ``w`` (static, one per clip): what does not change over the clip (identity, emotion);
- ``z_av_t`` (shared dynamic): what moves in both modalities at once (lips and formants);
- ``z_a_t`` / ``z_v_t`` (audio- / visual-specific dynamic).

Generative model::

    p(w) = N(0, I)
    p(z*_t | z*_{<t}) = N(μ, σ²)(h*_t),  h*_t = GRU(z*_{t-1}, h*_{t-1})        for * in av, a, v
    p(x^a_t | z^a_t, z^av_t, w),  p(x^v_t | z^v_t, z^av_t, w): unit-variance Gaussians, means from MLPs

Inference model (causal except for w; each dynamic latent's posterior and prior share its GRU state, which
is fed the posterior sample of t−1)::

    q(w | x^a_{1:T}, x^v_{1:T}):        BiGRU over [φ_a(x^a_t), φ_v(x^v_t)], final states of both directions
    q(z^av_t | h^av_t, w, φ_a(x^a_t), φ_v(x^v_t))
    q(z^a_t  | h^a_t,  w, φ_a(x^a_t), z^av_t)
    q(z^v_t  | h^v_t,  w, φ_v(x^v_t), z^av_t)

ELBO (:func:`elbo`), every term in **nats per frame**::

    rec_a  = Σ_t −log p(x^a_t | ·) / T           rec_v likewise
    kl_w   = KL(q(w) ‖ N(0, I)) / T
    kl_av  = Σ_t KL(q(z^av_t) ‖ p(z^av_t | h^av_t)) / T     kl_a, kl_v likewise
    loss   = rec_a + rec_v + β (kl_w + kl_av + kl_a + kl_v)    (mean over the batch)

How this differs from the official code (samsad35/code-mdvae), on purpose:

- the reconstruction term is a Gaussian NLL on the **standardised pre-quantisation latents** it
  reconstructs; the official code applies an Itakura–Saito divergence, a measure between positive power
  spectra, to audio latents that can be negative (its log is then undefined);
- KL(w) is divided by T like every other term (the official code divides it by B only, which weighs the
  static KL ×T against the rest);
- validation uses its own data under ``torch.no_grad`` (see ``training.evaluate_sequence_model``); the
  speaker-held-out split is the data stage's.

Sizes (official → default here, for CPU): w 84 → 32; z_av 16, z_a 8, z_v 4 (kept); dynamic GRUs 128 → 32
(÷4); w's BiGRU 256 → 64 per direction (÷4); MLP widths 256/128 → ``hidden_dim`` 64 / 32; φ_v 2048→1024→512
→ D_v → 2·f → f with f = ``visual_feature_dim`` = 128; φ_a the identity (as official); decoders
[w+z → 128 → 256 → D_a] tanh and [→ 512 → 1024 → D_v] ReLU → [→ 64 → 128 → D] with the same activations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from repflow.families.av.blocks import (Batch, Gaussian, GaussianHead, SequenceModel, gaussian_kl, gaussian_nll,
                                        mlp, standard_normal_kl)

__all__ = ["MDVAE", "DynamicChain", "DynamicLatent", "MDVAEPosterior", "elbo", "stack_dynamic", "static_encoder_output"]


@dataclass
class DynamicLatent:
    """One dynamic latent over a clip: posterior q and prior p (each μ, log σ² of shape (B, T, d)) and the
    sample (B, T, d) that was fed forward (the posterior mean when inference ran without a generator)."""

    q: Gaussian
    p: Gaussian
    sample: torch.Tensor


@dataclass
class MDVAEPosterior:
    """q(w) (μ, log σ² (B, d_w)), its sample, and the three dynamic latents."""

    q_w: Gaussian
    w: torch.Tensor
    z_av: DynamicLatent
    z_a: DynamicLatent
    z_v: DynamicLatent


def static_encoder_output(gru: nn.GRU, features: torch.Tensor) -> torch.Tensor:
    """Final states of a bidirectional GRU over (B, T, f) features, both directions side by side (B, 2H)."""
    _, last = gru(features)
    return torch.cat([last[0], last[1]], dim=-1)


class DynamicChain(nn.Module):
    """One dynamic latent's recurrence: GRU cell h_t = GRU(z_{t-1}, h_{t-1}) and the prior p(z_t | h_t)."""

    def __init__(self, z_dim: int, gru_dim: int):
        super().__init__()
        self.z_dim, self.gru_dim = z_dim, gru_dim
        self.cell = nn.GRUCell(z_dim, gru_dim)
        self.prior = GaussianHead(gru_dim, [gru_dim], z_dim)

    def start(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_0, h_0): zeros."""
        return like.new_zeros(batch, self.z_dim), like.new_zeros(batch, self.gru_dim)


def stack_dynamic(chain: DynamicChain, states: list[torch.Tensor], posteriors: list[Gaussian],
                  samples: list[torch.Tensor]) -> DynamicLatent:
    """Stack a chain's per-frame GRU states, posteriors and samples over time; the priors p(z_t | h_t) are
    computed here, all frames at once (they depend on h_t alone)."""
    q = Gaussian(torch.stack([g.mu for g in posteriors], 1), torch.stack([g.logvar for g in posteriors], 1))
    return DynamicLatent(q, chain.prior(torch.stack(states, 1)), torch.stack(samples, 1))


class MDVAE(SequenceModel):
    """The multimodal dynamical VAE on audio latents (B, T, ``audio_dim``) and visual latents (B, T,
    ``visual_dim``). Sizes and the equations are in the module docstring."""

    modalities = ("audio", "visual")

    def __init__(self, audio_dim: int, visual_dim: int, *, w_dim: int = 32, z_av_dim: int = 16, z_a_dim: int = 8,
                 z_v_dim: int = 4, gru_dim: int = 32, w_gru_dim: int = 64, hidden_dim: int = 64,
                 visual_feature_dim: int = 128):
        super().__init__({"audio": audio_dim, "visual": visual_dim})
        for name, value in (("w_dim", w_dim), ("z_av_dim", z_av_dim), ("z_a_dim", z_a_dim), ("z_v_dim", z_v_dim),
                            ("gru_dim", gru_dim), ("w_gru_dim", w_gru_dim), ("hidden_dim", hidden_dim),
                            ("visual_feature_dim", visual_feature_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MDVAE {name} must be an int >= 1, got {value!r}")
        self.w_dim, self.z_av_dim, self.z_a_dim, self.z_v_dim = w_dim, z_av_dim, z_a_dim, z_v_dim
        fa, fv = audio_dim, visual_feature_dim
        half = max(hidden_dim // 2, 1)
        self.phi_a = nn.Identity()
        self.phi_v = mlp([visual_dim, 2 * fv, fv], nn.ReLU)
        self.w_gru = nn.GRU(fa + fv, w_gru_dim, batch_first=True, bidirectional=True)
        self.q_w = GaussianHead(2 * w_gru_dim, [hidden_dim], w_dim)
        self.chain_av = DynamicChain(z_av_dim, gru_dim)
        self.chain_a = DynamicChain(z_a_dim, gru_dim)
        self.chain_v = DynamicChain(z_v_dim, gru_dim)
        self.q_av = GaussianHead(gru_dim + w_dim + fa + fv, [hidden_dim, half], z_av_dim)
        self.q_a = GaussianHead(gru_dim + w_dim + fa + z_av_dim, [hidden_dim, half], z_a_dim)
        self.q_v = GaussianHead(gru_dim + w_dim + fv + z_av_dim, [hidden_dim, half], z_v_dim)
        self.decoder_a = mlp([w_dim + z_av_dim + z_a_dim, hidden_dim, 2 * hidden_dim, audio_dim],
                             last_activation=False)
        self.decoder_v = mlp([w_dim + z_av_dim + z_v_dim, hidden_dim, 2 * hidden_dim, visual_dim], nn.ReLU,
                             last_activation=False)

    def _inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xv = self._input(batch, "audio"), self._input(batch, "visual")
        if xa.shape[:2] != xv.shape[:2]:
            raise ValueError(f"audio latents {tuple(xa.shape)} and visual latents {tuple(xv.shape)} must share "
                             f"(B, T): one audio and one visual latent per video frame")
        return xa, xv

    def infer(self, batch: Batch, generator: torch.Generator | None = None) -> MDVAEPosterior:
        """The posterior of a batch; samples drawn with ``generator``, or the means throughout when None."""
        xa, xv = self._inputs(batch)
        fa, fv = self.phi_a(xa), self.phi_v(xv)
        q_w = self.q_w(static_encoder_output(self.w_gru, torch.cat([fa, fv], -1)))
        w = q_w.sample(generator)
        n, frames = xa.shape[:2]
        z_av, h_av = self.chain_av.start(n, xa)
        z_a, h_a = self.chain_a.start(n, xa)
        z_v, h_v = self.chain_v.start(n, xa)
        states: dict[str, list] = {"av": [], "a": [], "v": []}
        posteriors: dict[str, list] = {"av": [], "a": [], "v": []}
        samples: dict[str, list] = {"av": [], "a": [], "v": []}
        for t in range(frames):
            h_av = self.chain_av.cell(z_av, h_av)
            q_av = self.q_av(torch.cat([h_av, w, fa[:, t], fv[:, t]], -1))
            z_av = q_av.sample(generator)
            h_a = self.chain_a.cell(z_a, h_a)
            q_a = self.q_a(torch.cat([h_a, w, fa[:, t], z_av], -1))
            z_a = q_a.sample(generator)
            h_v = self.chain_v.cell(z_v, h_v)
            q_v = self.q_v(torch.cat([h_v, w, fv[:, t], z_av], -1))
            z_v = q_v.sample(generator)
            for key, h, q, z in (("av", h_av, q_av, z_av), ("a", h_a, q_a, z_a), ("v", h_v, q_v, z_v)):
                states[key].append(h)
                posteriors[key].append(q)
                samples[key].append(z)
        return MDVAEPosterior(q_w, w, *(stack_dynamic(getattr(self, f"chain_{key}"), states[key], posteriors[key],
                                                  samples[key]) for key in ("av", "a", "v")))

    def decode_standardised(self, w: torch.Tensor, z_av: torch.Tensor, z_a: torch.Tensor,
                            z_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means of p(x^a_t | ·) and p(x^v_t | ·) in standardised units, (B, T, D_a) and (B, T, D_v), from
        w (B, d_w) and the dynamic latents (B, T, d)."""
        w_t = w.unsqueeze(1).expand(-1, z_av.shape[1], -1)
        return (self.decoder_a(torch.cat([w_t, z_av, z_a], -1)),
                self.decoder_v(torch.cat([w_t, z_av, z_v], -1)))

    def decode(self, w: torch.Tensor, z_av: torch.Tensor, z_a: torch.Tensor,
               z_v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded latents in the VQ-VAEs' units: {"audio": (B, T, D_a), "visual": (B, T, D_v)}; any
        combination of w and dynamics (a latent swap passes w from one clip and z's from another)."""
        xa, xv = self.decode_standardised(w, z_av, z_a, z_v)
        return {"audio": self._unstandardise("audio", xa), "visual": self._unstandardise("visual", xv)}

    def terms(self, batch: Batch, *, beta: float = 1.0,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return elbo(self, batch, beta=beta, generator=generator)

    def static(self, batch: Batch) -> torch.Tensor:
        return self.infer(batch).q_w.mu

    def dynamic(self, batch: Batch) -> torch.Tensor:
        """[z_av, z_a, z_v] posterior means side by side, (B, T, z_av_dim + z_a_dim + z_v_dim)."""
        post = self.infer(batch)
        return torch.cat([post.z_av.q.mu, post.z_a.q.mu, post.z_v.q.mu], -1)

    def reconstruct(self, batch: Batch) -> dict[str, torch.Tensor]:
        post = self.infer(batch)
        return self.decode(post.w, post.z_av.sample, post.z_a.sample, post.z_v.sample)


def elbo(model: MDVAE, batch: Batch, *, beta: float = 1.0,
         generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The negative ELBO of a batch and its parts, each a scalar in nats per frame (mean over clips, sum
    over a clip's frames divided by T): ``rec_audio``, ``rec_visual`` (Gaussian NLLs of the standardised
    latents those decoders reconstruct), ``kl_w``, ``kl_av``, ``kl_a``, ``kl_v``, ``kl`` (their sum) and
    ``loss`` = rec_audio + rec_visual + β·kl. Samples come from ``generator`` (posterior means if None)."""
    xa, xv = model._inputs(batch)
    frames = xa.shape[1]
    post = model.infer(batch, generator)
    xa_hat, xv_hat = model.decode_standardised(post.w, post.z_av.sample, post.z_a.sample, post.z_v.sample)
    terms = {
        "rec_audio": gaussian_nll(xa, xa_hat).mean(),
        "rec_visual": gaussian_nll(xv, xv_hat).mean(),
        "kl_w": standard_normal_kl(post.q_w).mean() / frames,
        "kl_av": gaussian_kl(post.z_av.q, post.z_av.p).mean(),
        "kl_a": gaussian_kl(post.z_a.q, post.z_a.p).mean(),
        "kl_v": gaussian_kl(post.z_v.q, post.z_v.p).mean(),
    }
    terms["kl"] = terms["kl_w"] + terms["kl_av"] + terms["kl_a"] + terms["kl_v"]
    terms["loss"] = terms["rec_audio"] + terms["rec_visual"] + beta * terms["kl"]
    return terms
