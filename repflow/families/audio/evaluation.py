"""Linear evaluation of a frozen audio encoder: one softmax probe per label task on standardised embeddings,
folded back so it applies to raw embeddings. Shared by the evaluate stage and the benchmark."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from repflow.probe import fit_linear_probe

__all__ = ["ProbeResult", "fit_probes"]


@dataclass
class ProbeResult:
    """A task's probe (on raw embeddings), its test accuracy, and the majority-class accuracy (the floor)."""

    probe: nn.Linear
    accuracy: float
    majority: float


def _folded(probe: nn.Linear, mean: torch.Tensor, std: torch.Tensor) -> nn.Linear:
    """W(x − μ)/σ + b = (W/σ)x + (b − (W/σ)μ): the same probe, applied to raw embeddings."""
    folded = nn.Linear(probe.in_features, probe.out_features)
    with torch.no_grad():
        folded.weight.copy_(probe.weight / std)
        folded.bias.copy_(probe.bias - folded.weight @ mean)
    return folded


def fit_probes(f_train: torch.Tensor, y_train: dict[str, torch.Tensor], f_test: torch.Tensor,
               y_test: dict[str, torch.Tensor], num_classes: dict[str, int], *, epochs: int, lr: float,
               batch_size: int, seed: int) -> dict[str, ProbeResult]:
    """Fit one probe per task on train embeddings (N, d), standardised with the train mean and std (a
    probe's learning rate then means the same for every encoder), and score it on the test embeddings."""
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    results = {}
    for task, labels in y_train.items():
        probe = fit_linear_probe((f_train - mean) / std, labels, num_classes[task], epochs=epochs, lr=lr,
                                 batch_size=batch_size, seed=seed)
        probe = _folded(probe, mean, std)
        with torch.no_grad():
            acc = float((probe(f_test).argmax(1) == y_test[task]).float().mean())
        majority = float(torch.bincount(y_test[task], minlength=num_classes[task]).max()) / max(len(y_test[task]), 1)
        results[task] = ProbeResult(probe, acc, majority)
    return results
