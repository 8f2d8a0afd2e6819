"""Probes of a frozen representation: features, a softmax-regression probe (standard and adversarial linear
evaluation), few-label accuracy, and how much of the pixels a linear map recovers."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn

from repflow.progress import progress

__all__ = ["embed", "calibrate_batch_norm", "fit_linear_probe", "fit_adversarial_linear_probe",
           "FEW_LABEL_CLASSIFIERS", "few_label_accuracy", "linear_reconstruction_r2", "as_array"]


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


@torch.no_grad()
def calibrate_batch_norm(encoder: nn.Module, images: torch.Tensor, *, batch_size: int = 256,
                         device: torch.device | str = "cpu") -> nn.Module:
    """Set every batch-norm layer's running mean and variance to the plain average over uint8 ``images``
    (N,C,H,W), in batches of ``batch_size``; weights untouched, ``encoder`` left in eval mode.

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
    for i in range(0, len(images), batch_size):
        encoder(images[i:i + batch_size].to(device).float().div_(255))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return encoder.eval()


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


FEW_LABEL_CLASSIFIERS = ("logistic", "centroid")
"""``logistic``: multinomial logistic regression (L2, C = 1, lbfgs) on features standardised with the
training pool's mean and std; ``centroid``: nearest class mean in the same standardised space."""


def as_array(x: torch.Tensor | np.ndarray, name: str, dims: int) -> np.ndarray:
    """``x`` as a numpy array of ``dims`` dimensions; a ValueError naming ``name`` and its shape otherwise."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim != dims:
        raise ValueError(f"{name} must have {dims} dims, got shape {a.shape}")
    return a


def few_label_accuracy(train_features: torch.Tensor | np.ndarray, train_labels: torch.Tensor | np.ndarray,
                       test_features: torch.Tensor | np.ndarray, test_labels: torch.Tensor | np.ndarray, *,
                       ks: tuple[int, ...] = (2, 5, 10), draws: int = 10, seed: int = 0,
                       classifier: str = "logistic") -> dict[int, dict[str, float]]:
    """Test accuracy of a classifier fitted on k labelled samples per class, for each k in ``ks``:
    {k: {"mean", "std" (population, over draws), "min", "max"}}. Features (N, d), labels (N,) ints. Every
    class of the training pool must have at least max(ks) samples. Draw i of every k uses seed + i, so a
    larger k's labelled set does not contain a smaller one's by construction, and results repeat exactly."""
    if classifier not in FEW_LABEL_CLASSIFIERS:
        raise ValueError(f"classifier {classifier!r} unknown; allowed: {list(FEW_LABEL_CLASSIFIERS)}")
    x_pool, y_pool = as_array(train_features, "train_features", 2), as_array(train_labels, "train_labels", 1)
    x_test, y_test = as_array(test_features, "test_features", 2), as_array(test_labels, "test_labels", 1)
    if len(x_pool) != len(y_pool) or len(x_test) != len(y_test):
        raise ValueError(f"features and labels differ in length: train {len(x_pool)} vs {len(y_pool)}, "
                         f"test {len(x_test)} vs {len(y_test)}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an int >= 1, got {draws!r}")
    classes, counts = np.unique(y_pool, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"the training pool needs at least 2 classes, got {classes.tolist()}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"every k must be an int >= 1, got {k!r}")
        short = {int(c): int(n) for c, n in zip(classes, counts) if n < k}
        if short:
            raise ValueError(f"k={k} labels per class, but these classes have fewer training samples: {short}")
    mean, std = x_pool.mean(0), x_pool.std(0) + 1e-8
    x_pool, x_test = (x_pool - mean) / std, (x_test - mean) / std
    results = {}
    for k in ks:
        scores = []
        for draw in range(draws):
            rng = np.random.default_rng(seed + draw)
            chosen = np.concatenate([rng.choice(np.flatnonzero(y_pool == c), size=k, replace=False)
                                     for c in classes])
            predicted = _fit_predict(classifier, x_pool[chosen], y_pool[chosen], x_test)
            scores.append(float((predicted == y_test).mean()))
        a = np.asarray(scores)
        results[k] = {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}
    return results


def _fit_predict(classifier: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    if classifier == "logistic":
        return LogisticRegression(C=1.0, max_iter=1000).fit(x, y).predict(x_test)
    classes = np.unique(y)
    centroids = np.stack([x[y == c].mean(0) for c in classes])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    return classes[distances.argmin(1)]


def linear_reconstruction_r2(train_features: torch.Tensor, train_images: torch.Tensor, test_features: torch.Tensor,
                             test_images: torch.Tensor, *, size: int | None = None, ridge: float = 1.0) -> float:
    """How much of the image a representation keeps, linearly: R² on the test images of a ridge regression
    from features (N, d), standardised with the training mean and std, to the images (uint8 or float in
    [0, 1], (N, C, H, W)), area-resized to ``size`` × ``size`` unless ``size`` is None. 1 = every pixel
    recovered; 0 = no better than the training mean image; negative = worse. The survey's
    "reconstruction-heavy" setting: a generative pretext is trained to keep this information, a contrastive
    one to discard what its augmentations change."""
    def pixels(images: torch.Tensor) -> torch.Tensor:
        x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
        return (x if size is None else F.adaptive_avg_pool2d(x, size)).flatten(1).double()

    if len(train_features) != len(train_images) or len(test_features) != len(test_images):
        raise ValueError(f"features and images differ in length: train {len(train_features)} vs {len(train_images)}, "
                         f"test {len(test_features)} vs {len(test_images)}")
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    f_tr, f_te = train_features.double(), test_features.double()
    mean, std = f_tr.mean(0), f_tr.std(0) + 1e-8
    f_tr, f_te = (f_tr - mean) / std, (f_te - mean) / std
    y_tr, y_te = pixels(train_images), pixels(test_images)
    y_mean = y_tr.mean(0)
    a = torch.cat([f_tr, torch.ones(len(f_tr), 1, dtype=f_tr.dtype)], 1)
    reg = ridge * torch.eye(a.shape[1], dtype=a.dtype)
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    w = torch.linalg.solve(a.T @ a + reg, a.T @ y_tr)
    pred = torch.cat([f_te, torch.ones(len(f_te), 1, dtype=f_te.dtype)], 1) @ w
    residual = ((y_te - pred) ** 2).sum()
    total = ((y_te - y_mean) ** 2).sum()
    return float(1.0 - residual / total)
