"""What the latents do, made visible and audible: latent swaps and audio-visual denoising of faces.

- :func:`swap_static`: w from clip A with the dynamics (z_av, z_a, z_v posterior means) of clip B, decoded
  by the MDVAE; :func:`render_latents` takes decoded latents through the frozen VQ-VAE decoders to faces and
  spectra, :func:`image_strip` lays clips out as rows of frames, :func:`spectra_to_waveform` makes spectra
  audible (Griffin–Lim). If w carries the static factors, the swapped clip shows A's identity and emotion
  moving like B.
- :func:`corrupt_frames` occludes the lower face or adds noise; :func:`restore_faces` reconstructs the faces
  through a model (the MDVAE reads the clean speech too, a visual-only model only the corrupted faces);
  :func:`denoising_psnr` compares them, with the corrupted input and the VQ-VAE alone as references.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torchaudio

from repflow.families.av.blocks import SequenceModel
from repflow.families.av.mdvae import MDVAE
from repflow.families.av.vqvae import VQVAE

__all__ = ["swap_static", "render_latents", "image_strip", "spectra_to_waveform", "CORRUPTIONS", "corrupt_frames",
           "restore_faces", "psnr", "denoising_psnr"]

CORRUPTIONS = ("mask", "noise")
"""``mask``: the lowest ``strength`` share of each frame's rows (the mouth and chin) set to mid grey;
``noise``: additive Gaussian noise of std ``strength`` (in [0, 1] pixel units), clipped."""


@torch.no_grad()
def swap_static(model: MDVAE, batch_a: Mapping[str, torch.Tensor],
                batch_b: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Decoded latents {"audio", "visual"} (B, T, D) of w = the posterior mean of clips A with the dynamic
    posterior means of clips B (each inferred with its own clip's w, as the model infers them). A and B
    pair clip by clip; B sets T."""
    was_training = model.training
    model.eval()
    post_a, post_b = model.infer(batch_a), model.infer(batch_b)
    if post_a.w.shape[0] != post_b.w.shape[0]:
        raise ValueError(f"batch A has {post_a.w.shape[0]} clips, batch B {post_b.w.shape[0]}: they swap pairwise")
    decoded = model.decode(post_a.q_w.mu, post_b.z_av.q.mu, post_b.z_a.q.mu, post_b.z_v.q.mu)
    model.train(was_training)
    return decoded


def render_latents(latents: Mapping[str, torch.Tensor], *, vq_audio: VQVAE | None = None,
                   vq_visual: VQVAE | None = None) -> dict[str, torch.Tensor]:
    """Decoded latent sequences → {"frames": float (B, T, H, W, 3) in [0, 1], "spectra": (B, T, F)} through
    the VQ-VAEs given (quantising first, as stage 1 decodes)."""
    out = {}
    if vq_visual is not None and "visual" in latents:
        out["frames"] = vq_visual.decode_sequence(latents["visual"])
    if vq_audio is not None and "audio" in latents:
        out["spectra"] = vq_audio.decode_sequence(latents["audio"])
    return out


