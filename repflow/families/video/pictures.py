"""The video family's report pictures: original, watermarked and amplified residual frames of a clip, and the
per-frame PSNR of the held-out clips."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

__all__ = ["watermark_strip", "frame_psnr_plot"]

RESIDUAL_GAIN = 10.0
"""The residual row shows 0.5 + 10·(watermarked − original), so a ±5 % change spans the grey scale."""


def watermark_strip(clip: torch.Tensor, marked: torch.Tensor, path: Path, *, title: str, max_frames: int = 8) -> Path:
    """Three rows for one (3, T, H, W) clip in [0, 1]: original, watermarked, amplified residual."""
    t = min(clip.shape[1], max_frames)
    rows = {"original": clip, "watermarked": marked, f"residual ×{RESIDUAL_GAIN:g}":
            (0.5 + RESIDUAL_GAIN * (marked - clip)).clamp(0, 1)}
    fig, axes = plt.subplots(3, t, figsize=(t * 1.1, 3.5), squeeze=False)
    for r, (label, frames) in enumerate(rows.items()):
        for c in range(t):
            ax = axes[r, c]
            ax.imshow(frames[:, c].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def frame_psnr_plot(frame_psnr: torch.Tensor, path: Path, *, title: str) -> Path:
    """Per-frame PSNR (dB) of each held-out clip (N, T): one thin line per clip, the mean in bold."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    t = torch.arange(1, frame_psnr.shape[1] + 1)
    for row in frame_psnr[:64]:
        ax.plot(t, row, color="tab:blue", alpha=0.15, linewidth=0.8)
    ax.plot(t, frame_psnr.mean(0), color="black", linewidth=2, label="mean over clips")
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
