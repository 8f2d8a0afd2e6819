"""ACL and DynACL: adversarial contrastive learning (modules and tensors in, losses out).

ACL (Jiang et al. 2020, the "dual stream" variant RCS builds on): for two augmented views (v1, v2) of
a batch, find adversarial views by PGD that *maximise* the NT-Xent loss of the pair, then train on

    L_ACL = ½ · [ NT-Xent(g∘f(v1), g∘f(v2)) + NT-Xent(g∘f(v1 + δ1), g∘f(v2 + δ2)) ],  ‖δ‖∞ ≤ ε

with the encoder's ``clean`` batch-norm branch for natural views and its ``adv`` branch for the
adversarial ones (models.DualBatchNorm).

DynACL (Luo et al. 2023) anneals the augmentation strength from strong to weak in steps of K epochs,
``strength(e) = 1 − ⌊(e − 1)/K⌋ · K / E`` (e = 1..E), and re-weights the two terms,
``L = ((1 − w) · L_clean + (1 + w) · L_adv) / 2`` with ``w = λ · (1 − strength)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from repflow.data_parallel import gather_with_grad
from repflow.families.image.models.encoders import bn_branch
from repflow.families.image.contrastive import TRAIN_METHODS, TrainMethod, nt_xent_loss

__all__ = ["ACL", "pgd_contrastive", "acl_loss", "dynacl_strength", "dynacl_weight", "dynacl_augment"]


def pgd_contrastive(encoder: nn.Module, head: nn.Module, v1: torch.Tensor, v2: torch.Tensor, *, eps: float,
                    alpha: float, steps: int, temperature: float, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """ACL's inner maximisation: PGD in the ℓ∞ ball of radius ``eps`` (pixels in [0, 1]) on the NT-Xent
    loss of the pair, from a uniform random start, through the ``adv`` batch-norm branch.

    As in the official ACL code, the views are crafted with the modules in eval mode: batch norm normalises
    with the ``adv`` branch's running statistics instead of each perturbed batch's own, and no PGD iterate
    updates those statistics (the branch the saved encoder answers with). The caller's modes are restored;
    the training loss that follows runs in train mode. Parameter gradients are not touched. Data parallel
    (:mod:`repflow.data_parallel`): ``v1``, ``v2`` are this rank's slice, the attacked loss is the global
    batch's (projections gathered), each rank draws its own random start. Returns
    detached (N, C, H, W) views in [0, 1].
    """
    x = torch.cat([v1, v2]).detach()
    noise = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device) * eps
    x_adv = (x + noise).clamp(0, 1)
    n = v1.shape[0]
    modes = [(m, m.training) for m in (encoder, head)]
    encoder.eval()
    head.eval()
    try:
        with bn_branch("adv", encoder, head):
            for _ in range(steps):
                x_adv.requires_grad_(True)
                z = head(encoder(x_adv))
                loss = nt_xent_loss(gather_with_grad(z[:n]), gather_with_grad(z[n:]), temperature)
                (grad,) = torch.autograd.grad(loss, x_adv)
                with torch.no_grad():
                    x_adv = x_adv + alpha * grad.sign()
                    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    finally:
        for module, training in modes:
            module.train(training)
    x_adv = x_adv.detach()
    return x_adv[:n], x_adv[n:]


def acl_loss(encoder: nn.Module, head: nn.Module, v1: torch.Tensor, v2: torch.Tensor, adv1: torch.Tensor,
             adv2: torch.Tensor, *, temperature: float, adv_weight: float = 0.0) -> torch.Tensor:
    """``((1 − w) · NT-Xent(clean) + (1 + w) · NT-Xent(adv)) / 2``; ``w = 0`` is ACL's plain mean. Natural views
    go through the ``clean`` batch-norm branch and adversarial ones through ``adv``, whichever branch the encoder
    answers with outside training (``train.adversarial.inference_bn``)."""
    with bn_branch("clean", encoder, head):
        z1, z2 = gather_with_grad(head(encoder(v1))), gather_with_grad(head(encoder(v2)))
    with bn_branch("adv", encoder, head):
        a1, a2 = gather_with_grad(head(encoder(adv1))), gather_with_grad(head(encoder(adv2)))
    clean, adv = nt_xent_loss(z1, z2, temperature), nt_xent_loss(a1, a2, temperature)
    return ((1 - adv_weight) * clean + (1 + adv_weight) * adv) / 2


def dynacl_strength(epoch: int, epochs: int, period: int) -> float:
    """Augmentation strength in (0, 1] for 1-based ``epoch`` of ``epochs``, lowered every ``period`` epochs."""
    return 1.0 - math.floor((epoch - 1) / period) * period / epochs


def dynacl_weight(strength: float, reweight: float) -> float:
    """DynACL's ``w = λ · (1 − strength)``: the adversarial term gains weight as augmentation weakens."""
    return reweight * (1.0 - strength)