def image_strip(rows: Sequence[torch.Tensor], *, every: int = 1, gap: int = 2) -> np.ndarray:
    """Clips (T, H, W, 3), uint8 or float in [0, 1], as one uint8 image: a row per clip, every ``every``-th
    frame left to right, ``gap`` white pixels between frames and rows. Rows of different T are cut to the
    shortest."""
    if not rows:
        raise ValueError("no rows to lay out")
    frames = min(r.shape[0] for r in rows)
    picked = list(range(0, frames, every))
    h, w = rows[0].shape[1:3]
    image = np.full((len(rows) * (h + gap) - gap, len(picked) * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        if tuple(row.shape[1:]) != (h, w, 3):
            raise ValueError(f"row {i} has frames of {tuple(row.shape[1:])}, row 0 of {(h, w, 3)}")
        pixels = row if row.dtype == torch.uint8 else (row.clamp(0, 1) * 255).round().to(torch.uint8)
        for j, t in enumerate(picked):
            image[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = pixels[t].cpu().numpy()
    return image


def spectra_to_waveform(spectra: torch.Tensor, *, sample_rate: int, fps: float, spectrum: str = "power",
                        n_iter: int = 32, peak: float | None = 0.9) -> torch.Tensor:
    """A float32 waveform (T·sample_rate/fps samples, about) from (T, F) spectrum frames, one per video frame,
    by Griffin–Lim with n_fft = 2(F − 1) and zero initial phase (deterministic). Each video frame's spectrum
    is held for r STFT frames of hop sample_rate/(fps·r) ≤ n_fft/4, so the inversion has the overlap it
    needs whatever hop the data used (the synthetic clips average several windows per video frame).
    ``spectrum``: "power" (|STFT|²) or "log_power" (natural log of it). A spectrum's absolute scale (e.g. a
    periodogram's 1/Σwindow²) only scales the waveform, so it is rescaled to a maximum |x| of ``peak``
    (None: left as Griffin–Lim returns it)."""
    if spectrum not in ("power", "log_power"):
        raise ValueError(f"spectrum must be 'power' or 'log_power', got {spectrum!r}")
    if spectra.dim() != 2 or spectra.shape[1] < 2:
        raise ValueError(f"spectra must be (T, F) with F >= 2, got {tuple(spectra.shape)}")
    power = spectra.float().exp() if spectrum == "log_power" else spectra.float().clamp_min(0)
    n_fft = 2 * (spectra.shape[1] - 1)
    samples_per_frame = sample_rate / fps
    repeats = max(1, math.ceil(samples_per_frame / (n_fft / 4)))
    hop = max(1, round(samples_per_frame / repeats))
    held = power.repeat_interleave(repeats, dim=0).t()
    griffin_lim = torchaudio.transforms.GriffinLim(n_fft=n_fft, n_iter=n_iter, hop_length=hop, power=2.0,
                                                   rand_init=False)
    wave = griffin_lim(held).float()
    if peak is not None:
        wave = wave * (peak / wave.abs().max().clamp_min(1e-12))
    return wave


def corrupt_frames(frames: torch.Tensor, *, kind: str = "mask", strength: float = 0.4, seed: int = 0) -> torch.Tensor:
    """uint8 (…, H, W, 3) frames with one of :data:`CORRUPTIONS` applied; same shape and dtype."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"corruption {kind!r} unknown; allowed: {list(CORRUPTIONS)}")
    if frames.dtype != torch.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (…, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    out = frames.clone()
    if kind == "mask":
        height = frames.shape[-3]
        out[..., height - max(1, round(strength * height)):, :, :] = 128
        return out
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(frames.shape, generator=generator) * strength * 255
    return (frames.float() + noise).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def restore_faces(model: SequenceModel, frames: torch.Tensor, *, vq_visual: VQVAE, spectra: torch.Tensor | None = None,
                  vq_audio: VQVAE | None = None) -> torch.Tensor:
    """Faces (B, T, H, W, 3) float in [0, 1] reconstructed by ``model`` from (corrupted) uint8 ``frames`` (B, T,
    H, W, 3), plus clean ``spectra`` (B, T, F) through ``vq_audio`` if the model reads audio."""
    if "visual" not in model.modalities:
        raise ValueError(f"{type(model).__name__} reads {model.modalities}: it cannot reconstruct faces")
    batch = {"visual": vq_visual.encode_sequence(frames)}
    if "audio" in model.modalities:
        if spectra is None or vq_audio is None:
            raise ValueError(f"{type(model).__name__} reads audio: pass spectra and vq_audio")
        batch["audio"] = vq_audio.encode_sequence(spectra)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    latents = model.reconstruct({k: v.to(device) for k, v in batch.items()})["visual"]
    model.train(was_training)
    return vq_visual.decode_sequence(latents).to(frames.device)


def psnr(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over frames of 10·log10(1 / MSE) in dB, for frames (…, H, W, 3) in [0, 1] (uint8 accepted);
    a frame's MSE is floored at 1e-10."""
    a = estimate.float() / 255 if estimate.dtype == torch.uint8 else estimate.float()
    b = reference.float() / 255 if reference.dtype == torch.uint8 else reference.float()
    if a.shape != b.shape:
        raise ValueError(f"estimate {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    mse = (a - b).square().flatten(-3).mean(-1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def denoising_psnr(models: Mapping[str, SequenceModel], frames: torch.Tensor, spectra: torch.Tensor, *,
                   vq_visual: VQVAE, vq_audio: VQVAE, kind: str = "mask", strength: float = 0.4,
                   seed: int = 0) -> dict[str, float]:
    """PSNR (dB) against the clean uint8 ``frames`` (B, T, H, W, 3) of: ``corrupted`` (the input itself),
    ``vq_visual`` (the corrupted frames through the VQ-VAE alone) and each of ``models`` (name → model that
    reads faces) restoring the corrupted frames, with the clean ``spectra`` (B, T, F) for those that read
    audio."""
    corrupted = corrupt_frames(frames, kind=kind, strength=strength, seed=seed)
    scores = {"corrupted": psnr(corrupted, frames),
              "vq_visual": psnr(vq_visual.decode_sequence(vq_visual.encode_sequence(corrupted)), frames)}
    for name, model in models.items():
        restored = restore_faces(model, corrupted, vq_visual=vq_visual, spectra=spectra, vq_audio=vq_audio)
        scores[name] = psnr(restored, frames)
    return scores
