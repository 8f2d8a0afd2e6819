"""CTR metrics on numpy arrays (or anything ``np.asarray`` takes): labels 0 / 1, scores any real numbers
(probabilities for logloss).

- :func:`auc`: the probability that a random positive outscores a random negative, ties counted one half
  (Mann–Whitney U from average ranks, O(N log N)); NaN when only one class is present.
- :func:`gauc`: grouped AUC (Zhou et al.'s DIN paper, after Zhu et al. 2017): the AUC of each user's
  impressions, averaged with weights = the user's number of impressions; users whose impressions are all
  clicks or all non-clicks have no AUC and are skipped (the convention), and are counted in ``users_skipped``.
- :func:`logloss`: mean binary cross-entropy in nats, probabilities clipped to [eps, 1 − eps].
- :func:`auc_by_bucket`: AUC within each bucket of a per-impression key (e.g. the item's training popularity).
- :func:`mean_attention`: the mean attention weight of each modality over impressions.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["auc", "gauc", "logloss", "auc_by_bucket", "mean_attention", "ctr_report"]


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    positives = y.sum()
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    rank_sum = _ranks(s)[y == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def auc(labels, scores) -> float:
    """Area under the ROC curve; NaN when ``labels`` hold one class only."""
    return _auc(*_check(labels, scores))


def gauc(labels, scores, groups) -> dict[str, float]:
    """``{"gauc", "users_scored", "users_skipped", "impressions_scored"}``; ``gauc`` is NaN when no user has
    both classes."""
    y, s = _check(labels, scores)
    g = np.asarray(groups).reshape(-1)
    if g.shape != y.shape:
        raise ValueError(f"{y.size} labels but {g.size} group ids")
    order = np.argsort(g, kind="mergesort")
    y, s, g = y[order], s[order], g[order]
    bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1], True])
    total, weight, scored, skipped = 0.0, 0, 0, 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        value = _auc(y[a:b], s[a:b])
        if np.isnan(value):
            skipped += 1
            continue
        total += value * float(b - a)
        weight += int(b - a)
        scored += 1
    return {"gauc": float(total / weight) if weight else float("nan"), "users_scored": scored, "users_skipped": skipped,
            "impressions_scored": weight}


def logloss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (nats); probabilities outside [0, 1] are an error."""
    y, p = _check(labels, probs)
    if (p < 0).any() or (p > 1).any():
        raise ValueError("logloss needs probabilities in [0, 1]")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def auc_by_bucket(labels, scores, buckets) -> list[dict[str, float]]:
    """One row per distinct bucket value (ascending): ``bucket``, ``impressions``, ``click_rate``, ``auc``."""
    y, s = _check(labels, scores)
    b = np.asarray(buckets).reshape(-1)
    if b.shape != y.shape:
        raise ValueError(f"{y.size} labels but {b.size} bucket ids")
    rows = []
    for value in np.unique(b):
        mask = b == value
        rows.append({"bucket": value.item(), "impressions": int(mask.sum()), "click_rate": float(y[mask].mean()),
                     "auc": _auc(y[mask], s[mask])})
    return rows


def mean_attention(attention, modalities: Sequence[str]) -> dict[str, float]:
    """Mean of each column of ``attention`` (N, M) by modality name."""
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(modalities):
        raise ValueError(f"attention must be (N, {len(modalities)}), got shape {a.shape}")
    return {m: float(v) for m, v in zip(modalities, a.mean(axis=0))}


def ctr_report(labels, probs, users) -> dict[str, float]:
    """The headline numbers of one evaluation: ``auc``, ``gauc`` (with its user counts), ``logloss``,
    ``impressions``, ``click_rate``."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    return {"auc": auc(y, probs), **gauc(y, probs, users), "logloss": logloss(y, probs), "impressions": int(y.size),
            "click_rate": float(y.mean()) if y.size else float("nan")}