def dynacl_augment(augment: dict[str, Any], strength: float) -> dict[str, Any]:
    """Scale the view augmentation towards the identity: crops approach the full image and the
    photometric jitter and noise shrink in proportion to ``strength``; flips stay."""
    out = dict(augment)
    out["crop_scale_min"] = 1.0 - (1.0 - augment["crop_scale_min"]) * strength
    for key in ("brightness", "contrast", "noise_std"):
        out[key] = augment[key] * strength
    return out


class ACL:
    """The adversary :func:`repflow.families.image.contrastive.train_contrastive` calls each batch: ACL, or DynACL when
    ``anneal_period`` is set. ``epochs`` is the length of the whole run (DynACL's E)."""

    def __init__(self, *, eps: float, alpha: float, steps: int, epochs: int, anneal_period: int | None = None,
                 reweight: float = 2 / 3):
        if eps <= 0 or alpha <= 0 or steps < 1:
            raise ValueError(f"ACL needs eps > 0, alpha > 0, steps >= 1; got eps={eps}, alpha={alpha}, steps={steps}")
        self.eps, self.alpha, self.steps, self.epochs = eps, alpha, steps, epochs
        self.anneal_period, self.reweight = anneal_period, reweight

    def strength(self, epoch: int) -> float:
        return 1.0 if self.anneal_period is None else dynacl_strength(epoch, self.epochs, self.anneal_period)

    def augment(self, base: dict[str, Any], epoch: int) -> dict[str, Any]:
        """View augmentation for 1-based ``epoch``."""
        return base if self.anneal_period is None else dynacl_augment(base, self.strength(epoch))

    def loss(self, encoder: nn.Module, head: nn.Module, v1: torch.Tensor, v2: torch.Tensor, *, temperature: float,
             epoch: int, generator: torch.Generator) -> torch.Tensor:
        adv1, adv2 = pgd_contrastive(encoder, head, v1, v2, eps=self.eps, alpha=self.alpha, steps=self.steps,
                                     temperature=temperature, generator=generator)
        w = 0.0 if self.anneal_period is None else dynacl_weight(self.strength(epoch), self.reweight)
        return acl_loss(encoder, head, v1, v2, adv1, adv2, temperature=temperature, adv_weight=w)


def _acl(adversarial: Any, epochs: int) -> ACL:
    """``train.method: acl``: ACL's fixed augmentation strength (no annealing)."""
    a = adversarial
    return ACL(eps=a.eps, alpha=a.alpha, steps=a.steps, epochs=epochs, anneal_period=None, reweight=a.reweight)


def _dynacl(adversarial: Any, epochs: int) -> ACL:
    """``train.method: dynacl``: strength annealed every ``anneal_period`` epochs, adversarial term re-weighted."""
    a = adversarial
    return ACL(eps=a.eps, alpha=a.alpha, steps=a.steps, epochs=epochs, anneal_period=a.anneal_period,
               reweight=a.reweight)


TRAIN_METHODS.register("acl", TrainMethod(
    paradigm="contrastive", losses=("ntxent",), adversary=_acl,
    paper="Jiang et al. 2020, 'Robust Pre-Training by Adversarial Contrastive Learning' (NeurIPS)",
    summary="adversarial contrastive learning (still a contrastive objective): NT-Xent on clean and PGD views, "
            "dual batch norm"))
TRAIN_METHODS.register("dynacl", TrainMethod(
    paradigm="contrastive", losses=("ntxent",), adversary=_dynacl,
    paper="Luo et al. 2023, 'Rethinking the Effect of Data Augmentation in Adversarial Contrastive Learning' (ICLR)",
    summary="ACL with augmentation strength annealed every K epochs and the adversarial term re-weighted "
            "(still a contrastive objective)"))
