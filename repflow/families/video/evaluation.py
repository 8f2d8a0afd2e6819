"""Scoring a trained watermarker on held-out clips: how invisible the mark is and how well its message
survives each distortion, real H.264 included, and what it costs.

Fidelity is measured on what would be saved: the watermarked clip clamped to [0, 1] and rounded to 8 bits.
PSNR is over every pixel of a clip (mean over clips); SSIM is scikit-image's on each RGB frame (mean);
the per-frame PSNR ``std`` and ``min`` are :func:`~repflow.families.video.losses.frame_psnr_summary`'s.
Bit accuracy is the share of message bits decoded right (0.5 is chance) after each distortion, and after
libx264 at each CRF through PyAV (:func:`~repflow.media.video.h264_roundtrip`), with random
messages drawn from ``seed``.

Matched fidelity: watermarkers that mark at different strengths cannot be compared by bit accuracy alone (a
louder mark survives more). With ``target_psnr`` every residual (watermarked − original, unclamped) is
scaled by the one factor that brings the saved clips' mean PSNR to the target (:func:`scale_for_psnr`), as
``repflow watermark embed --strength`` scales it, and the bits are read from those clips.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from skimage.metrics import structural_similarity

from repflow.costs import count_macs, count_params
from repflow.families.video.distortions import DISTORTIONS
from repflow.families.video.losses import bit_accuracy, frame_psnr, frame_psnr_summary
from repflow.families.video.models import Watermarker
from repflow.families.video.training import as_float_clips, random_messages
from repflow.media.video import h264_roundtrip
from repflow.progress import progress

__all__ = ["evaluate_watermarker", "metric_names", "quantise", "clips_per_second", "watermark_costs", "scale_for_psnr",
           "mean_psnr"]


def metric_names(distortions: list[str], crfs: list[int]) -> list[str]:
    """Every metric :func:`evaluate_watermarker` reports for these distortions and CRFs."""
    return (["psnr", "ssim", "frame_psnr_std", "frame_psnr_min", "robust_bit_accuracy"]
            + [f"bit_accuracy/{d}" for d in distortions] + [f"bit_accuracy/h264_crf{c}" for c in crfs])


def quantise(clip: torch.Tensor) -> torch.Tensor:
    """A float clip as it would be saved: clamped to [0, 1] and rounded to 1/255 steps (float)."""
    return clip.clamp(0, 1).mul(255).round().div(255)


def _to_uint8_frames(clip: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) float in [0, 1] → uint8 (T, H, W, 3)."""
    return clip.permute(1, 2, 3, 0).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


def _ssim(marked: torch.Tensor, clean: torch.Tensor) -> float:
    values = [structural_similarity(a, b, channel_axis=-1, data_range=255)
              for m, c in zip(marked, clean) for a, b in zip(_to_uint8_frames(m), _to_uint8_frames(c))]
    return float(np.mean(values))


def mean_psnr(marked: torch.Tensor, clips: torch.Tensor) -> float:
    """Mean over clips of each (3, T, H, W) clip's PSNR in dB (range 1; MSE floored at 1e-10)."""
    mse = (marked - clips).square().mean(dim=(1, 2, 3, 4)).clamp_min(1e-10)
    return (10 * torch.log10(1 / mse)).mean().item()


def scale_for_psnr(clips: torch.Tensor, residual: torch.Tensor, target: float, *, tolerance: float = 0.01) -> float:
    """The factor a with ``mean_psnr(quantise(clips + a·residual), clips)`` = ``target`` dB (within
    ``tolerance``), found by bisection on log a (PSNR falls as a grows; 8-bit rounding makes it a staircase,
    so the result is the nearest step). Float (N, 3, T, H, W) clips in [0, 1] and their residuals."""
    def psnr(a: float) -> float:
        return mean_psnr(quantise(clips + a * residual), clips)

    low, high = -12.0, 6.0  # log2 a: from a residual 4096× weaker to 64× louder
    for _ in range(40):
        mid = (low + high) / 2
        value = psnr(2 ** mid)
        if abs(value - target) <= tolerance:
            break
        low, high = (mid, high) if value > target else (low, mid)
    return float(2 ** mid)


@torch.no_grad()
def evaluate_watermarker(model: Watermarker, clips: torch.Tensor, *, distortions: list[str], crfs: list[int],
                         seed: int, batch_size: int = 16,
                         target_psnr: float | None = None) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """(metrics, tensors) of ``model`` on uint8 (N, T, H, W, 3) ``clips``.

    metrics: the names of :func:`metric_names`; ``robust_bit_accuracy`` is the mean over every distortion
    and CRF; with ``target_psnr`` (dB), ``residual_scale`` is the factor that reaches it (module docstring).
    tensors: ``marked`` (the saved-form watermarked clips, float (N, 3, T, H, W)), ``messages`` (N, L) and
    ``frame_psnr`` (N, T) dB, for the report's pictures."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    data = as_float_clips(clips)
    messages = random_messages(len(data), model.L, generator)
    embedded = torch.cat([model.embed(data[i:i + batch_size], messages[i:i + batch_size])
                          for i in range(0, len(data), batch_size)])
    scale = None if target_psnr is None else scale_for_psnr(data, embedded - data, target_psnr)
    marked = quantise(embedded if scale is None else data + scale * (embedded - data))
    summary = frame_psnr_summary(marked, data)
    metrics = {"psnr": mean_psnr(marked, data), "ssim": _ssim(marked, data),
               "frame_psnr_std": summary["std"], "frame_psnr_min": summary["min"]}
    if scale is not None:
        metrics["residual_scale"] = scale

    def accuracy(distorted: torch.Tensor) -> float:
        logits = torch.cat([model.extract(distorted[i:i + batch_size]) for i in range(0, len(distorted), batch_size)])
        return bit_accuracy(logits, messages)

    for name in progress(distortions, desc="video.evaluate: distortions", unit="distortion"):
        distortion = DISTORTIONS[name]()
        metrics[f"bit_accuracy/{name}"] = accuracy(distortion(marked, generator))
    for crf in crfs:
        compressed = torch.stack([as_float_clips(torch.from_numpy(h264_roundtrip(_to_uint8_frames(c), crf))[None])[0]
                                  for c in progress(marked, desc=f"video.evaluate: H.264 crf {crf}", unit="clip")])
        metrics[f"bit_accuracy/h264_crf{crf}"] = accuracy(compressed)
    robust = [v for k, v in metrics.items() if k.startswith("bit_accuracy/")]
    metrics["robust_bit_accuracy"] = float(np.mean(robust))
    return metrics, {"marked": marked, "messages": messages, "frame_psnr": frame_psnr(marked, data)}


@torch.no_grad()
def clips_per_second(model: Watermarker, shape: tuple[int, int, int, int, int], repeats: int = 3) -> float:
    """Embed + extract throughput on random clips of ``shape`` (N, 3, T, H, W): best of ``repeats`` passes."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    clip, msg = torch.rand(shape, generator=g), random_messages(shape[0], model.L, g)
    model.extract(model.embed(clip, msg))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.extract(model.embed(clip, msg))
        best = min(best, time.perf_counter() - start)
    return shape[0] / best


def watermark_costs(model: Watermarker, frames: int, size: int) -> dict[str, float]:
    """Parameters and MACs per clip (embed, extract) of one (1, 3, T, size, size) clip."""
    model.eval()
    clip, msg = torch.zeros(1, 3, frames, size, size), torch.zeros(1, model.L)
    return {"params": count_params(model), "macs_embed": count_macs(model.embed, clip, msg),
            "macs_extract": count_macs(model.extract, clip)}
