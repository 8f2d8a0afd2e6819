"""The CTR family's metrics against scikit-learn on random data (with ties), GAUC's skip-one-class-users
convention, per-bucket AUC and the attention summary."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from repflow.families.ctr.metrics import auc, auc_by_bucket, ctr_report, gauc, logloss, mean_attention


def random_scores(seed: int, n: int = 2000):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = np.clip(np.round(0.5 + 0.2 * (labels - 0.5) + rng.normal(0, 0.25, n), 2), 0.01, 0.99)
    return labels, probs, rng.integers(0, 40, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_logloss_match_sklearn(seed):
    labels, probs, _ = random_scores(seed)
    assert len(np.unique(probs)) < len(probs)
    assert auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-9)


def test_gauc_is_the_impression_weighted_mean_of_per_user_auc():
    labels, probs, users = random_scores(3)
    labels[users == 5] = 1
    labels[users == 7] = 0
    expected, weights = [], []
    for u in np.unique(users):
        mask = users == u
        if len(np.unique(labels[mask])) == 2:
            expected.append(roc_auc_score(labels[mask], probs[mask]))
            weights.append(mask.sum())
    result = gauc(labels, probs, users)
    assert result["gauc"] == pytest.approx(np.average(expected, weights=weights), abs=1e-12)
    assert result["users_skipped"] == 2 and result["users_scored"] == len(np.unique(users)) - 2
    assert result["impressions_scored"] == int(np.sum(weights))


def test_auc_by_bucket_and_report():
    labels, probs, users = random_scores(4)
    buckets = users % 3
    rows = auc_by_bucket(labels, probs, buckets)
    assert [r["bucket"] for r in rows] == [0, 1, 2]
    for r in rows:
        mask = buckets == r["bucket"]
        assert r["auc"] == pytest.approx(roc_auc_score(labels[mask], probs[mask]), abs=1e-12)
        assert r["impressions"] == mask.sum()
    report = ctr_report(labels, probs, users)
    assert report["auc"] == pytest.approx(roc_auc_score(labels, probs)) and report["impressions"] == len(labels)


def test_degenerate_and_bad_inputs():
    assert np.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert np.isnan(gauc([1, 0], [0.1, 0.2], [0, 1])["gauc"])
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="probabilities in"):
        logloss([0, 1], [0.5, 1.5])


def test_mean_attention_by_modality():
    weights = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    assert mean_attention(weights, ("id", "title", "genres")) == pytest.approx(
        {"id": 0.3, "title": 0.35, "genres": 0.35})
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        mean_attention(weights, ("id", "title"))
