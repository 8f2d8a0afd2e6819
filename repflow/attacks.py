"""Adversarial attacks on classifiers that take inputs in [0, 1].

Contract (as in torchattacks): ``attack = PGD(model, eps=..., ...)``; ``x_adv = attack(x, y)``.
The model is put in eval mode for the attack and its previous mode is restored afterwards.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from repflow.progress import progress

__all__ = ["PGD", "accuracy", "robust_accuracy"]


class PGD:
    """Projected gradient descent in the l-infinity ball (Madry et al. 2018).

    x_{t+1} = Proj_{B(x, eps) ∩ [0,1]}( x_t + alpha * sign(∇_x CE(f(x_t), y)) ), from a uniform
    random start in the ball when ``random_start``. ``seed`` makes the start reproducible.
    """

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 random_start: bool = True, seed: int = 0):
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.model, self.eps, self.steps = model, float(eps), int(steps)
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / self.steps
        self.random_start = random_start
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            return self._attack(x.detach(), y)
        finally:
            self.model.train(was_training)

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.clone()
        if self.random_start:
            noise = (torch.rand(x.shape, generator=self.generator) * 2 - 1) * self.eps
            x_adv = (x_adv + noise.to(x.device)).clamp(0, 1)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(self.model(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = x_adv + self.alpha * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0, 1)
        return x_adv.detach()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
             device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on float ``x`` in [0,1] (N,C,H,W) with labels ``y``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        correct += (model(xb).argmax(1) == yb).sum().item()
    model.train(was_training)
    return correct / max(len(x), 1)


def robust_accuracy(model: nn.Module, attack: PGD, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
                    device: torch.device | str = "cpu", desc: str = "attack") -> float:
    """Accuracy on adversarial examples made by ``attack`` batch by batch."""
    correct = 0
    for i in progress(range(0, len(x), batch_size), desc=desc, unit="batch"):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        x_adv = attack(xb, yb)
        with torch.no_grad():
            model.eval()
            correct += (model(x_adv).argmax(1) == yb).sum().item()
    return correct / max(len(x), 1)
