"""The models MDVAE is compared with, and the registry of every representation model of the family.

- :class:`DVAE`: a unimodal dynamical VAE, DSAE-style (Yingzhen & Mandt 2018; the same group's DVAE review
  code, XiaoyuBIE1994/DVAE): a static w and one dynamic z_t on one modality's latents. With the MDVAE's
  sizes (w the same, z_t as wide as z_av + that modality's own z), it is MDVAE with the other modality
  removed: the unimodal baselines of the paper's few-label emotion table.
- :class:`FrameVAE`: a per-frame VAE on both modalities' latents of a frame, no static latent and no
  temporal model; a clip's representation is the mean of its frames' posterior means. Its latent is as wide
  as w, so the probes compare representations of the same size.

Every ELBO term is in nats per frame, as in :func:`repflow.families.av.mdvae.elbo`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from repflow.families.av.blocks import (Batch, Gaussian, GaussianHead, SequenceModel, gaussian_kl, gaussian_nll,
                                        mlp, standard_normal_kl)
from repflow.families.av.mdvae import MDVAE, DynamicChain, stack_dynamic, static_encoder_output
from repflow.registry import Listed, Registry

__all__ = ["DVAE", "FrameVAE", "SequenceModelEntry", "SEQUENCE_MODELS", "build_sequence_model"]


def _check_sizes(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner} {name} must be an int >= 1, got {value!r}")


class DVAE(SequenceModel):
    """Unimodal dynamical VAE on one ``modality``'s latents (B, T, ``input_dim``)::

        p(w) = N(0, I),  p(z_t | z_{<t}) from a GRU state,  p(x_t | z_t, w)
        q(w | x_{1:T}) by a BiGRU,  q(z_t | h_t, w, φ(x_t))

    φ is the identity for audio and an MLP to ``visual_feature_dim`` for visual latents (as in MDVAE)."""

    def __init__(self, modality: str, input_dim: int, *, w_dim: int = 32, z_dim: int = 20, gru_dim: int = 32,
                 w_gru_dim: int = 64, hidden_dim: int = 64, visual_feature_dim: int = 128):
        super().__init__({modality: input_dim})
        _check_sizes("DVAE", w_dim=w_dim, z_dim=z_dim, gru_dim=gru_dim, w_gru_dim=w_gru_dim, hidden_dim=hidden_dim,
                     visual_feature_dim=visual_feature_dim)
        self.modality = modality
        self.modalities = (modality,)
        self.w_dim, self.z_dim = w_dim, z_dim
        visual = modality == "visual"
        features = visual_feature_dim if visual else input_dim
        self.phi = mlp([input_dim, 2 * features, features], nn.ReLU) if visual else nn.Identity()
        self.w_gru = nn.GRU(features, w_gru_dim, batch_first=True, bidirectional=True)
        self.q_w = GaussianHead(2 * w_gru_dim, [hidden_dim], w_dim)
        self.chain = DynamicChain(z_dim, gru_dim)
        self.q_z = GaussianHead(gru_dim + w_dim + features, [hidden_dim, max(hidden_dim // 2, 1)], z_dim)
        self.decoder = mlp([w_dim + z_dim, hidden_dim, 2 * hidden_dim, input_dim],
                           nn.ReLU if visual else nn.Tanh, last_activation=False)

    def infer(self, batch: Batch, generator: torch.Generator | None = None
              ) -> tuple[Gaussian, torch.Tensor, Gaussian, Gaussian, torch.Tensor]:
        """(q(w), w, q(z) and p(z) each (B, T, z_dim), z samples (B, T, z_dim)); means if no generator."""
        x = self._input(batch, self.modality)
        f = self.phi(x)
        q_w = self.q_w(static_encoder_output(self.w_gru, f))
        w = q_w.sample(generator)
        z, h = self.chain.start(x.shape[0], x)
        states, posteriors, samples = [], [], []
        for t in range(x.shape[1]):
            h = self.chain.cell(z, h)
            q = self.q_z(torch.cat([h, w, f[:, t]], -1))
            z = q.sample(generator)
            states.append(h)
            posteriors.append(q)
            samples.append(z)
        latent = stack_dynamic(self.chain, states, posteriors, samples)
        return q_w, w, latent.q, latent.p, latent.sample

    def _decode(self, w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([w.unsqueeze(1).expand(-1, z.shape[1], -1), z], -1))

    def terms(self, batch: Batch, *, beta: float = 1.0,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``rec_<modality>``, ``kl_w`` (÷T), ``kl_z``, ``kl``, ``loss``: nats per frame."""
        x = self._input(batch, self.modality)
        q_w, w, q_z, p_z, z = self.infer(batch, generator)
        terms = {f"rec_{self.modality}": gaussian_nll(x, self._decode(w, z)).mean(),
                 "kl_w": standard_normal_kl(q_w).mean() / x.shape[1],
                 "kl_z": gaussian_kl(q_z, p_z).mean()}
        terms["kl"] = terms["kl_w"] + terms["kl_z"]
        terms["loss"] = terms[f"rec_{self.modality}"] + beta * terms["kl"]
        return terms

    def static(self, batch: Batch) -> torch.Tensor:
        return self.infer(batch)[0].mu

    def dynamic(self, batch: Batch) -> torch.Tensor:
        return self.infer(batch)[2].mu

    def reconstruct(self, batch: Batch) -> dict[str, torch.Tensor]:
        _, w, _, _, z = self.infer(batch)
        return {self.modality: self._unstandardise(self.modality, self._decode(w, z))}


