"""Contrastive losses (NT-Xent, SupCon) and the one contrastive training loop (SimCLR, GenRep views,
ACL/DynACL through an adversary object, coreset epochs); tensors and modules in, history out."""
from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from repflow.augment import random_views
from repflow.progress import progress

__all__ = ["nt_xent_loss", "supcon_loss", "train_contrastive", "Adversary"]


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
                      optimizer_state: dict | None = None, start_epoch: int = 0,
                      on_epoch: Callable[[int, dict[str, float], torch.optim.Optimizer], None] | None = None
                      ) -> list[dict[str, float]]:
    """Train ``encoder`` + ``head`` contrastively on uint8 ``images`` (N,C,H,W).

    Without ``partners`` the two views of image i are two pixel augmentations of it (SimCLR). With
    ``partners`` (N,K,C,H,W) the second view is a random one of image i's K partners, augmented too
    (GenRep: latent-space neighbours). With ``labels`` the loss is SupCon, else NT-Xent. With an
    ``adversary`` (ACL / DynACL) the adversary sets each epoch's augmentation and computes the loss.
    ``epoch_indices(epoch)`` (0-based epoch) returns the images an epoch trains on — a coreset — else
    every image; it is called before the epoch's batches, so it may re-select from the current model.

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
        steps = range(0, len(order) - bs + 1, bs)  # drop the ragged last batch: BN and NT-Xent need full batches
        for start in progress(steps, desc=f"contrastive epoch {epoch + 1}/{epochs}", unit="batch"):
            idx = order[start:start + bs]
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
        stats = {"epoch": epoch + 1, "loss": total / max(count, 1), "images": len(active)}
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch + 1, stats, opt)
    return history
