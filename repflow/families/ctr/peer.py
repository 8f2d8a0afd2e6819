"""The peer baseline: DeepCTR-Torch's DIN (PyPI ``deepctr-torch``, 0.3.0) on the same split and features.

Features it gets, all from the same :class:`~repflow.families.ctr.features.FeatureTensors` our models use:
the user-ID token; for the target item its ID token, year bucket, popularity and click-rate buckets, its first
listed genre (the attention key) and all its genres (mean-pooled, sharing the genre embedding); for each
history item the same five single-valued features (``hist_*``), with the history length as DeepCTR's
``length_name`` so padding is masked. Left out: the title text (DeepCTR has no text encoder and a history
item's title would be a list inside a list) and the history items' full genre lists (likewise; the first genre
stands in for them).

DeepCTR-Torch's own training loop and defaults are used (its Dice attention unit, init std 1e-4, L2 1e-6 on
embeddings), with our embedding size, MLP widths, batch size, learning rate and epochs. Importing it starts a
thread that asks pypi.python.org for a newer version; offline that fails at once and prints one line.
"""
from __future__ import annotations

import sys
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from repflow.families.ctr.features import CtrTensors, FeatureTensors

__all__ = ["PeerResult", "peer_inputs", "train_peer_din", "DEEPCTR_INSTALL"]

DEEPCTR_INSTALL = "pip install deepctr-torch==0.3.0"
_ITEM_FEATURES = ("item", "genre", "year", "popularity", "click_rate")


@dataclass
class PeerResult:
    """``probs`` (N,) click probabilities on the evaluation examples; ``samples_per_s`` the training
    throughput (examples × epochs / wall seconds inside DeepCTR's ``fit``); ``history`` per epoch."""

    probs: np.ndarray
    samples_per_s: float
    history: dict[str, Any]


def _first_genre(features: FeatureTensors) -> torch.Tensor:
    """(R+1,) token of each item's first genre: 0 padding row, 1 no genre, 2 + genre index."""
    has = features.genres.sum(1) > 0
    token = features.genres.argmax(1) + 2
    token = torch.where(has, token, torch.ones_like(token))
    token[0] = 0
    return token


def _all_genres(features: FeatureTensors) -> torch.Tensor:
    """(R+1, max genres per item) genre tokens (2 + index), 0-padded."""
    counts = features.genres.sum(1).long()
    out = torch.zeros(features.genres.shape[0], max(int(counts.max()), 1), dtype=torch.long)
    for r in range(1, features.genres.shape[0]):
        index = torch.nonzero(features.genres[r]).flatten() + 2
        out[r, :len(index)] = index
    return out


def peer_inputs(data: CtrTensors, features: FeatureTensors) -> dict[str, np.ndarray]:
    """DeepCTR's input dict (feature name → int64 array, (N,) or (N, L)) for ``data``; the target's click-rate
    token is the row's own (out-of-fold in training) where ``data`` carries one."""
    tables = {"item": features.item_token, "genre": _first_genre(features), "year": features.year,
              "popularity": features.popularity, "click_rate": features.click_rate}
    x = {"user": features.user_token[data.user]}
    for name in _ITEM_FEATURES:
        x[name] = tables[name][data.item]
        x[f"hist_{name}"] = tables[name][data.history]
    if data.click_rate is not None:
        x["click_rate"] = data.click_rate
    x["genres"] = _all_genres(features)[data.item]
    x["seq_length"] = data.history_len
    return {k: v.numpy().astype(np.int64) for k, v in x.items()}


def _no_version_check() -> None:
    """Make ``import deepctr_torch`` offline. Its ``__init__`` calls ``utils.check_version``, which starts a thread
    asking pypi.python.org for a newer release (no timeout; a network call at run time). That module holds
    nothing else, so a stand-in whose ``check_version`` does nothing is put in its place before the package
    is imported."""
    if "deepctr_torch" in sys.modules or "deepctr_torch.utils" in sys.modules:
        return
    stand_in = types.ModuleType("deepctr_torch.utils", "deepctr_torch's version check, switched off by repflow")
    stand_in.check_version = lambda version: None
    sys.modules["deepctr_torch.utils"] = stand_in