class FrameVAE(SequenceModel):
    """Per-frame VAE on [φ_a(x^a_t), φ_v(x^v_t)]: q(z_t | x^a_t, x^v_t), p(z_t) = N(0, I), decoders
    p(x^a_t | z_t) and p(x^v_t | z_t). No static latent; ``static`` is the time mean of the posterior means."""

    modalities = ("audio", "visual")

    def __init__(self, audio_dim: int, visual_dim: int, *, z_dim: int = 32, hidden_dim: int = 64,
                 visual_feature_dim: int = 128):
        super().__init__({"audio": audio_dim, "visual": visual_dim})
        _check_sizes("FrameVAE", z_dim=z_dim, hidden_dim=hidden_dim, visual_feature_dim=visual_feature_dim)
        self.z_dim = z_dim
        self.phi_v = mlp([visual_dim, 2 * visual_feature_dim, visual_feature_dim], nn.ReLU)
        self.q_z = GaussianHead(audio_dim + visual_feature_dim, [hidden_dim, hidden_dim], z_dim)
        self.decoder_a = mlp([z_dim, hidden_dim, 2 * hidden_dim, audio_dim], last_activation=False)
        self.decoder_v = mlp([z_dim, hidden_dim, 2 * hidden_dim, visual_dim], nn.ReLU, last_activation=False)

    def _posterior(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, Gaussian]:
        xa, xv = self._input(batch, "audio"), self._input(batch, "visual")
        if xa.shape[:2] != xv.shape[:2]:
            raise ValueError(f"audio latents {tuple(xa.shape)} and visual latents {tuple(xv.shape)} must share (B, T)")
        return xa, xv, self.q_z(torch.cat([xa, self.phi_v(xv)], -1))

    def terms(self, batch: Batch, *, beta: float = 1.0,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``rec_audio``, ``rec_visual``, ``kl_z``, ``kl``, ``loss``: nats per frame."""
        xa, xv, q = self._posterior(batch)
        z = q.sample(generator)
        terms = {"rec_audio": gaussian_nll(xa, self.decoder_a(z)).mean(),
                 "rec_visual": gaussian_nll(xv, self.decoder_v(z)).mean(),
                 "kl_z": standard_normal_kl(q).mean()}
        terms["kl"] = terms["kl_z"]
        terms["loss"] = terms["rec_audio"] + terms["rec_visual"] + beta * terms["kl"]
        return terms

    def static(self, batch: Batch) -> torch.Tensor:
        return self._posterior(batch)[2].mu.mean(1)

    def dynamic(self, batch: Batch) -> torch.Tensor:
        return self._posterior(batch)[2].mu

    def reconstruct(self, batch: Batch) -> dict[str, torch.Tensor]:
        z = self._posterior(batch)[2].mu
        return {"audio": self._unstandardise("audio", self.decoder_a(z)),
                "visual": self._unstandardise("visual", self.decoder_v(z))}


@dataclass(frozen=True, kw_only=True)
class SequenceModelEntry(Listed):
    """``factory(audio_dim=, visual_dim=, **sizes)`` builds the model; ``modalities`` are the latents it
    reads; ``static_latent`` names what ``static`` returns."""

    factory: Callable[..., SequenceModel]
    modalities: tuple[str, ...]
    static_latent: str


def _dvae(modality: str) -> Callable[..., DVAE]:
    def factory(*, audio_dim: int, visual_dim: int, w_dim: int = 32, z_dim: int | None = None, gru_dim: int = 32,
                w_gru_dim: int = 64, hidden_dim: int = 64, visual_feature_dim: int = 128) -> DVAE:
        """z_dim defaults to MDVAE's z_av + the modality's own z (16 + 8 audio, 16 + 4 visual)."""
        own = 8 if modality == "audio" else 4
        return DVAE(modality, audio_dim if modality == "audio" else visual_dim, w_dim=w_dim,
                    z_dim=16 + own if z_dim is None else z_dim, gru_dim=gru_dim, w_gru_dim=w_gru_dim,
                    hidden_dim=hidden_dim, visual_feature_dim=visual_feature_dim)
    return factory


def _frame_vae(*, audio_dim: int, visual_dim: int, z_dim: int = 32, hidden_dim: int = 64,
               visual_feature_dim: int = 128) -> FrameVAE:
    return FrameVAE(audio_dim, visual_dim, z_dim=z_dim, hidden_dim=hidden_dim, visual_feature_dim=visual_feature_dim)


def _mdvae(*, audio_dim: int, visual_dim: int, **sizes: Any) -> MDVAE:
    return MDVAE(audio_dim, visual_dim, **sizes)


SEQUENCE_MODELS: Registry[SequenceModelEntry] = Registry("av representation model")
_MDVAE_PAPER = ("Sadok, Leglaive, Girin, Alameda-Pineda, Séguier 2024, 'A multimodal dynamical variational "
                "autoencoder for audiovisual speech representation learning' (Neural Networks 172:106120)")
_DSAE_PAPER = "Li & Mandt 2018, 'Disentangled Sequential Autoencoder' (ICML); as reviewed by Girin et al. 2021"
SEQUENCE_MODELS.register("mdvae", SequenceModelEntry(
    factory=_mdvae, modalities=("audio", "visual"), static_latent="w", paper=_MDVAE_PAPER,
    summary="static w shared by both modalities, shared dynamic z_av and modality-specific z_a, z_v with GRU "
            "priors, on the VQ-VAEs' pre-quantisation latents"))
SEQUENCE_MODELS.register("dvae_audio", SequenceModelEntry(
    factory=_dvae("audio"), modalities=("audio",), static_latent="w", paper=_DSAE_PAPER,
    summary="unimodal baseline: static w + dynamic z with a GRU prior on the speech latents only"))
SEQUENCE_MODELS.register("dvae_visual", SequenceModelEntry(
    factory=_dvae("visual"), modalities=("visual",), static_latent="w", paper=_DSAE_PAPER,
    summary="unimodal baseline: static w + dynamic z with a GRU prior on the face latents only"))
SEQUENCE_MODELS.register("frame_vae", SequenceModelEntry(
    factory=_frame_vae, modalities=("audio", "visual"), static_latent="mean z",
    paper="Kingma & Welling 2014, 'Auto-Encoding Variational Bayes' (ICLR)",
    summary="non-dynamical baseline: a VAE on each frame's audio + visual latents; a clip is the mean of its "
            "frames' posterior means"))


def build_sequence_model(name: str, *, audio_dim: int, visual_dim: int, **sizes: Any) -> SequenceModel:
    """The registered model ``name`` for audio latents of ``audio_dim`` and visual latents of ``visual_dim``
    per frame; ``sizes`` are its keywords (w_dim, z_dim, hidden_dim, ...). An unknown name or keyword raises
    ValueError naming it and the allowed ones."""
    entry = SEQUENCE_MODELS[name]
    target = MDVAE.__init__ if entry.factory is _mdvae else entry.factory
    accepted = [p for p in inspect.signature(target).parameters
                if p not in ("self", "audio_dim", "visual_dim")]
    for key in sizes:
        if key not in accepted:
            raise ValueError(f"av representation model {name!r} has no option {key!r}; allowed: {accepted}")
    return entry.factory(audio_dim=audio_dim, visual_dim=visual_dim, **sizes)

