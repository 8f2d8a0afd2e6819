"""The audio family's networks: an AudioNTT-style encoder over log-mel patches, its projection head, and
the waveform classifier the evaluation attacks (features + encoder + probe in one differentiable module)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["AudioNTT", "projection_head", "WaveformClassifier", "AudioEmbedder", "FREQ_POOLING"]

FREQ_POOLING = ("mean", "flatten")
"""How the encoder leaves the frequency axis after its conv blocks.

``mean``: average over frequency (what the issue asks: the CNN pools over frequency and time, so a pattern's
absolute frequency is only visible through the zero padding at the spectrogram's edges; the paper's
argument is about this blindness). ``flatten``: AudioNTT2020 as in BYOL-A's official code, which flattens
channels × frequency bins into one vector per frame before its fully connected layers (keeps frequency
position by construction)."""


class AudioNTT(nn.Module):
    """Conv blocks (3×3 conv, batch norm, ReLU, 2×2 max-pool), a per-frame MLP, then mean + max over time.

    Input: normalised log-mel (N, 1, n_mels, frames). Output: (N, dim). Each block halves both axes, so
    ``n_mels`` must be divisible by 2**blocks. Sizes at defaults (64 mel, 3 blocks, 64 channels, dim 512)
    match AudioNTT2020 apart from ``freq_pool`` (see :data:`FREQ_POOLING`).
    """

    def __init__(self, n_mels: int = 64, channels: int = 64, blocks: int = 3, dim: int = 512,
                 freq_pool: str = "mean", dropout: float = 0.3):
        super().__init__()
        if freq_pool not in FREQ_POOLING:
            raise ValueError(f"freq_pool {freq_pool!r} unknown; allowed: {list(FREQ_POOLING)}")
        if n_mels % (2 ** blocks):
            raise ValueError(f"n_mels = {n_mels} must be divisible by 2**blocks = {2 ** blocks} (each block halves it)")
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(blocks):
            layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.freq_pool = freq_pool
        per_frame = channels * (n_mels // 2 ** blocks) if freq_pool == "flatten" else channels
        self.frame_mlp = nn.Sequential(nn.Linear(per_frame, dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                       nn.Linear(dim, dim), nn.ReLU(inplace=True))
        self.out_dim = dim
        self.config = {"arch": "audio_ntt", "n_mels": n_mels, "channels": channels, "blocks": blocks, "dim": dim,
                       "freq_pool": freq_pool, "dropout": dropout}

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        h = self.features(logmel)  # (N, C, F', T')
        if self.freq_pool == "mean":
            frames = h.mean(dim=2).transpose(1, 2)  # (N, T', C)
        else:
            frames = h.permute(0, 3, 1, 2).flatten(2)  # (N, T', C·F')
        frames = self.frame_mlp(frames)
        return frames.mean(dim=1) + frames.amax(dim=1)


def projection_head(dim: int, proj_dim: int) -> nn.Module:
    """SimCLR's two-layer MLP between the representation and the contrastive loss (discarded after training)."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, proj_dim))


class WaveformClassifier(nn.Module):
    """waveform → log-mel → normalise → encoder → linear probe, one differentiable module.

    The attack suite (:mod:`repflow.attacks`) works on inputs in [0, 1]; a waveform lives in [-1, 1]. So
    this module takes ``u = (w + 1) / 2`` of shape (N, 1, T) and maps it back: an ℓ∞ radius ε on ``u`` is
    2ε in waveform amplitude, and the attack's [0, 1] box is exactly the waveform's [-1, 1] range.
    """

    def __init__(self, logmel: nn.Module, mean: float, std: float, encoder: nn.Module, probe: nn.Module):
        super().__init__()
        self.logmel, self.encoder, self.probe = logmel, encoder, probe
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        w = u.flatten(1) * 2 - 1
        return self.probe(self.encoder((self.logmel(w) - self.mean) / self.std))


class AudioEmbedder(nn.Module):
    """waveform (N, T) at the training sample rate, in [-1, 1] → embedding (N, dim): log-mel, the training
    data's normalisation, encoder. What the registry holds, so a user's audio needs no repflow code."""

    def __init__(self, logmel: nn.Module, mean: float, std: float, encoder: nn.Module):
        super().__init__()
        self.logmel, self.encoder = logmel, encoder
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encoder((self.logmel(waveform) - self.mean) / self.std)
