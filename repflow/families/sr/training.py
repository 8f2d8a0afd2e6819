"""The super-resolution training loop: L1 between the model's output and the HR patch, Adam, the learning rate
halved every ``lr_half_every`` epochs, random flips and 90° rotations (EDSR's recipe; EDSR starts at 1e-4 for
300+ epochs on DIV2K, a CPU run of a few epochs starts higher). Every epoch draws its order and
augmentations from ``seed`` and the epoch number alone, so a run resumed at epoch k continues exactly as an
uninterrupted one would."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.families.sr.symmetry import dihedral
from repflow.progress import progress

__all__ = ["train_sr"]


def train_sr(model: nn.Module, lr_images: torch.Tensor, hr_images: torch.Tensor, *, epochs: int, batch_size: int,
             lr: float, lr_half_every: int, seed: int, device: torch.device | str = "cpu", start_epoch: int = 0,
             optimizer_state: dict | None = None,
             on_epoch: Callable[[int, dict[str, float], torch.optim.Optimizer], None] | None = None
             ) -> list[dict[str, Any]]:
    """Train on uint8 LR (N, 3, h, w) / HR (N, 3, s·h, s·w) square patch pairs from ``start_epoch``; returns
    one dict per epoch trained (``epoch`` 1-based, mean L1 ``loss`` in [0, 1] pixel units)."""
    if lr_images.shape[0] != hr_images.shape[0]:
        raise ValueError(f"{lr_images.shape[0]} LR patches but {hr_images.shape[0]} HR patches")
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    n, history = len(lr_images), []
    for epoch in range(start_epoch, epochs):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 ** (epoch // lr_half_every)
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g)
        codes = torch.randint(0, 8, (n,), generator=g)
        total, steps = 0.0, 0
        for i in progress(range(0, n, batch_size), desc=f"SR epoch {epoch + 1}/{epochs}", unit="batch"):
            idx = order[i:i + batch_size]
            x = dihedral(lr_images[idx].to(device).float().div_(255), codes[idx])
            y = dihedral(hr_images[idx].to(device).float().div_(255), codes[idx])
            loss = F.l1_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        stats = {"epoch": epoch + 1, "loss": total / max(steps, 1), "lr": opt.param_groups[0]["lr"]}
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch + 1, stats, opt)
    model.eval()
    return history
