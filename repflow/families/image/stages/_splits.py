"""Image splits read from the shards batch by batch instead of held as tensors (issue 34): shuffled for
training (:class:`ShardImages`), or in write order (:class:`OrderedSplit`, which also holds a split in memory
when asked), what the evaluation stages compute features, accuracies and attacked subsets from.

In write order, both ways give the same images in the same order and in the same batches, so whatever is
computed from them is the same, bit for bit; a streamed split holds one batch (and one shard's memory map, or
for a remote folder one shard's bytes) instead of the whole split. Whether the evaluation stages stream is
``train.stream`` (:func:`streams_splits`).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from repflow.config import Params
from repflow.families.image.probes import embed
from repflow.manifest import OutputError
from repflow.shards import ShardSet


class ShardImages:
    """The real training split as an :class:`~repflow.families.image.contrastive.ImageStream`: epoch e reads
    the shards in an order and through a shuffle buffer (``train.shuffle_buffer`` encoded samples; it fills
    before the first pick) both seeded from (seed, e), split by node (torch.distributed rank) and by loader
    worker. Memory: the buffer, one decoded batch and one shard's memory map or, for a remote folder, one
    shard's bytes — not the split.

    With a buffer at least the split's size the order is a uniform random permutation, like the in-memory
    path's ``torch.randperm`` but a different one, so the two paths give different batches from the same
    seed: benchmarks/results/stream.md measures what that changes. With a smaller buffer, samples move at
    most about a buffer's length from their place in the shards: prep writes the train split in a seeded
    random order, so a small buffer still mixes the classes; over shards written class by class (an
    ``imagefolder`` source in its own order) a buffer smaller than a class gives one-class batches.
    """

    def __init__(self, data: ShardSet, split: str, *, shuffle_buffer: int, seed: int, labels: bool = False,
                 workers: int = 0):
        self.data, self.split, self.shuffle_buffer, self.seed = data, split, shuffle_buffer, seed
        self.labels, self.workers = labels, workers

    def __len__(self) -> int:
        return self.data.count(self.split)

    def batches(self, epoch: int, batch_size: int, *, drop_last: bool):
        loader = self.data.loader(self.split, batch_size=batch_size, num_workers=self.workers,
                                  shuffle_buffer=self.shuffle_buffer, seed=self.seed * 100_003 + epoch,
                                  partial=not drop_last)
        for images, labels in loader:
            yield images, (labels if self.labels else None)

    def all_labels(self) -> torch.Tensor:
        """Every label of the split, in write order (int64 (N,)): a pass that decodes only the ``cls``
        members."""
        return self.data.labels(self.split)

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """The images at ``indices`` (distinct positions in write order), uint8 (k,C,H,W) in the order given:
        one pass that keeps only those (:meth:`ShardSet.take`)."""
        return self.data.take(self.split, indices)[0]


def streams_splits(params: Params) -> bool:
    """Whether evaluate and compare read their splits batch by batch: every ``train.stream`` but ``never``
    (their in-order reads need no condition on the data or the selection, unlike training's)."""
    return params.train.stream != "never"


class OrderedSplit:
    """One image split of ``data`` in write order: loaded once (``stream=False``: ``ShardSet.load``) or read
    batch by batch from the shards every time it is used (``stream=True``)."""

    def __init__(self, data: ShardSet, split: str, *, stream: bool):
        self.data, self.split, self.streamed = data, split, stream
        self._loaded = None if stream else data.load(split)

    def __len__(self) -> int:
        return self.data.count(self.split)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images uint8 (B,C,H,W), labels int64 (B,))`` in write order, ``batch_size`` each but the last."""
        if self._loaded is not None:
            x, y = self._loaded
            for i in range(0, len(x), batch_size):
                yield x[i:i + batch_size], y[i:i + batch_size]
            return
        seen = 0
        for x, y in self.data.loader(self.split, batch_size=batch_size):
            if tuple(x.shape[1:]) != self.data.shape:
                raise OutputError(f"{self.data.location}: {self.split} images have shape {tuple(x.shape[1:])}, "
                                  f"manifest says {self.data.shape}")
            seen += len(x)
            yield x, y
        if seen != len(self):
            raise OutputError(f"{self.data.location}: split {self.split!r} has {seen} samples, manifest says "
                              f"{len(self)}")

    def images(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images of :meth:`batches` alone."""
        return (x for x, _ in self.batches(batch_size))

    def labels(self) -> torch.Tensor:
        """Every label, int64 (N,); streamed: a pass that decodes only the labels."""
        return self._loaded[1] if self._loaded is not None else self.data.labels(self.split)

    def take(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images uint8 (k,C,H,W), labels int64 (k,)) at ``indices`` (distinct positions), in the order given."""
        if self._loaded is not None:
            return self._loaded[0][indices], self._loaded[1][indices]
        return self.data.take(self.split, indices)

    def subset(self, count: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The attacked images of the evaluation stages: the first ``count`` (None: all) positions of a
        permutation drawn from ``seed``, in write order, as (images float [0, 1] (k,C,H,W), labels int64 (k,))."""
        n = len(self) if count is None else min(count, len(self))
        pick = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        x, y = self.take(pick)
        return x.float().div(255), y

    def features(self, encoder: nn.Module, *, batch_size: int = 512,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(features float (N, out_dim) of ``encoder`` in eval mode, labels int64 (N,)), one pass."""
        labels: list[torch.Tensor] = []

        def images() -> Iterator[torch.Tensor]:
            for x, y in self.batches(batch_size):
                labels.append(y)
                yield x

        feats = embed(encoder, images(), device=device)
        return feats, (torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64))

    @torch.no_grad()
    def accuracy(self, model: nn.Module, *, batch_size: int = 256, device: torch.device | str = "cpu") -> float:
        """Top-1 accuracy of ``model`` (float [0, 1] input) in eval mode on the split; its mode is restored."""
        was_training = model.training
        model.eval()
        correct = 0
        for x, y in self.batches(batch_size):
            correct += (model(x.to(device).float().div_(255)).argmax(1) == y.to(device)).sum().item()
        model.train(was_training)
        return correct / max(len(self), 1)

    def training(self, *, shuffle_buffer: int, seed: int) -> tuple[torch.Tensor | ShardImages, torch.Tensor | None]:
        """(images, labels) for a loop that draws shuffled batches (ALF): the loaded tensors, or a
        :class:`ShardImages` stream through a shuffle buffer that carries its labels (labels None)."""
        if self._loaded is not None:
            return self._loaded
        return ShardImages(self.data, self.split, shuffle_buffer=shuffle_buffer, seed=seed, labels=True), None
