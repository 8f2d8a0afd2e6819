"""RCS: robustness-aware coreset selection for adversarial contrastive learning (Xu et al., NeurIPS 2023).

The problem (paper eq. 4): pick the subset S, |S| ≤ k, whose ACL training minimises the
representational divergence on a small unlabeled validation set U,

    L_RD(U; θ) = Σ_{x∈U} KL( p(x) ‖ p(x̃) ),   x̃ = argmax_{‖x̃ − x‖∞ ≤ ε} KL( p(x) ‖ p(x̃) ),
    p(·) = softmax(g∘f(·))  (projection head g on encoder f).

With one gradient step standing in for training on S, the marginal gain of a candidate minibatch b is
approximately ⟨∇_θ L_RD(U; θ_S), ∇_θ L_ACL(b; θ_S)⟩ (first-order Taylor expansion): a batch whose
descent direction also lowers the divergence. As in the official code, gradients are taken with
respect to the projection head only (the "last-layer" approximation), candidates are minibatches,
and the greedy loop takes one SGD step on the head with the picked batch's gradient and recomputes
the validation gradient (re-attacking U) before the next pick. The head is restored afterwards.

Everything here is a function of modules and tensors; callers put the modules in eval mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.families.image.models.encoders import bn_branch
from repflow.families.image.acl import pgd_contrastive
from repflow.families.image.augment import random_views
from repflow.families.image.contrastive import nt_xent_loss
from repflow.progress import progress
from repflow.registry import Listed, Registry

__all__ = ["Coreset", "representational_divergence", "candidate_batches", "candidate_gradients",
           "validation_gradient", "select_coreset_rcs", "select_coreset_random", "select_all", "coreset_budget",
           "divergence_drops", "spearman", "SelectionMethod", "SELECTION_METHODS"]


@dataclass
class Coreset:
    """A selection over N images: ``indices`` (k,) sorted; for RCS also the candidate minibatches,
    the candidate ids in pick order and the gain ⟨g_b, g_val⟩ of each pick when it was made."""

    indices: torch.Tensor
    batches: list[torch.Tensor] | None = None
    picked: torch.Tensor | None = None
    gains: torch.Tensor | None = None


def coreset_budget(n: int, fraction: float) -> int:
    """k = round(fraction · n) images; an empty or one-image coreset is an error (no contrastive pair)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"coreset fraction {fraction} is outside (0, 1]")
    k = round(fraction * n)
    if k < 2:
        raise ValueError(f"coreset fraction {fraction} of {n} images selects {k} image(s); "
                         f"need at least 2 (one contrastive pair): raise the fraction")
    return k


