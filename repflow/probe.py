"""Linear evaluation of a frozen encoder: features, then a softmax-regression probe."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from repflow.progress import progress

__all__ = ["embed", "fit_linear_probe", "fit_adversarial_linear_probe"]


@torch.no_grad()
def embed(encoder: nn.Module, images: torch.Tensor, *, batch_size: int = 512,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Features of uint8 (N,C,H,W) images from ``encoder`` in eval mode, returned on CPU (N, out_dim)."""
    was_training = encoder.training
    encoder.eval()
    feats = [encoder(images[i:i + batch_size].to(device).float().div_(255)).cpu()
             for i in range(0, len(images), batch_size)]
    encoder.train(was_training)
    return torch.cat(feats) if feats else torch.empty(0)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, epochs: int, lr: float,
                     batch_size: int, seed: int, weight_decay: float = 0.0) -> nn.Linear:
    """Train a linear classifier with Adam + cross-entropy on fixed features (standard linear evaluation)."""
    g = torch.Generator().manual_seed(seed)
    probe = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        w = torch.randn(probe.weight.shape, generator=g) * (1.0 / features.shape[1] ** 0.5)
        probe.weight.copy_(w)
        probe.bias.zero_()
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=g)
        for i in range(0, len(features), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(probe(features[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return probe


def fit_adversarial_linear_probe(encoder: nn.Module, probe: nn.Linear, images: torch.Tensor, labels: torch.Tensor, *,
                                 epochs: int, lr: float, batch_size: int, eps: float, steps: int, seed: int,
                                 device: torch.device | str = "cpu") -> nn.Linear:
    """Adversarial linear finetuning (ALF): train ``probe`` (a copy is returned) on PGD examples of the
    frozen ``encoder`` + probe, min_W E[max_{‖δ‖∞≤eps} CE(W f(x + δ), y)], for uint8 ``images``.

    Starts from the given probe (the SLF one), so a few epochs suffice at this scale; the attack
    (step 2.5·eps/steps, random start) is re-run against the current probe for every batch.
    """
    from repflow.models import ProbedEncoder
    from repflow.attacks import PGD

    probe = copy.deepcopy(probe).to(device)
    model = ProbedEncoder(encoder.to(device).eval(), probe)
    frozen = [p.requires_grad for p in encoder.parameters()]
    for p in encoder.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=g)
            for i in progress(range(0, len(images), batch_size), desc=f"ALF epoch {epoch + 1}/{epochs}", unit="batch"):
                idx = order[i:i + batch_size]
                x = images[idx].to(device).float().div_(255)
                y = labels[idx].to(device)
                attack = PGD(model, eps=eps, steps=steps, seed=seed * 100_003 + epoch * 10_007 + i)
                x_adv = attack(x, y)
                with torch.no_grad():
                    feats = encoder(x_adv)
                loss = F.cross_entropy(probe(feats), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        for p, f in zip(encoder.parameters(), frozen):
            p.requires_grad_(f)
    return probe.cpu()
