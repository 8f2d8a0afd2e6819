"""Plain supervised training of a classifier on in-memory uint8 images (used to build judges and zoos),
optionally adversarial (PGD training, Madry et al. 2018) for the zoo's defence model."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repflow.attacks import make_attack
from repflow.progress import progress

__all__ = ["train_classifier"]


def train_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
                     batch_size: int, seed: int, device: torch.device | str = "cpu",
                     augment_shift: int = 2, adversarial: dict | None = None) -> list[dict[str, float]]:
    """Adam + cross-entropy on uint8 (N,C,H,W) ``images``, with a random ±``augment_shift`` pixel shift.

    ``adversarial``: PGD params (``eps`` in [0, 1] pixel units, and optionally ``steps``, ``alpha``,
    ``norm``, ``random_start``, see :class:`repflow.attacks.PGD`); every batch is then replaced by its
    PGD adversarial examples, made with the model in eval mode. Loss and accuracy are then on those.

    Returns per-epoch loss and training accuracy. Batches and shifts come from a generator seeded by
    ``seed``, so the result is reproducible on CPU.
    """
    g = torch.Generator().manual_seed(seed)
    model.to(device).train()
    adversary = make_attack("pgd", model, **{"seed": seed, **adversarial}) if adversarial is not None else None
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
            if adversary is not None:
                x = adversary(x, y)
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
