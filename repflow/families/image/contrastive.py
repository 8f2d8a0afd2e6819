"""Contrastive losses (NT-Xent, SupCon), the one encoder training loop (SimCLR, GenRep views,
ACL/DynACL through an adversary object, generative and generative-contrastive pretext tasks through a
:class:`PretextHead`, coreset epochs, a CPU-time budget; tensors and modules in, history out), and the
registry of training methods ``train.method`` names (:data:`TRAIN_METHODS`: SimCLR and GenRep here; ACL/DynACL,
masked_ae and BiGAN register themselves in their own modules, and :mod:`repflow.families.image.train_methods`
imports them all)."""
from __future__ import annotations

import abc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from repflow.data_parallel import any_rank, average_gradients, gather_with_grad, local_slice, world
from repflow.families.image.augment import random_views
from repflow.progress import progress
from repflow.registry import Listed, Registry

__all__ = ["nt_xent_loss", "supcon_loss", "train_contrastive", "Adversary", "ImageStream", "PretextHead", "LOSSES",
           "TrainMethod", "TRAIN_METHODS"]


class Adversary(Protocol):
    """What the loop needs from an adversarial method (:class:`repflow.families.image.acl.ACL`): per-epoch view
    augmentation and the batch loss, given the two natural views."""

    def augment(self, base: dict[str, Any], epoch: int) -> dict[str, Any]: ...

    def loss(self, encoder: nn.Module, head: nn.Module, v1: torch.Tensor, v2: torch.Tensor, *, temperature: float,
             epoch: int, generator: torch.Generator) -> torch.Tensor: ...


class ImageStream(Protocol):
    """Training images read batch by batch instead of held as one tensor (a dataset larger than memory):
    what :func:`train_contrastive` takes in place of ``images``.

    ``len(stream)``: images per epoch. ``batches(epoch, batch_size, drop_last=...)``: that epoch's
    batches, in an order fixed by ``epoch`` and the stream's own seed, as ``(images uint8 (B,C,H,W),
    labels int64 (B,) or None)``; labels only where the stream was built to carry them (they are then
    SupCon's extra positives). ``drop_last``: leave out the ragged last batch.
    """

    def __len__(self) -> int: ...

    def batches(self, epoch: int, batch_size: int, *, drop_last: bool
                ) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]: ...


class PretextHead(nn.Module, abc.ABC):
    """Everything a non-contrastive method trains next to the shared encoder (a decoder, a generator and a
    discriminator, ...) plus its loss: the loop calls :meth:`loss` instead of a contrastive loss on a
    projection head, and the one optimizer updates the encoder and every parameter of this module.

    Subclasses are built as ``cls(in_dim, image_shape, **options)`` (``in_dim``: the encoder's
    ``out_dim``; ``image_shape``: (C, H, W)); :meth:`config` returns ``{"in_dim", "image_shape",
    "options"}``, which :func:`build_training_head` completes with the method's name.

    ``adam_betas``: the loop's Adam betas while this head trains (adversarial games want a short
    momentum memory, β1 = 0.5, as DCGAN, BiGAN and ALI use; everything else keeps Adam's defaults).
    """

    adam_betas: tuple[float, float] = (0.9, 0.999)

    @abc.abstractmethod
    def loss(self, encoder: nn.Module, v1: torch.Tensor, v2: torch.Tensor, *,
             generator: torch.Generator) -> torch.Tensor:
        """Scalar loss of one batch; ``v1``, ``v2``: two augmented views (N, C, H, W) in [0, 1] of the same
        images (a method may use only ``v1``); ``generator``: the loop's CPU generator for any randomness."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able ``{"in_dim", "image_shape", "options"}``: enough to rebuild this head."""

    def batch_stats(self) -> dict[str, float]:
        """Diagnostics of the last :meth:`loss` call (e.g. a discriminator's accuracy); the loop averages
        them over an epoch into its history row. None by default."""
        return {}


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


