"""Probes on frozen representations: few-label emotion recognition and mutual information with labels.

- few-label accuracy: :func:`repflow.probe.few_label_accuracy`, the few-label emotion recognition of MDVAE's
  abstract (Sadok et al., Neural Networks 2024) at CPU scale, shared with the image family's compare stage.
- :func:`mutual_information`: I(feature_j; label) in nats for each coordinate j by scikit-learn's
  ``mutual_info_classif`` (the k-nearest-neighbour estimator of Ross 2014, *PLoS ONE* 9(2):e87357, for a
  continuous variable against a discrete one), summarised by the mean and the max over coordinates. Why
  this estimator: it needs no binning choice (binned estimates of a continuous latent move with the bin
  width), it is consistent for continuous–discrete pairs, and it is what a reader can rerun. Why per
  coordinate: a joint kNN estimate over a 32-dim latent from a few hundred clips is dominated by the
  curse of dimensionality; the per-coordinate mean compares representations of different widths by the
  information a typical coordinate carries, the max by the most informative one. Neither is the joint
  I(representation; label), which is ≥ the max.

A caveat measured on the synthetic corpus: the kNN estimate is high for any coordinate on which the clips of
each (speaker, emotion) pair sit together, even when the emotion's direction differs from speaker to speaker
(the unimodal visual DVAE's w: 1.14 nats per coordinate for emotion, out of log 4 = 1.39, while its
few-label emotion accuracy on held-out speakers was at chance). :func:`linear_information` is the stricter
measure: the information a linear read-out recovers on folds of unseen groups (speakers), H(y) − the
cross-validated cross-entropy, a lower bound on I(representation; label) in nats.

Static factors (w, a clip-mean of frame latents) are one sample per clip; dynamic latents are compared per
frame, each frame carrying its clip's label (:func:`per_frame_samples`).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from repflow.probe import as_array

__all__ = ["mutual_information", "linear_information", "per_frame_samples"]

def mutual_information(features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, *, seed: int = 0,
                       n_neighbors: int = 3, max_samples: int = 5000) -> dict[str, float]:
    """I(feature_j; label) in nats per coordinate j of (N, d) ``features`` against (N,) discrete ``labels``
    (module docstring): {"mean", "max"} over coordinates. At most ``max_samples`` rows, a seeded subset
    when there are more (the kNN search grows as N log N)."""
    x, y = as_array(features, "features", 2), as_array(labels, "labels", 1)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} feature rows but {len(y)} labels")
    if len(x) <= n_neighbors:
        raise ValueError(f"need more than n_neighbors={n_neighbors} samples, got {len(x)}")
    if len(x) > max_samples:
        keep = np.random.default_rng(seed).choice(len(x), size=max_samples, replace=False)
        x, y = x[keep], y[keep]
    per_dim = mutual_info_classif(x.astype(np.float64), y, discrete_features=False, n_neighbors=n_neighbors,
                                  random_state=seed)
    return {"mean": float(per_dim.mean()), "max": float(per_dim.max())}


def linear_information(features: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, *,
                       groups: torch.Tensor | np.ndarray | None = None,
                       clips: torch.Tensor | np.ndarray | None = None, folds: int = 5, seed: int = 0,
                       max_samples: int = 5000) -> float:
    """H(y) − CE in nats, floored at 0: the label entropy (empirical frequencies) minus the cross-entropy of
    logistic regression (standardised features, C = 1) predicting each row from a model fitted on the other
    folds. With ``groups`` (e.g. speaker ids per row) the folds are whole groups, so only information that
    holds across groups counts. With ``clips`` instead (the clip id of each row, for per-frame rows) the folds
    are label-stratified sets of whole clips: without it, frames of one clip land on both sides of a fold and
    a read-out that only recognises the clip scores as information about its label (a clip's frames share
    its identity and its recording). Give one of ``groups`` and ``clips``; a group must hold whole clips. A
    lower bound on I(features; labels) (the read-out is linear and finite-data); the whole (N, d)
    representation at once, unlike :func:`mutual_information`. At most ``max_samples`` rows (a seeded
    subset)."""
    x, y = as_array(features, "features", 2), as_array(labels, "labels", 1)
    if groups is not None and clips is not None:
        raise ValueError("give groups or clips, not both (a group holds whole clips)")
    g = as_array(groups, "groups", 1) if groups is not None else (
        None if clips is None else as_array(clips, "clips", 1))
    if len(x) != len(y) or (g is not None and len(g) != len(y)):
        raise ValueError(f"{len(x)} feature rows, {len(y)} labels" + ("" if g is None else f", {len(g)} groups"))
    if len(x) > max_samples:
        keep = np.random.default_rng(seed).choice(len(x), size=max_samples, replace=False)
        x, y, g = x[keep], y[keep], (None if g is None else g[keep])
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 label values, got {classes.tolist()}")
    if g is not None and len(np.unique(g)) < folds:
        raise ValueError(f"{folds} folds need at least {folds} groups, got {len(np.unique(g))}")
    splitter = (GroupKFold(folds) if groups is not None else
                StratifiedGroupKFold(folds, shuffle=True, random_state=seed) if clips is not None else
                StratifiedKFold(folds, shuffle=True, random_state=seed))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    proba = cross_val_predict(model, x, y_index, cv=splitter, groups=g, method="predict_proba")
    if proba.shape[1] != len(classes):
        raise ValueError("every fold's training part must contain every label; use fewer folds")
    frequencies = np.bincount(y_index) / len(y_index)
    entropy = float(-(frequencies * np.log(frequencies)).sum())
    cross_entropy = float(-np.log(np.clip(proba[np.arange(len(y_index)), y_index], 1e-12, None)).mean())
    return max(0.0, entropy - cross_entropy)


def per_frame_samples(dynamic: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, d) per-frame latents and (B,) clip labels → (B·T, d) rows and (B·T,) labels (each frame
    carries its clip's label), for probing dynamic latents against static labels."""
    if dynamic.dim() != 3 or labels.shape != dynamic.shape[:1]:
        raise ValueError(f"dynamic must be (B, T, d) and labels (B,), got {tuple(dynamic.shape)} and "
                         f"{tuple(labels.shape)}")
    return dynamic.reshape(-1, dynamic.shape[-1]), labels.repeat_interleave(dynamic.shape[1])
