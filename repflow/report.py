"""Pictures and tables a person looks at after a run (matplotlib, Agg backend, PNG files)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["bar_plot", "class_grid", "coreset_plot", "heatmap", "line_plot", "markdown_table", "panel_plot"]


def _finish(fig, path: Path, *, dpi: int, title: str = "", suptitle: bool = False, ax=None,
            title_size: float | None = None) -> Path:
    """Title (figure-wide or on ``ax``), tight layout, save as PNG, close: how every figure here ends."""
    if title:
        if suptitle:
            fig.suptitle(title)
        else:
            ax.set_title(title, fontsize=title_size)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


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
    return _finish(fig, path, dpi=80, title=title, suptitle=True)


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
    return _finish(fig, path, dpi=100, title=title, ax=ax)


def panel_plot(x: Sequence[float], panels: Sequence[tuple[str, dict[str, Sequence[float]], dict[str, float]]],
               path: Path, *, xlabel: str, title: str = "", xscale: str = "linear",
               errors: dict[str, Sequence[float]] | None = None) -> Path:
    """Side-by-side panels over one x axis, each ``(ylabel, curves, references)``: curves drawn with markers
    (± ``errors`` bars where a curve's name has them), references as dashed horizontal lines."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (ylabel, curves, references) in zip(axes[0], panels):
        for name, y in curves.items():
            ax.errorbar(x, y, yerr=(errors or {}).get(name), marker="o", capsize=3, label=name)
        for i, (name, level) in enumerate(references.items()):
            ax.axhline(level, linestyle="--", color=f"C{len(curves) + i}", label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xscale(xscale)
        ax.set_xticks(list(x), [f"{v:g}" for v in x])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _finish(fig, path, dpi=100, title=title, suptitle=True)


def markdown_table(rows: list[dict], floatfmt: str = "{:.4f}") -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    fmt = lambda v: floatfmt.format(v) if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def coreset_plot(labels: torch.Tensor, selected: torch.Tensor, features: torch.Tensor, classes: Sequence[str],
                 path: Path, title: str = "") -> Path:
    """Two panels: each class's share of all images vs of the coreset, and a 2-D PCA projection of
    ``features`` (N, d) with selected (N,) bool images highlighted."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    k = len(classes)
    share_all = torch.bincount(labels, minlength=k).float() / max(len(labels), 1)
    share_sel = torch.bincount(labels[selected], minlength=k).float() / max(int(selected.sum()), 1)
    pos = np.arange(k)
    ax1.bar(pos - 0.2, share_all.numpy(), 0.4, label="all images")
    ax1.bar(pos + 0.2, share_sel.numpy(), 0.4, label=f"coreset ({int(selected.sum())})")
    ax1.set_xticks(pos, [str(c) for c in classes], rotation=45, ha="right", fontsize=8)
    ax1.set_ylabel("share of images")
    ax1.set_title("class balance")
    ax1.legend()
    centred = features.float() - features.float().mean(0)
    _, _, v = torch.pca_lowrank(centred, q=2, center=False)
    xy = (centred @ v[:, :2]).numpy()
    sel = selected.numpy()
    ax2.scatter(xy[~sel, 0], xy[~sel, 1], s=3, c="lightgray", label="not selected")
    ax2.scatter(xy[sel, 0], xy[sel, 1], s=4, c="tab:red", label="selected")
    ax2.set_title("encoder features, PCA")
    ax2.set_xticks([]), ax2.set_yticks([])
    ax2.legend(markerscale=3)
    return _finish(fig, path, dpi=90, title=title, suptitle=True)


def bar_plot(groups: Sequence[str], series: dict[str, Sequence[float]], path: Path, *, ylabel: str,
             errors: dict[str, Sequence[float]] | None = None, title: str = "") -> Path:
    """Grouped bars: one group per entry of ``groups``, one bar per ``series`` name in each, with
    optional ± ``errors`` (same keys and lengths) drawn as error bars."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) + 2), 3.8))
    pos = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(pos + offset, values, width, yerr=(errors or {}).get(name), capsize=3, label=name)
    ax.set_xticks(pos, list(groups), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _finish(fig, path, dpi=100, title=title, ax=ax)


def heatmap(values: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], path: Path, *,
            title: str = "", vmin: float = 0.0, vmax: float = 1.0) -> Path:
    """A rows × cols grid of values in [vmin, vmax], each cell annotated with its value."""
    data = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(cols), 1.0 + 0.45 * len(rows)))
    im = ax.imshow(data, vmin=vmin, vmax=vmax, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=8)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if data[i, j] < (vmin + vmax) / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _finish(fig, path, dpi=100, title=title, ax=ax, title_size=9)
