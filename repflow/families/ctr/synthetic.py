"""A synthetic CTR task with known structure: the positive control for MARN's claims (benchmarks/marn.py).

What MARN's parts need in order to show, built in by construction:
- **one driving modality per category** (for the attention): each item has a category c; its clicks depend on
  the value its driving modality m(c) carries (one of ``title``, ``genres``, ``year``, ``stats``; ``id`` never
  drives). The item's other modalities carry *noise* values, drawn from a disjoint half of the vocabulary, so
  a modality's own features say whether it is the driver: attention computed per modality can find it.
- **a factor shared across modalities** (for the invariant branch): a latent z (``shared_levels`` values)
  adds its own effect to the click logit and is written into every modality's token of the item, each copy
  replaced by a uniform random level with probability ``shared_noise``: one modality alone gives a noisy z,
  what the modalities have in common gives a better one.
- **cold items**: val and test items are absent from training (their ID is the unseen token), so a model can
  only score them through their modalities, not by memorising the item.

Click logit of user u on item i: ``driver_weight · e[c_i, v_i] + shared_weight · g[z_i] + b_u`` with e, g
and the user biases b standard normal (b scaled by 0.5), v_i the driving modality's value. Histories are
empty (the DIN interest is zero): the task isolates the item representation.

Token of modality m of item i: ``2 + z_im · 2V + w`` (z_im the modality's copy of z_i) with ``w = v_i`` on
the driving modality, ``w = V + n``
(n uniform in 0..V−1) on the others; V = ``values``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from repflow.families.ctr.features import UNKNOWN, CtrTensors, FeatureTensors

__all__ = ["DRIVING_MODALITIES", "SyntheticCtr", "synthetic_ctr"]

DRIVING_MODALITIES = (1, 2, 3, 4)
"""Indices into :data:`repflow.families.ctr.models.MODALITIES` (title, genres, year, stats) a category can be
driven by; category c is driven by ``DRIVING_MODALITIES[c]``."""


@dataclass
class SyntheticCtr:
    """The task: ``features`` (the item and user tables), ``splits`` (train / val / test rows; val and test
    items are cold), ``category`` (R+1,) i64 each item row's category (−1 for the padding row 0),
    ``driver`` (R+1,) i64 the index of its driving modality in ``MODALITIES`` (−1 for row 0), ``shared`` (R+1,)
    i64 its true shared level (−1 for row 0), ``click_prob`` per split (N,) the true click probabilities (the
    best possible scorer)."""

    features: FeatureTensors
    splits: dict[str, CtrTensors]
    category: torch.Tensor
    driver: torch.Tensor
    shared: torch.Tensor
    click_prob: dict[str, np.ndarray]


def synthetic_ctr(seed: int = 0, *, items: int = 1200, users: int = 100, impressions_per_item: int = 12,
                  shared_levels: int = 4, values: int = 6, driver_weight: float = 2.0, shared_weight: float = 1.0,
                  shared_noise: float = 0.5, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> SyntheticCtr:
    """The task drawn from ``seed`` (the same seed, the same task). Items are split by ``fractions`` into
    train / val / test items; each item is shown to ``impressions_per_item`` users drawn uniformly."""
    for name, value in (("items", items), ("users", users), ("impressions_per_item", impressions_per_item),
                        ("shared_levels", shared_levels), ("values", values)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not 0.0 <= shared_noise <= 1.0:
        raise ValueError(f"shared_noise must be in [0, 1], got {shared_noise!r}")
    if len(fractions) != 3 or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 3 positive numbers summing to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    categories = len(DRIVING_MODALITIES)
    category = rng.integers(0, categories, items)
    shared = rng.integers(0, shared_levels, items)
    value = rng.integers(0, values, items)
    tokens = np.empty((items, 1 + categories), dtype=np.int64)
    for slot, modality in enumerate(DRIVING_MODALITIES):
        noise = values + rng.integers(0, values, items)
        copy = np.where(rng.random(items) < shared_noise, rng.integers(0, shared_levels, items), shared)
        tokens[:, modality] = 2 + copy * 2 * values + np.where(category == slot, value, noise)
    vocab = 2 + shared_levels * 2 * values
    effect = rng.standard_normal((categories, values))
    shared_effect = rng.standard_normal(shared_levels)
    user_bias = 0.5 * rng.standard_normal(users)

    n_train, n_val = int(fractions[0] * items), int(fractions[1] * items)
    item_split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (items - n_train - n_val))
    rows = np.arange(1, items + 1)
    item_token = np.where(item_split == "train", rows + 1, UNKNOWN)

    def column(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([[0], x]).astype(np.int64))

    genres = torch.zeros(items + 1, vocab - 2)
    genres[torch.arange(1, items + 1), torch.from_numpy(tokens[:, 2] - 2)] = 1.0
    sizes = {"user_token": users + 2, "item_token": n_train + 2, "word": vocab, "genre": vocab - 2, "year": vocab,
             "popularity": vocab, "click_rate": 3, "items": items + 1, "users": users + 1}
    features = FeatureTensors(column(np.arange(2, users + 2)), column(item_token), column(tokens[:, 1])[:, None],
                              genres, column(tokens[:, 3]), column(tokens[:, 4]), column(np.full(items, 2)), sizes)

    item_of = np.repeat(rows, impressions_per_item)
    user_of = rng.integers(1, users + 1, item_of.size)
    logit = (driver_weight * effect[category[item_of - 1], value[item_of - 1]]
             + shared_weight * shared_effect[shared[item_of - 1]] + user_bias[user_of - 1])
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(item_of.size) < prob).astype(np.float32)
    splits, click_prob = {}, {}
    for name in ("train", "val", "test"):
        keep = item_split[item_of - 1] == name
        n = int(keep.sum())
        splits[name] = CtrTensors(torch.from_numpy(user_of[keep]), torch.from_numpy(item_of[keep]),
                                  torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                                  torch.from_numpy(label[keep]))
        click_prob[name] = prob[keep]
    pad = torch.eye(1, items + 1, dtype=torch.long)[0]
    driver = np.array(DRIVING_MODALITIES)[category]
    return SyntheticCtr(features, splits, column(category) - pad, column(driver) - pad, column(shared) - pad,
                        click_prob)
