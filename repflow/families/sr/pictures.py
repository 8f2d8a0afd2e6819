"""Before / after crops a person can judge: LR (nearest-neighbour upscaled, so its pixels show), bicubic, the
model, and the HR original, all of one region."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

__all__ = ["comparison_crops"]


def _busiest_window(hr: torch.Tensor, size: int) -> tuple[int, int]:
    """Top-left (y, x) of the ``size``-px window with the most detail (largest local variance of grey)."""
    grey = hr.float().mean(0, keepdim=True)[None]
    mean = F.avg_pool2d(grey, size, stride=max(size // 4, 1))
    var = F.avg_pool2d(grey.square(), size, stride=max(size // 4, 1)) - mean.square()
    idx = int(var.flatten().argmax())
    step = max(size // 4, 1)
    return (idx // var.shape[-1]) * step, (idx % var.shape[-1]) * step


def comparison_crops(lr: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, scale: int,
                     path: Path, *, crop: int = 96, title: str = "") -> Path:
    """Save the four crops of one photo side by side. ``lr`` uint8 (3, h, w); ``bicubic``, ``sr`` float
    (3, H, W) in [0, 1]; ``hr`` uint8 (3, H, W). The crop is the most detailed ``crop``-px HR window."""
    crop = min(crop, hr.shape[1], hr.shape[2]) // scale * scale
    y, x = _busiest_window(hr, crop)
    y, x = y // scale * scale, x // scale * scale
    nearest = lr.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    panels = [("LR (nearest)", nearest.float() / 255), ("bicubic", bicubic), ("model", sr), ("HR", hr.float() / 255)]
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    for ax, (name, img) in zip(axes, panels):
        ax.imshow(img[:, y:y + crop, x:x + crop].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