def train_contrastive(encoder: nn.Module, head: nn.Module, images: torch.Tensor | ImageStream, *, epochs: int,
                      batch_size: int,
                      lr: float, weight_decay: float, temperature: float, augment: dict[str, Any],
                      device: torch.device, seed: int, partners: torch.Tensor | None = None,
                      labels: torch.Tensor | None = None, adversary: Adversary | None = None,
                      epoch_indices: Callable[[int], torch.Tensor] | None = None,
                      optimizer_state: dict | None = None, start_epoch: int = 0, use_every_image: bool = False,
                      on_epoch: Callable[[int, dict[str, float], torch.optim.Optimizer], None] | None = None,
                      max_seconds: float | None = None) -> list[dict[str, float]]:
    """Train ``encoder`` + ``head`` on uint8 ``images`` (N,C,H,W), contrastively unless ``head`` is a
    :class:`PretextHead`, whose own loss (masked reconstruction, an adversarial game, ...) is then
    trained on the same views instead; the encoder, head and optimizer are the same either way.

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

    Data parallel: when a torch.distributed process group is initialised (W > 1 ranks, e.g. Ray Train's
    workers, :func:`repflow.cluster.run_data_parallel`), every rank draws the same global batch and its views
    (``batch_size`` is the global batch), encodes only its :func:`~repflow.data_parallel.local_slice` of them,
    and the loss is computed on the projections gathered with their gradients from every rank, so the
    negatives are the whole global batch; gradients are averaged over the ranks before each step. The loss, the
    history and the weights then follow the one-process run up to floating-point order (batch norm must be
    synchronised by the caller: :func:`~repflow.data_parallel.sync_batch_norm`). Pretext heads and streamed
    images are not supported there (per-slice losses; a stream split by rank).

    ``max_seconds``: a budget in CPU seconds of this process (``time.process_time()``, all threads)
    spent inside this call; once reached after a batch the loop ends, the current epoch's stats are
    recorded (and passed to ``on_epoch``) as a partial epoch, and that last row gets
    ``"stopped_by_budget": True``. Every row has ``"seconds"``, the CPU seconds of its epoch. Apart
    from where it stops, a budgeted run trains exactly the batches an unbudgeted one does.

    ``images`` may instead be an :class:`ImageStream` (shards streamed through a shuffle buffer): its
    batches, in its order, come in place of the per-epoch permutation of a tensor; augmentation still draws
    from the (seed, epoch) generator. A stream has no random access, so ``partners``, ``labels`` (a stream
    carries its own) and ``epoch_indices`` (a coreset) take tensors only; ``use_every_image`` keeps the
    ragged last batch instead of dropping it.
    """
    streamed = not isinstance(images, torch.Tensor)
    if streamed and (partners is not None or labels is not None or epoch_indices is not None):
        raise ValueError("a streamed training set has no random access: partners (latent views), labels (a stream "
                         "carries its own) and epoch_indices (a coreset) need the images as a tensor")
    if len(images) < 2:
        raise ValueError(f"contrastive training needs at least 2 images, got {len(images)}")
    if adversary is not None and labels is not None:
        raise ValueError("adversarial contrastive training uses NT-Xent; class labels (SupCon) are not supported")
    pretext = isinstance(head, PretextHead)
    if pretext and (adversary is not None or labels is not None):
        raise ValueError(f"a pretext head ({type(head).__name__}) trains its own loss: no adversary and no class "
                         "labels (SupCon) with it")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0 (CPU seconds) or None, got {max_seconds}")
    rank, ranks = world()
    if pretext and ranks > 1:
        raise ValueError(f"a pretext head ({type(head).__name__}) does not train data-parallel ({ranks} ranks): "
                         "its loss is not gathered over the global batch")
    if streamed and ranks > 1:
        raise ValueError(f"a streamed training set does not train data-parallel ({ranks} ranks): the shard stream "
                         "splits by rank, and every rank needs the whole global batch; pass the images as a tensor")
    budget_start = time.process_time()
    encoder.to(device).train()
    head.to(device).train()
    params = list(encoder.parameters()) + list(head.parameters())
    betas = head.adam_betas if pretext else (0.9, 0.999)
    opt = torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    history = []
    for epoch in range(start_epoch, epochs):
        epoch_start = time.process_time()
        active = epoch_indices(epoch) if epoch_indices is not None else None
        n_active = len(active) if active is not None else len(images)
        encoder.train()
        head.train()
        if n_active < 2:
            raise ValueError(f"epoch {epoch + 1}: {n_active} training images selected; need at least 2")
        bs = min(batch_size, n_active)
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        if streamed:
            n_batches = math.ceil(n_active / bs) if use_every_image else n_active // bs
            batches: Iterable = images.batches(epoch, bs, drop_last=not use_every_image)
        else:
            if active is None:
                active = torch.arange(n_active)
            order = active[torch.randperm(n_active, generator=g)]
            if use_every_image:
                batches = order.tensor_split(math.ceil(n_active / bs))
            else:
                batches = order[:n_active - n_active % bs].split(bs)
            n_batches = len(batches)
        aug = adversary.augment(augment, epoch + 1) if adversary is not None else augment
        total, count, done, out_of_time = 0.0, 0, 0, False
        diagnostics: dict[str, float] = {}
        kind = "pretext" if pretext else "contrastive"
        for batch in progress(batches, desc=f"{kind} epoch {epoch + 1}/{epochs}", unit="batch", total=n_batches):
            if streamed:
                raw, batch_labels = batch
                x = raw.to(device, non_blocking=True).float().div_(255)
            else:
                idx, batch_labels = batch, (labels[batch] if labels is not None else None)
                x = images[idx].to(device, non_blocking=True).float().div_(255)
            if partners is not None:
                pick = torch.randint(0, partners.shape[1], (len(idx),), generator=g)
                x2 = partners[idx, pick].to(device, non_blocking=True).float().div_(255)
            else:
                x2 = x
            v1, v2 = random_views(x, g, **aug), random_views(x2, g, **aug)
            if ranks > 1:
                mine = local_slice(len(x), rank, ranks)
                v1, v2 = v1[mine], v2[mine]
            if pretext:
                loss = head.loss(encoder, v1, v2, generator=g)
            elif adversary is not None:
                loss = adversary.loss(encoder, head, v1, v2, temperature=temperature, epoch=epoch + 1, generator=g)
            elif batch_labels is not None:
                loss = supcon_loss(gather_with_grad(head(encoder(v1))), gather_with_grad(head(encoder(v2))),
                                   batch_labels.to(device), temperature)
            else:
                loss = nt_xent_loss(gather_with_grad(head(encoder(v1))), gather_with_grad(head(encoder(v2))),
                                    temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(params)
            opt.step()
            total += loss.item() * len(x)
            count += len(x)
            done += 1
            for key, value in (head.batch_stats() if pretext else {}).items():
                diagnostics[key] = diagnostics.get(key, 0.0) + value * len(x)
            if max_seconds is not None and any_rank(time.process_time() - budget_start >= max_seconds, device):
                out_of_time = True
                break
        stats = {"epoch": epoch + 1, "loss": total / max(count, 1), "images": n_active, "trained": count,
                 "steps": done, **{k: v / max(count, 1) for k, v in diagnostics.items()},
                 "seconds": time.process_time() - epoch_start}
        stopped = out_of_time and (done < n_batches or epoch + 1 < epochs)
        if stopped:
            stats["stopped_by_budget"] = True
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch + 1, stats, opt)
        if stopped:
            break
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
    ``pretext(out_dim, image_shape)``: for a generative or generative-contrastive method, builds its
    :class:`PretextHead` for an encoder of ``out_dim`` features and images of ``image_shape`` (C, H, W);
    it replaces the projection head and the contrastive loss. None: a contrastive method.
    """

    latent_views: bool = False
    losses: tuple[str, ...] = tuple(LOSSES)
    adversary: Callable[[Any, int], Adversary] | None = None
    pretext: Callable[[int, tuple[int, int, int]], PretextHead] | None = None

    @property
    def adversarial(self) -> bool:
        return self.adversary is not None


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
