"""The synthetic CTR task (the positive control of benchmarks/marn.py): its structure holds by construction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from repflow.families.ctr.features import UNKNOWN
from repflow.families.ctr.metrics import auc
from repflow.families.ctr.models import build_ctr_model
from repflow.families.ctr.synthetic import DRIVING_MODALITIES, synthetic_ctr

VALUES = 3


def _tokens(task) -> np.ndarray:
    """(R+1, 5) the item's token in each modality (id, title, genres, year, stats)."""
    f = task.features
    genre = f.genres.argmax(1) + 2
    genre[0] = 0
    return torch.stack([f.item_token, f.title[:, 0], genre, f.year, f.popularity], 1).numpy()


def test_same_seed_same_task():
    a, b, c = (synthetic_ctr(s, items=60, users=10, values=VALUES) for s in (0, 0, 1))
    assert torch.equal(a.splits["train"].label, b.splits["train"].label) and torch.equal(a.driver, b.driver)
    assert not torch.equal(a.features.title, c.features.title)


def test_driver_informative_others_noise_and_a_shared_factor_in_every_modality():
    task = synthetic_ctr(3, items=200, users=20, values=VALUES, shared_levels=4, shared_noise=0.0)
    tokens = _tokens(task)[1:, list(DRIVING_MODALITIES)] - 2
    within, shared = tokens % (2 * VALUES), tokens // (2 * VALUES)
    driver_slot = task.category[1:].numpy()
    is_driver = np.arange(len(DRIVING_MODALITIES))[None, :] == driver_slot[:, None]
    assert (within[is_driver] < VALUES).all() and (within[~is_driver] >= VALUES).all()
    assert (shared == shared[:, :1]).all() and len(np.unique(shared)) == 4
    assert (task.driver[1:].numpy() == np.array(DRIVING_MODALITIES)[driver_slot]).all()
    assert task.category[0] == -1 and task.driver[0] == -1
    assert (shared[:, 0] == task.shared[1:].numpy()).all()
    noisy = synthetic_ctr(3, items=400, users=20, values=VALUES, shared_levels=4, shared_noise=0.5)
    agree = (_tokens(noisy)[1:, list(DRIVING_MODALITIES)] - 2) // (2 * VALUES) == noisy.shared[1:, None].numpy()
    assert 0.55 < agree.mean() < 0.75  # kept with probability 0.5, redrawn to the same level with 0.5 · 1/4


def test_clicks_depend_on_the_driver_and_shared_factor_only():
    """Items that agree on category, driving value and true shared level have the same click probability for a
    user, whatever their noise tokens and noisy copies of the level; val / test items are cold."""
    task = synthetic_ctr(1, items=300, users=5, values=VALUES)
    tokens = _tokens(task)
    for name in ("train", "test"):
        split, prob = task.splits[name], task.click_prob[name]
        slot = task.category[split.item].numpy()
        driving = tokens[split.item.numpy(), np.array(DRIVING_MODALITIES)[slot]]
        key = np.stack([split.user.numpy(), slot, (driving - 2) % (2 * VALUES), task.shared[split.item].numpy()], 1)
        groups: dict[tuple, float] = {}
        for k, p in zip(map(tuple, key), prob):
            assert np.isclose(groups.setdefault(k, p), p)
    cold = torch.cat([task.splits["val"].item, task.splits["test"].item])
    assert (task.features.item_token[cold] == UNKNOWN).all()
    assert (task.features.item_token[task.splits["train"].item] > UNKNOWN).all()
    assert auc(task.splits["test"].label.numpy(), task.click_prob["test"]) > 0.75


def test_every_model_runs_on_the_task():
    task = synthetic_ctr(0, items=40, users=5)
    model = build_ctr_model("marn", task.features, dim=4, user_dim=4, attention_hidden=4, hidden=(8,))
    test = task.splits["test"]
    out = model(test.user, test.item, test.history)
    assert out.logits.shape == (len(test),) and out.modality_attention.shape == (len(test), 5)


@pytest.mark.parametrize("bad", [{"items": 0}, {"values": True}, {"fractions": (0.5, 0.5, 0.5)},
                                 {"shared_noise": 1.5}])
def test_bad_sizes_name_the_key(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        synthetic_ctr(0, **bad)
