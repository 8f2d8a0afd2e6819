"""One training loop for every representation model of the family (MDVAE and its baselines), its
validation counterpart, and the seeded minibatch stream both VQ-VAE and sequence training draw from.

Determinism: the batches come from ``random_batches(..., seed)`` and the reparameterisation noise from a
generator seeded with the run's seed, so the same model, data and seed give the same weights on CPU.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Callable, TypeVar

import torch

from repflow.families.av.blocks import Batch, SequenceModel
from repflow.progress import progress

__all__ = ["random_batches", "cycle", "to_device", "kl_weight", "train_sequence_model", "evaluate_sequence_model"]

Data = TypeVar("Data", torch.Tensor, Mapping[str, torch.Tensor])


def random_batches(data: Data, batch_size: int, seed: int) -> Iterator[Data]:
    """Endless minibatches of ``batch_size`` rows of ``data`` (a tensor, or a dict of tensors sharing their
    first dim), each pass over the rows in a fresh order drawn from ``seed``; a last short batch is
    dropped unless the data has fewer rows than one batch."""
    tensors = data if isinstance(data, Mapping) else {"": data}
    sizes = {len(t) for t in tensors.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"data must be non-empty tensors with the same number of rows, got "
                         f"{ {k: tuple(v.shape) for k, v in tensors.items()} }")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    rows = sizes.pop()
    size = min(batch_size, rows)
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(rows, generator=generator)
        for start in range(0, rows - size + 1, size):
            idx = order[start:start + size]
            picked = {k: v[idx] for k, v in tensors.items()}
            yield picked if isinstance(data, Mapping) else picked[""]


def cycle(batches: Iterable[Data]) -> Iterator[Data]:
    """Batches from an iterator as they come (a ValueError when it runs out), or from a re-iterable (a list,
    a DataLoader) pass after pass."""
    if iter(batches) is batches:
        count = 0
        for batch in batches:
            count += 1
            yield batch
        raise ValueError(f"the batch iterator ran out after {count} batches; pass an endless one "
                         f"(random_batches) or a list to cycle through")
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("batches is empty")


def to_device(data: Data, device: torch.device | str) -> Data:
    """A tensor, or a dict of tensors, on ``device`` (no copy when already there)."""
    if isinstance(data, Mapping):
        return {k: v.to(device) for k, v in data.items()}
    return data.to(device)


def kl_weight(step: int, warmup: int) -> float:
    """β at 0-based ``step``: rising linearly from 1/warmup to 1 over the first ``warmup`` steps, then 1
    (``warmup`` 0: always 1, the official code's setting)."""
    return 1.0 if warmup <= 0 else min(1.0, (step + 1) / warmup)


def train_sequence_model(model: SequenceModel, batches: Iterable[Batch], *, steps: int, lr: float, seed: int,
                         kl_warmup: int = 0, grad_clip: float | None = None, device: torch.device | str = "cpu",
                         on_step: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Adam at ``lr`` for ``steps`` steps on the negative ELBO of batches from ``batches`` (dicts of (B, T, D)
    latents; an endless iterator such as :func:`random_batches`, or a list cycled); β warmed up over
    ``kl_warmup`` steps (:func:`kl_weight`); gradient norm clipped at ``grad_clip`` if given. If the
    model's standardisation was never fitted it is fitted on the first batch. The model and each batch
    are moved to ``device`` (the noise generator lives there too). Returns one dict per step:
    ``step`` (1-based), ``beta`` and every term of ``model.terms`` (nats per frame)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    stream = cycle(batches)
    generator = torch.Generator(device=device).manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in progress(range(steps), desc=f"av.train {type(model).__name__}", unit="step"):
        batch = to_device(next(stream), device)
        if not bool(model.standardisation_fitted):
            model.fit_standardisation(batch)
        beta = kl_weight(step, kl_warmup)
        terms = model.terms(batch, beta=beta, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        record = {"step": step + 1, "beta": beta} | {k: v.item() for k, v in terms.items()}
        history.append(record)
        if on_step is not None:
            on_step(step + 1, record)
    model.eval()
    return history


@torch.no_grad()
def evaluate_sequence_model(model: SequenceModel, batches: Iterable[Batch], *, seed: int,
                            device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean of each ELBO term (nats per frame, β = 1) over one pass of ``batches`` of held-out clips (a finite
    iterable), in eval mode and without gradients; samples drawn from ``seed`` so the number repeats. The
    model must already be on ``device``; batches are moved there."""
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    clips = 0
    for batch in batches:
        batch = to_device(batch, device)
        n = len(next(iter(batch.values())))
        for key, value in model.terms(batch, beta=1.0, generator=generator).items():
            sums[key] = sums.get(key, 0.0) + value.item() * n
        clips += n
    model.train(was_training)
    if clips == 0:
        raise ValueError("no validation batches")
    return {k: v / clips for k, v in sums.items()}
