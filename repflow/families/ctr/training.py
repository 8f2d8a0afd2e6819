"""Training and scoring the CTR models.

Loss: binary cross-entropy on the click logits; for adversarial models also D1's cross-entropy (it sees
detached features, so it only trains D1) plus ``adv_weight`` × D2's ω-weighted cross-entropy, which D2
minimises and, through the gradient reversal, the invariant encoder maximises. The reversal's factor ramps
0 → 1 over training with DANN's schedule 2 / (1 + e^(−10 p)) − 1 (p = fraction of steps done), so the
encoder is not pushed around by a discriminator that has not learned anything yet. Adam; every epoch's order
comes from ``seed`` and the epoch number alone, so a run resumed at epoch k continues as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from repflow.families.ctr.features import CtrTensors
from repflow.families.ctr.models import CtrModel, CtrOutput
from repflow.progress import progress

__all__ = ["ctr_losses", "grl_schedule", "train_ctr", "predict", "predict_with_attention"]


def grl_schedule(fraction_done: float) -> float:
    """DANN's ramp of the gradient reversal factor: 0 at the start, → 1 (0.76 at 20 %, 0.99 at 50 %)."""
    return 2.0 / (1.0 + math.exp(-10.0 * fraction_done)) - 1.0


def ctr_losses(out: CtrOutput, label: torch.Tensor, *, adv_weight: float = 0.1) -> dict[str, torch.Tensor]:
    """``{"loss": total, "bce": ...}`` plus ``"d1"`` / ``"d2"`` (discriminator cross-entropies, nats) for
    adversarial outputs. D2's per-feature cross-entropy is weighted by ω and normalised by Σ ω."""
    bce = F.binary_cross_entropy_with_logits(out.logits, label)
    losses = {"bce": bce}
    total = bce
    if out.d2_logits is not None:
        n, m, _ = out.d2_logits.shape
        modality = torch.arange(m, device=label.device).expand(n, m).reshape(-1)
        ce2 = F.cross_entropy(out.d2_logits.reshape(n * m, m), modality, reduction="none").reshape(n, m)
        losses["d2"] = (out.omega * ce2).sum() / out.omega.sum().clamp(min=1e-6)
        total = total + adv_weight * losses["d2"]
        if out.d1_logits is not None:
            losses["d1"] = F.cross_entropy(out.d1_logits.reshape(n * m, m), modality)
            total = total + losses["d1"]
    losses["loss"] = total
    return losses


def train_ctr(model: CtrModel, data: CtrTensors, *, epochs: int, batch_size: int = 256, lr: float = 1e-3,
              seed: int = 0, adv_weight: float = 0.1, weight_decay: float = 0.0, start_epoch: int = 0,
              optimizer_state: dict | None = None,
              on_epoch: Callable[[int, dict[str, float], torch.optim.Optimizer], bool | None] | None = None
              ) -> list[dict[str, Any]]:
    """Train on ``data`` from ``start_epoch``; returns one dict per epoch trained: ``epoch`` (1-based), mean
    ``loss`` / ``bce`` (and ``d1`` / ``d2`` for adversarial models) over its steps, ``grl_scale`` at its end,
    ``samples_per_s`` (training throughput, wall clock). ``on_epoch`` returning True stops training there
    (early stopping; the reversal's ramp stays scheduled over ``epochs``)."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not lr > 0 or adv_weight < 0:
        raise ValueError(f"lr must be > 0 and adv_weight >= 0, got lr={lr!r}, adv_weight={adv_weight!r}")
    if len(data) == 0:
        raise ValueError("no training examples")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    n = len(data)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    adversarial = hasattr(model.items, "grl_scale")
    history = []
    for epoch in range(start_epoch, epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        sums: dict[str, float] = {}
        started = time.perf_counter()
        for step, i in enumerate(progress(range(0, n, batch_size), desc=f"CTR epoch {epoch + 1}/{epochs}",
                                          unit="batch", total=steps_per_epoch)):
            if adversarial:
                model.items.grl_scale = grl_schedule((epoch * steps_per_epoch + step) / total_steps)
            batch = data.subset(order[i:i + batch_size])
            out = model(batch.user, batch.item, batch.history, batch.click_rate)
            losses = ctr_losses(out, batch.label, adv_weight=adv_weight)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
        elapsed = time.perf_counter() - started
        stats = {"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items()},
                 "samples_per_s": n / max(elapsed, 1e-9)}
        if adversarial:
            stats["grl_scale"] = model.items.grl_scale
        history.append(stats)
        if on_epoch is not None and on_epoch(epoch + 1, stats, opt):
            break
    model.eval()
    return history


@torch.no_grad()
def predict_with_attention(model: CtrModel, data: CtrTensors, batch_size: int = 4096
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Click probabilities (N,) and the target items' modality attention (N, M), None for models without it.
    The model is left in eval mode."""
    model.eval()
    probs, attention = [], []
    for i in range(0, len(data), batch_size):
        batch = data.subset(slice(i, i + batch_size))
        out = model(batch.user, batch.item, batch.history, batch.click_rate)
        probs.append(torch.sigmoid(out.logits))
        if out.modality_attention is not None:
            attention.append(out.modality_attention)
    if not probs:
        return torch.zeros(0), None
    return torch.cat(probs), (torch.cat(attention) if attention else None)


def predict(model: CtrModel, data: CtrTensors, batch_size: int = 4096) -> torch.Tensor:
    """Click probabilities (N,) in [0, 1]."""
    return predict_with_attention(model, data, batch_size)[0]
