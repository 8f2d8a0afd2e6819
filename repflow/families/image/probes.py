"""The image family's probes of a frozen encoder: features of uint8 images, batch-norm statistics measured on
images, adversarial linear finetuning (ALF), and how much of the pixels a linear map recovers."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repflow.attacks import PGD
from repflow.families.image.models import ProbedEncoder
from repflow.progress import progress

__all__ = ["embed", "calibrate_batch_norm", "fit_adversarial_linear_probe", "linear_reconstruction_r2"]


@torch.no_grad()
def embed(encoder: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], *, batch_size: int = 512,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Features of uint8 (N,C,H,W) images from ``encoder`` in eval mode, returned on CPU (N, out_dim).

    ``images`` is one tensor, encoded ``batch_size`` at a time, or an iterable of uint8 batches (a split read
    from shards), encoded as they come: the same batches give the same features."""
    was_training = encoder.training
    encoder.eval()
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    feats = [encoder(batch.to(device).float().div_(255)).cpu() for batch in batches]
    encoder.train(was_training)
    return torch.cat(feats) if feats else torch.empty(0)


@torch.no_grad()
def calibrate_batch_norm(encoder: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], *, batch_size: int = 256,
                         device: torch.device | str = "cpu") -> nn.Module:
    """Set every batch-norm layer's running mean and variance to the plain average over uint8 ``images``
    (N,C,H,W), in batches of ``batch_size`` (or an iterable of uint8 batches, as they come); weights untouched,
    ``encoder`` left in eval mode.

    Why: an untrained encoder's running statistics are the initial 0 and 1, so its eval-mode features are
    badly scaled, while a trained one's were measured on its training data. Comparing a trained encoder
    with the untrained one it started from is fair only once the latter's statistics are measured too
    (random conv features with measured statistics are a strong baseline: benchmarks/results/
    pretext_mechanism.md)."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    encoder.train()
    for batch in images.split(batch_size) if isinstance(images, torch.Tensor) else images:
        encoder(batch.to(device).float().div_(255))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return encoder.eval()


def fit_adversarial_linear_probe(encoder: nn.Module, probe: nn.Linear, images: torch.Tensor | Any,
                                 labels: torch.Tensor | None, *, epochs: int, lr: float, batch_size: int, eps: float,
                                 steps: int, seed: int, device: torch.device | str = "cpu") -> nn.Linear:
    """Adversarial linear finetuning (ALF): train ``probe`` (a copy is returned) on PGD examples of the
    frozen ``encoder`` + probe, min_W E[max_{‖δ‖∞≤eps} CE(W f(x + δ), y)], for uint8 ``images``.

    Starts from the given probe (the SLF one), so a few epochs suffice at this scale; the attack
    (step 2.5·eps/steps, random start) is re-run against the current probe for every batch.

    ``images`` may instead be an :class:`~repflow.families.image.contrastive.ImageStream` (not imported here,
    so that the stages using these probes do not depend on the training loop's code) that carries its
    labels (``labels`` None): its epoch batches, in its own seeded order, replace the per-epoch permutation
    drawn from ``seed``; the attacks' seeds are the same.
    """
    streamed = not isinstance(images, torch.Tensor)
    if streamed != (labels is None):
        raise ValueError("pass images as a tensor with their labels, or as a stream that carries its labels (labels "
                         "None)")
    probe = copy.deepcopy(probe).to(device)
    model = ProbedEncoder(encoder.to(device).eval(), probe)
    frozen = [p.requires_grad for p in encoder.parameters()]
    for p in encoder.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    try:
        for epoch in range(epochs):
            if streamed:
                batches: Iterable = images.batches(epoch, batch_size, drop_last=False)
            else:
                order = torch.randperm(len(images), generator=g)
                batches = ((images[idx], labels[idx]) for idx in order.split(batch_size))
            for b, (raw, y) in enumerate(progress(batches, desc=f"ALF epoch {epoch + 1}/{epochs}", unit="batch",
                                                  total=-(-len(images) // batch_size))):
                i = b * batch_size
                x = raw.to(device).float().div_(255)
                y = y.to(device)
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


def linear_reconstruction_r2(train_features: torch.Tensor, train_images: torch.Tensor | Iterable[torch.Tensor],
                             test_features: torch.Tensor, test_images: torch.Tensor | Iterable[torch.Tensor], *,
                             size: int | None = None, ridge: float = 1.0) -> float:
    """How much of the image a representation keeps, linearly: R² on the test images of a ridge regression
    from features (N, d), standardised with the training mean and std, to the images (uint8 or float in
    [0, 1], (N, C, H, W)), area-resized to ``size`` × ``size`` unless ``size`` is None. 1 = every pixel
    recovered; 0 = no better than the training mean image; negative = worse. The survey's
    "reconstruction-heavy" setting: a generative pretext is trained to keep this information, a contrastive
    one to discard what its augmentations change.

    Either set of images may be an iterable of batches in the order of its features (a split read from
    shards): the fit needs only sums over them (AᵀY, ΣY), so memory holds (d + 1) × pixels, not the images.
    Batches change only the order of those float64 sums."""
    def pixels(images: torch.Tensor) -> torch.Tensor:
        x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
        return (x if size is None else F.adaptive_avg_pool2d(x, size)).flatten(1).double()

    def rows(images: torch.Tensor | Iterable[torch.Tensor], features: torch.Tensor, name: str):
        """(feature rows, pixel rows) batch by batch; the counts must match."""
        start = 0
        for batch in [images] if isinstance(images, torch.Tensor) else images:
            y = pixels(batch)
            yield features[start:start + len(y)], y
            start += len(y)
        if start != len(features):
            raise ValueError(f"features and images differ in length: {name} {len(features)} vs {start}")

    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    f_tr, f_te = train_features.double(), test_features.double()
    mean, std = f_tr.mean(0), f_tr.std(0) + 1e-8
    a = torch.cat([(f_tr - mean) / std, torch.ones(len(f_tr), 1, dtype=f_tr.dtype)], 1)
    a_te = torch.cat([(f_te - mean) / std, torch.ones(len(f_te), 1, dtype=f_te.dtype)], 1)
    aty, y_sum = 0.0, 0.0
    for a_b, y in rows(train_images, a, "train"):
        aty, y_sum = aty + a_b.T @ y, y_sum + y.sum(0)
    y_mean = y_sum / len(a)
    reg = ridge * torch.eye(a.shape[1], dtype=a.dtype)
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    w = torch.linalg.solve(a.T @ a + reg, aty)
    residual, total = 0.0, 0.0
    for a_b, y in rows(test_images, a_te, "test"):
        residual += float(((y - a_b @ w) ** 2).sum())
        total += float(((y - y_mean) ** 2).sum())
    return 1.0 - residual / total