def _rd_attack(encoder: nn.Module, head: nn.Module, x: torch.Tensor, *, eps: float, alpha: float, steps: int,
               generator: torch.Generator) -> torch.Tensor:
    """x̃ maximising KL(p(x) ‖ p(x̃)) by PGD from a small Gaussian start (as in TRADES: at x̃ = x the
    KL gradient is zero), natural inputs through the clean BN branch, x̃ through the adversarial one."""
    with torch.no_grad(), bn_branch("clean", encoder, head):
        log_p = F.log_softmax(head(encoder(x)), dim=1)
    x_adv = (x + 1e-3 * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)
    with bn_branch("adv", encoder, head):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(head(encoder(x_adv)), dim=1), log_p, log_target=True, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            with torch.no_grad():
                x_adv = x_adv + alpha * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def representational_divergence(encoder: nn.Module, head: nn.Module, x: torch.Tensor, *, eps: float, alpha: float,
                                steps: int, generator: torch.Generator, head_only: bool = False) -> torch.Tensor:
    """L_RD averaged over the images ``x`` (N, C, H, W) in [0, 1]: KL(p(x) ‖ p(x̃)) per image, in nats.

    Differentiable with respect to the head's parameters (and the encoder's unless ``head_only``,
    which computes the features without a graph: what selection needs, at a fraction of the cost).
    """
    x_adv = _rd_attack(encoder, head, x, eps=eps, alpha=alpha, steps=steps, generator=generator)
    with torch.set_grad_enabled(not head_only), bn_branch("clean", encoder, head):
        f_nat = encoder(x)
    with torch.set_grad_enabled(not head_only), bn_branch("adv", encoder, head):
        f_adv = encoder(x_adv)
    with bn_branch("clean", encoder, head):
        log_p = F.log_softmax(head(f_nat), dim=1)
    with bn_branch("adv", encoder, head):
        log_q = F.log_softmax(head(f_adv), dim=1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def _flat_grad(loss: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    """Gradient of ``loss`` w.r.t. ``params`` as one vector; parameters the loss does not use (the other
    batch-norm branch) contribute zeros."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def candidate_batches(n: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """A seeded random partition of range(n) into minibatches of ``batch_size`` (the last may be smaller)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(order.split(batch_size))


def candidate_gradients(encoder: nn.Module, head: nn.Module, images: torch.Tensor, batches: list[torch.Tensor],
                        ids: list[int], *, augment: dict[str, Any], temperature: float,
                        adversarial: dict[str, float] | None, seed: int, device: torch.device | str = "cpu",
                        desc: str = "RCS candidate gradients") -> torch.Tensor:
    """∇_head L_ACL(b) for each candidate minibatch (uint8 ``images[batches[i]]``), flattened: (len(ids), P).

    ``adversarial`` = {eps, alpha, steps} gives the ACL loss ½[NT-Xent(clean) + NT-Xent(adv)]; None the
    plain NT-Xent loss (SimCLR). Candidate ``ids[i]`` draws its views and attack start from a generator
    seeded by (seed, id), so the result does not depend on how candidates are split across workers.
    """
    params = list(head.parameters())
    rows = []
    for cid, idx in progress(list(zip(ids, batches)), desc=desc, unit="batch"):
        g = torch.Generator().manual_seed(seed * 1_000_003 + cid)
        x = images[idx].to(device).float().div_(255)
        v1, v2 = random_views(x, g, **augment), random_views(x, g, **augment)
        with torch.no_grad(), bn_branch("clean", encoder, head):
            f1, f2 = encoder(v1), encoder(v2)
        with bn_branch("clean", encoder, head):
            loss = nt_xent_loss(head(f1), head(f2), temperature)
        if adversarial is not None:
            a1, a2 = pgd_contrastive(encoder, head, v1, v2, temperature=temperature, generator=g, **adversarial)
            with torch.no_grad(), bn_branch("adv", encoder, head):
                fa1, fa2 = encoder(a1), encoder(a2)
            with bn_branch("adv", encoder, head):
                loss = (loss + nt_xent_loss(head(fa1), head(fa2), temperature)) / 2
        rows.append(_flat_grad(loss, params).cpu())
    return torch.stack(rows) if rows else torch.empty(0, sum(p.numel() for p in params))


def validation_gradient(encoder: nn.Module, head: nn.Module, val: torch.Tensor, *, rd: dict[str, float],
                        seed: int) -> tuple[torch.Tensor, float]:
    """(∇_head L_RD(U), L_RD(U)) for float validation images ``val`` (already on the modules' device)."""
    g = torch.Generator().manual_seed(seed)
    loss = representational_divergence(encoder, head, val, generator=g, head_only=True, **rd)
    return _flat_grad(loss, list(head.parameters())).cpu(), loss.item()


def select_coreset_rcs(encoder: nn.Module, head: nn.Module, images: torch.Tensor, val: torch.Tensor, *,
                       budget: int, batch_size: int, augment: dict[str, Any], temperature: float,
                       adversarial: dict[str, float] | None, rd: dict[str, float], head_lr: float, seed: int,
                       device: torch.device | str = "cpu", gradients: torch.Tensor | None = None) -> Coreset:
    """Greedy RCS over minibatch candidates of uint8 ``images`` (N, C, H, W) until ``budget`` images.

    ``val``: uint8 validation images U. ``rd`` = {eps, alpha, steps} of the divergence attack.
    ``gradients``: candidate gradients already computed (e.g. in parallel by :func:`candidate_gradients`
    over the same ``candidate_batches(N, batch_size, seed)``); computed here when None.
    Rounds = ⌈budget / batch_size⌉; each picks r = argmax_b ⟨g_b, g_val⟩; the coreset is the picked
    batches' images in pick order, cut to exactly ``budget`` (so RCS and random compare at equal size).
    """
    batches = candidate_batches(len(images), batch_size, seed)
    if gradients is None:
        gradients = candidate_gradients(encoder, head, images, batches, list(range(len(batches))), augment=augment,
                                        temperature=temperature, adversarial=adversarial, seed=seed, device=device)
    if gradients.shape[0] != len(batches):
        raise ValueError(f"{gradients.shape[0]} candidate gradients for {len(batches)} candidate batches")
    rounds = min(len(batches), math.ceil(budget / batch_size))
    params = list(head.parameters())
    saved = [p.detach().clone() for p in params]
    u = val.to(device).float().div(255)
    remaining = torch.ones(len(batches), dtype=torch.bool)
    picked, gains = [], []
    try:
        for r in progress(range(rounds), desc="RCS greedy selection", unit="pick"):
            g_val, _ = validation_gradient(encoder, head, u, rd=rd, seed=seed)
            scores = (gradients @ g_val).masked_fill(~remaining, -math.inf)
            best = int(scores.argmax())
            picked.append(best)
            gains.append(float(scores[best]))
            remaining[best] = False
            with torch.no_grad():  # θ_S ← θ_S − η ∇L_ACL(b): the one-step stand-in for training on S
                offset = 0
                for p in params:
                    p -= head_lr * gradients[best, offset:offset + p.numel()].view_as(p).to(p.device)
                    offset += p.numel()
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    indices = torch.cat([batches[i] for i in picked])[:budget].sort().values
    return Coreset(indices=indices, batches=batches, picked=torch.tensor(picked), gains=torch.tensor(gains))


def divergence_drops(encoder: nn.Module, head: nn.Module, gradients: torch.Tensor, image_sets: dict[str, torch.Tensor],
                     *, rd: dict[str, float], step: float, seed: int, device: torch.device | str = "cpu"
                     ) -> dict[str, torch.Tensor]:
    """What one greedy step on each candidate actually does to the divergence: the check of RCS's gain.

    For each row g_b of ``gradients`` (C, P), the head-gradient of a candidate's ACL loss as from
    :func:`candidate_gradients`, and each named set of uint8 images (N, C, H, W): L_RD(set; θ) −
    L_RD(set; θ − ``step`` · g_b), in nats, one (C,) tensor per set; positive = the step lowered the
    divergence. The gain ⟨g_b, ∇L_RD(U)⟩ predicts it to first order (drop ≈ step · gain on U). Every
    evaluation re-attacks from the same seeded start, so the drops differ only through the head; the
    head is restored afterwards.
    """
    params = list(head.parameters())
    saved = [p.detach().clone() for p in params]
    sets = {name: x.to(device).float().div(255) for name, x in image_sets.items()}

    def divergences() -> dict[str, float]:
        return {name: representational_divergence(encoder, head, x, generator=torch.Generator().manual_seed(seed),
                                                  head_only=True, **rd).item() for name, x in sets.items()}

    before = divergences()
    drops: dict[str, list[float]] = {name: [] for name in sets}
    try:
        for row in progress(gradients, desc="RD drop per candidate", unit="candidate"):
            with torch.no_grad():
                offset = 0
                for p, s in zip(params, saved):
                    p.copy_(s - step * row[offset:offset + p.numel()].view_as(p).to(p.device))
                    offset += p.numel()
            for name, value in divergences().items():
                drops[name].append(before[name] - value)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    return {name: torch.tensor(v, dtype=torch.float64) for name, v in drops.items()}


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, ties sharing their mean rank (float64)."""
    order = x.argsort()
    _, group, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = torch.empty(len(x), dtype=torch.float64)
    ranks[order] = (ends - (counts.double() - 1) / 2)[group]
    return ranks


def spearman(x: torch.Tensor, y: torch.Tensor, *, permutations: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """(ρ, p): Spearman's rank correlation of paired 1-D samples and its two-sided permutation p-value,
    (1 + #{|ρ_perm| ≥ |ρ|}) / (1 + permutations) over ``permutations`` seeded shuffles of y's ranks."""
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"need two 1-D samples of equal length >= 3, got {tuple(x.shape)} and {tuple(y.shape)}")
    rx, ry = _average_ranks(x), _average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = (rx.norm() * ry.norm()).item()
    if denom == 0:
        return float("nan"), 1.0
    rho = (rx @ ry).item() / denom
    g = torch.Generator().manual_seed(seed)
    shuffled = ry[torch.argsort(torch.rand(permutations, len(ry), generator=g), dim=1)]
    null = (shuffled @ rx) / denom
    return rho, (1 + int((null.abs() >= abs(rho) - 1e-12).sum())) / (1 + permutations)


def select_coreset_random(n: int, budget: int, seed: int) -> Coreset:
    """The baseline: ``budget`` images drawn uniformly without replacement."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Coreset(indices=order[:budget].sort().values)


def select_all(n: int, budget: int, seed: int) -> Coreset:
    """The reference: every image (``budget`` and ``seed`` are ignored)."""
    return Coreset(indices=torch.arange(n))


@dataclass(frozen=True, kw_only=True)
class SelectionMethod(Listed):
    """A coreset selection method ``select.method`` names.

    ``subset``: False for a method that keeps every image: no budget, no warm-up constraint, never
    re-selected, takes no time. ``scores_model``: False → ``select(n, budget, seed)`` picks without looking
    at the model; True → ``select`` has :func:`select_coreset_rcs`'s signature (model, uint8 images,
    validation images U, budget, candidate minibatches and their gradients, which the caller may compute
    in parallel with :func:`candidate_gradients`).
    """

    select: Callable[..., Coreset]
    subset: bool = True
    scores_model: bool = False


SELECTION_METHODS: Registry[SelectionMethod] = Registry("coreset selection method")
SELECTION_METHODS.register("full", SelectionMethod(
    select=select_all, subset=False, paper="-", summary="every image: the reference the coresets are measured against"))
SELECTION_METHODS.register("random", SelectionMethod(
    select=select_coreset_random, paper="-", summary="a uniform random subset of the same size (RCS's baseline)"))
SELECTION_METHODS.register("rcs", SelectionMethod(
    select=select_coreset_rcs, scores_model=True,
    paper="Xu et al. 2023, 'Efficient Adversarial Contrastive Learning via Robustness-Aware Coreset Selection' "
          "(NeurIPS)",
    summary="greedy minibatches whose ACL gradient best lowers the representational divergence on unlabeled "
            "validation images"))
