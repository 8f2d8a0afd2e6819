"""What a person looks at after an audio run: log-mel patches as images, side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

__all__ = ["logmel_rows"]


def logmel_rows(rows: Sequence[tuple[str, Sequence[tuple[str, torch.Tensor]]]], path: Path, *, title: str = "",
                frame_ms: float = 10.0) -> Path:
    """One row per clip, one panel per (caption, log-mel (1, F, T) or (F, T)) in it: frequency (mel bin) up,
    time right. All panels of a row share one colour scale, so a shifted or reordered copy reads as such."""
    cols = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.4 * cols, 1.9 * len(rows)), squeeze=False)
    for r, (label, panels) in enumerate(rows):
        lo = min(float(p.min()) for _, p in panels)
        hi = max(float(p.max()) for _, p in panels)
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(panels):
                ax.axis("off")
                continue
            caption, patch = panels[c]
            patch = patch.detach().cpu().reshape(patch.shape[-2], patch.shape[-1])
            ax.imshow(patch.numpy(), origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                      extent=(0, patch.shape[1] * frame_ms / 1000, 0, patch.shape[0]))
            ax.set_title(caption, fontsize=8)
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_ylabel(f"{label}\nmel bin", fontsize=7)
            if r == len(rows) - 1:
                ax.set_xlabel("s", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
