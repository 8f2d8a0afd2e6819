"""Pictures and tables a person looks at after a run (matplotlib, Agg backend, PNG files)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["class_grid", "line_plot", "markdown_table"]


def class_grid(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], path: Path,
               per_class: int = 8, title: str = "") -> Path:
    """Save a grid with one row per class of uint8 (N,C,H,W) images."""
    rows = len(classes)
    fig, axes = plt.subplots(rows, per_class, figsize=(per_class * 0.9, rows * 0.95), squeeze=False)
    for r in range(rows):
        idx = torch.nonzero(labels == r).flatten()[:per_class]
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(idx):
                img = images[idx[c]].permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                          vmin=0, vmax=255)
            if c == 0:
                ax.set_ylabel(classes[r], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def line_plot(x: Sequence[float], ys: dict[str, Sequence[float]], path: Path, *, xlabel: str, ylabel: str,
              title: str = "", xscale: str = "linear") -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, y in ys.items():
        ax.plot(x, y, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xscale(xscale)
    ax.grid(alpha=0.3)
    if len(ys) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def markdown_table(rows: list[dict], floatfmt: str = "{:.4f}") -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    fmt = lambda v: floatfmt.format(v) if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
