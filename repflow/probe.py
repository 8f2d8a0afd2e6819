"""Probes of a frozen representation that several families use: a softmax-regression probe on features and
few-label accuracy. Features in, accuracies out; torch, numpy and scikit-learn only."""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


__all__ = ["fit_linear_probe", "FEW_LABEL_CLASSIFIERS", "few_label_accuracy", "as_array"]


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
        # imported here: scikit-learn costs ~3 CPU-s to import, and every `repflow` process (the CLI's --help
        # included) imports this module through the families' params
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=1000).fit(x, y).predict(x_test)
    classes = np.unique(y)
    centroids = np.stack([x[y == c].mean(0) for c in classes])
    distances = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    return classes[distances.argmin(1)]
