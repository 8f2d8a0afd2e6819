"""Contrastive losses (NT-Xent, SupCon), the one contrastive training loop (SimCLR, GenRep views,
ACL/DynACL through an adversary object, coreset epochs; tensors and modules in, history out), and the
registry of training methods ``train.method`` names (:data:`TRAIN_METHODS`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from repflow.augment import random_views
from repflow.progress import progress
from repflow.registry import Listed, Registry

__all__ = ["nt_xent_loss", "supcon_loss", "train_contrastive", "Adversary", "LOSSES", "TrainMethod", "TRAIN_METHODS"]


class Adversary(Protocol):
    """What the loop needs from an adversarial method (:class:`repflow.acl.ACL`): per-epoch view
    augmentation and the batch loss, given the two natural views."""

    def augment(self, base: dict[str, Any], epoch: int) -> dict[str, Any]: ...

    def loss(self, encoder: nn.Module, head: nn.Module, v1: torch.Tensor, v2: torch.Tensor, *, temperature: float,
             epoch: int, generator: torch.Generator) -> torch.Tensor: ...


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised-temperature cross-entropy (SimCLR eq. 1), averaged over all 2N anchors.

    ``z1[i]`` and ``z2[i]`` are projections of two views of image i, shape (N, d). For anchor i the
    positive is its other view; the 2N-2 views of other images are the negatives.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two (N, d) tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def supcon_loss(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L^sup_out) over the 2N views: every other view
    with the same label is a positive. With all labels distinct it equals :func:`nt_xent_loss`."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    y = torch.cat([labels, labels])
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = (z @ z.t() / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (y[:, None] == y[None, :]) & ~self_mask
    return -(log_prob.masked_fill(~positives, 0).sum(1) / positives.sum(1)).mean()


def train_contrastive(encoder: nn.Module, head: nn.Module, images: torch.Tensor, *, epochs: int, batch_size: int,
                      lr: float, weight_decay: float, temperature: float, augment: dict[str, Any],
                      device: torch.device, seed: int, partners: torch.Tensor | None = None,
                      labels: torch.Tensor | None = None, adversary: Adversary | None = None,
                      epoch_indices: Callable[[int], torch.Tensor] | None = None,
                      optimizer_state: dict | None = None, start_epoch: int = 0, use_every_image: bool = False,
                      on_epoch: Callable[[int, dict[str, float], torch.optim.Optimizer], None] | None = None
                      ) -> list[dict[str, float]]:
    """Train ``encoder`` + ``head`` contrastively on uint8 ``images`` (N,C,H,W).

    Without ``partners`` the two views of image i are two pixel augmentations of it (SimCLR). With
    ``partners`` (N,K,C,H,W) the second view is a random one of image i's K partners, augmented too
    (GenRep: latent-space neighbours). With ``labels`` the loss is SupCon, else NT-Xent. With an
    ``adversary`` (ACL / DynACL) the adversary sets each epoch's augmentation and computes the loss.
    ``epoch_indices(epoch)`` (0-based epoch) returns the images an epoch trains on — a coreset — else
    every image; it is called before the epoch's batches, so it may re-select from the current model.

    Batches: by default ⌊n / batch_size⌋ full batches and the ragged rest is dropped (a different rest
    each epoch, since the order is reshuffled; batch norm and NT-Xent want full batches). With
    ``use_every_image`` the n images of an epoch are split into ⌈n / batch_size⌉ batches whose sizes
    differ by at most one, so every image is trained on every epoch and no batch is smaller than
    half the others: what a coreset of a few batches needs, where dropping the rest would silently
    lose up to half of it every epoch. A set smaller than ``batch_size`` is one batch either way.

    Epoch e shuffles and augments with a generator seeded from (seed, e), so a run resumed at
    ``start_epoch`` sees exactly the batches an uninterrupted run would. ``on_epoch(epoch, stats,
    optimizer)`` is called after every epoch (checkpointing and logging live with the caller).
    """
    if len(images) < 2:
        raise ValueError(f"contrastive training needs at least 2 images, got {len(images)}")
    if adversary is not None and labels is not None:
        raise ValueError("adversarial contrastive training uses NT-Xent; class labels (SupCon) are not supported")
    encoder.to(device).train()
    head.to(device).train()
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    history = []
    for epoch in range(start_epoch, epochs):
        active = epoch_indices(epoch) if epoch_indices is not None else torch.arange(len(images))
        encoder.train()
        head.train()
        if len(active) < 2:
            raise ValueError(f"epoch {epoch + 1}: {len(active)} training images selected; need at least 2")
        bs = min(batch_size, len(active))
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = active[torch.randperm(len(active), generator=g)]
        aug = adversary.augment(augment, epoch + 1) if adversary is not None else augment
        total, count = 0.0, 0
        if use_every_image:
            batches = order.tensor_split(math.ceil(len(order) / bs))
        else:
            batches = order[:len(order) - len(order) % bs].split(bs)
        for idx in progress(batches, desc=f"contrastive epoch {epoch + 1}/{epochs}", unit="batch"):
            x = images[idx].to(device, non_blocking=True).float().div_(255)
            if partners is not None:
                pick = torch.randint(0, partners.shape[1], (len(idx),), generator=g)
                x2 = partners[idx, pick].to(device, non_blocking=True).float().div_(255)
            else:
                x2 = x
            v1, v2 = random_views(x, g, **aug), random_views(x2, g, **aug)
            if adversary is not None:
                loss = adversary.loss(encoder, head, v1, v2, temperature=temperature, epoch=epoch + 1, generator=g)
            elif labels is not None:
                loss = supcon_loss(head(encoder(v1)), head(encoder(v2)), labels[idx].to(device), temperature)
            else:
                loss = nt_xent_loss(head(encoder(v1)), head(encoder(v2)), temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
            count += len(x)
        stats = {"epoch": epoch + 1, "loss": total / max(count, 1), "images": len(active), "trained": count,
                 "steps": len(batches)}
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch + 1, stats, opt)
    return history


LOSSES = {"ntxent": "NT-Xent", "supcon": "SupCon"}
"""``train.loss`` names and what they are: SupCon takes class labels as extra positives."""


@dataclass(frozen=True, kw_only=True)
class TrainMethod(Listed):
    """A training method: what it needs from the data, the loss and the models, so that callers read these
    properties instead of comparing method names.

    ``latent_views``: the second view of a generated anchor is one of its K latent-space neighbours from
    the generate stage (so it needs generated data), not a second pixel augmentation of the anchor.
    ``losses``: the :data:`LOSSES` it trains with. ``adversary(adversarial, epochs)``: for an adversarial
    method, builds the :class:`Adversary` from ``train.adversarial`` (eps, alpha, steps, anneal_period,
    reweight) and the run's length in epochs; its models get dual batch norm. None: plain training.
    """

    latent_views: bool = False
    losses: tuple[str, ...] = tuple(LOSSES)
    adversary: Callable[[Any, int], Adversary] | None = None

    @property
    def adversarial(self) -> bool:
        return self.adversary is not None


def _acl(adversarial: Any, epochs: int) -> Adversary:
    from repflow.acl import ACL  # repflow.acl imports this module's loss

    a = adversarial
    return ACL(eps=a.eps, alpha=a.alpha, steps=a.steps, epochs=epochs, anneal_period=None, reweight=a.reweight)


def _dynacl(adversarial: Any, epochs: int) -> Adversary:
    from repflow.acl import ACL

    a = adversarial
    return ACL(eps=a.eps, alpha=a.alpha, steps=a.steps, epochs=epochs, anneal_period=a.anneal_period,
               reweight=a.reweight)


TRAIN_METHODS: Registry[TrainMethod] = Registry("training method")
TRAIN_METHODS.register("simclr", TrainMethod(
    paradigm="contrastive",
    paper="Chen et al. 2020, 'A Simple Framework for Contrastive Learning of Visual Representations' (ICML)",
    summary="NT-Xent between two pixel augmentations of one image"))
TRAIN_METHODS.register("genrep", TrainMethod(
    paradigm="contrastive", latent_views=True,
    paper="Jahanian et al. 2022, 'Generative Models as a Data Source for Multiview Representation Learning' (ICLR)",
    summary="contrastive learning with a generative model as the data source: positives are latent-space "
            "neighbours of a generated anchor"))
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