def _columns(features: FeatureTensors, history_len: int, genres_len: int, dim: int) -> list:
    _no_version_check()
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat

    s = features.sizes
    vocab = {"user": s["user_token"], "item": s["item_token"], "genre": s["genre"] + 2, "year": s["year"],
             "popularity": s["popularity"], "click_rate": s["click_rate"]}
    columns = [SparseFeat("user", vocab["user"], embedding_dim=dim)]
    columns += [SparseFeat(name, vocab[name], embedding_dim=dim) for name in _ITEM_FEATURES]
    columns.append(VarLenSparseFeat(SparseFeat("genres", vocab["genre"], embedding_dim=dim, embedding_name="genre"),
                                    maxlen=genres_len, combiner="mean"))
    columns += [VarLenSparseFeat(SparseFeat(f"hist_{name}", vocab[name], embedding_dim=dim, embedding_name=name),
                                 maxlen=history_len, length_name="seq_length") for name in _ITEM_FEATURES]
    return columns


def train_peer_din(train: CtrTensors, evaluate: CtrTensors, features: FeatureTensors, *, epochs: int,
                   batch_size: int = 256, lr: float = 1e-3, seed: int = 0, dim: int = 16,
                   dnn_hidden_units: tuple[int, ...] = (64, 32), att_hidden_size: tuple[int, ...] = (64, 16),
                   validate: CtrTensors | None = None) -> PeerResult:
    """Train DeepCTR-Torch's DIN on ``train`` and score ``evaluate`` after the last epoch, or, with
    ``validate``, after the epoch with the best validation AUC (one ``fit`` call per epoch; the optimiser
    state carries over). ``history``: ``loss`` per epoch, and ``val_auc`` / ``best_epoch`` with ``validate``.
    Without the package this is an ImportError saying how to install it."""
    _no_version_check()
    try:
        from deepctr_torch.models import DIN
    except ImportError as exc:
        raise ImportError(f"the DeepCTR-Torch peer needs deepctr-torch ({DEEPCTR_INSTALL}): {exc}") from None
    from repflow.families.ctr.metrics import auc

    history_len = train.history.shape[1]
    for name, part in (("evaluation", evaluate), ("validation", validate)):
        if part is not None and part.history.shape[1] != history_len:
            raise ValueError(f"train histories have length {history_len}, {name} ones {part.history.shape[1]}")
    x_train, x_eval = peer_inputs(train, features), peer_inputs(evaluate, features)
    x_val = peer_inputs(validate, features) if validate is not None else None
    columns = _columns(features, history_len, x_train["genres"].shape[1], dim)
    torch.manual_seed(seed)
    model = DIN(columns, list(_ITEM_FEATURES), dnn_hidden_units=tuple(dnn_hidden_units),
                att_hidden_size=tuple(att_hidden_size), seed=seed, device="cpu")
    model.compile(torch.optim.Adam(model.parameters(), lr=lr), "binary_crossentropy")
    torch.manual_seed(seed)
    y_train = train.label.numpy().astype(np.float32)
    elapsed, log = 0.0, {"loss": [], "val_auc": []}
    best, probs = -1.0, None
    for epoch in range(epochs):
        started = time.perf_counter()
        fitted = model.fit(x_train, y_train, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
        elapsed += time.perf_counter() - started
        log["loss"] += fitted.history["loss"]
        if x_val is not None:
            log["val_auc"].append(auc(validate.label.numpy(), model.predict(x_val, batch_size=4096).reshape(-1)))
        if x_val is None and epoch < epochs - 1:
            continue
        if x_val is None or log["val_auc"][-1] > best:
            best = log["val_auc"][-1] if x_val is not None else best
            log["best_epoch"] = epoch + 1
            probs = model.predict(x_eval, batch_size=4096).reshape(-1)
    return PeerResult(probs.astype(np.float64), len(train) * epochs / max(elapsed, 1e-9), log)
