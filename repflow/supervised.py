"""Plain supervised training of a classifier on in-memory uint8 images (used to build judges and zoos)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repflow.progress import progress

__all__ = ["train_classifier"]


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
                     batch_size: int, seed: int, device: torch.device | str = "cpu",
                     augment_shift: int = 2) -> list[dict[str, float]]:
    """Adam + cross-entropy on uint8 (N,C,H,W) ``images``, with a random ±``augment_shift`` pixel shift.

    Returns per-epoch loss and training accuracy. Batches and shifts come from a generator seeded by
    ``seed``, so the result is reproducible on CPU.
    """
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=g)
        total, correct = 0.0, 0
        for start in progress(range(0, len(images), batch_size), desc=f"classifier epoch {epoch + 1}/{epochs}",
                              unit="batch"):
            idx = order[start:start + batch_size]
            x = images[idx].to(device).float().div_(255)
            if augment_shift:
                dx, dy = (torch.randint(-augment_shift, augment_shift + 1, (2,), generator=g)).tolist()
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            y = labels[idx].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        history.append({"epoch": epoch + 1, "loss": total / len(images), "train_acc": correct / len(images)})
    model.eval()
    return history
