"""From a source's tables (:mod:`repflow.families.ctr.tables`) to what the CTR models consume: a time split,
each interaction's behaviour history, and the item modalities, all indexed by integer rows.

Choices, and why:
- **Split by one global time cut** (:func:`time_split`): the interactions are ordered by timestamp and cut at
  the ``train`` and ``train + val`` quantiles (default 80 / 10 / 10). Train holds every interaction strictly
  before the first cut, val those before the second, test the rest, so no training interaction happens at or
  after any val / test one (a per-user leave-last-out split would train on 1998 clicks to predict 1997 ones).
  The price: ml-100k users are active in bursts, so many test users have no training interactions (their ID
  is the "unseen" token; their history still carries their earlier clicks).
- **History** (:func:`build_examples`): the user's most recent clicked items with a timestamp *strictly*
  before the interaction's (ml-100k users rate many movies within the same second; those are neither history
  nor future), most recent first, at most ``history_len``; a val / test interaction's history may hold
  clicks from earlier splits, as it would online.
- **Item modalities** (:class:`FeatureSpace`), learned only from what training can know:
  ``id`` (train items get their own token, others share the unseen token), ``title`` (lower-cased word tokens,
  ``\\w+``; the vocabulary is the words of titles of items in the *training* interactions seen at least
  ``min_word_count`` times, others are the OOV token; at most ``title_len`` tokens, padded), ``genres``
  (multi-hot over the catalogue's genres: metadata, not interactions), ``year`` (quantile buckets of the
  catalogue's release years; unknown years have their own token), ``stats`` (two buckets from training
  interactions only: log2 of the item's impressions, and its click rate smoothed toward the training mean
  with :data:`CTR_PRIOR_IMPRESSIONS` pseudo-impressions; items absent from training have their own token).
  The item table's click-rate bucket uses every training interaction; val / test labels never enter it.
- **Out-of-fold click rate per example** (:func:`build_examples`, column ``click_rate``): a training row's own
  label must not enter the click-rate bucket the model sees for its target item, or the model learns to trust
  a statistic that partly *is* the label (target leakage). Training rows are split into ``folds`` folds
  (seeded permutation, column ``fold``); a row's bucket is the smoothed rate of its item over the *other*
  folds' training rows (prior: the other folds' mean rate; no such rows → the unseen token). Val / test rows
  get the item table's full-training bucket. History items keep the item table's bucket (their labels are
  not the row's).

Index conventions: user and item *rows* start at 1 (0 is padding); every token vocabulary reserves 0 for
padding and 1 for unknown / unseen, so real tokens start at 2.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import torch

from repflow.families.ctr.tables import SourceError, read_parquet, write_parquet_atomic
from repflow.manifest import atomic_write_text
from repflow.progress import progress

__all__ = ["SPLITS", "PAD", "UNKNOWN", "time_split", "FeatureSpace", "FeatureTensors", "CtrTensors",
           "build_feature_space", "build_examples", "examples_to_tensors", "user_row", "user_request",
           "tokenize_title", "save_space", "load_space", "UnknownUser", "CTR_PRIOR_IMPRESSIONS",
           "CLICK_RATE_FOLDS", "click_rate_token", "smoothed_click_rate"]

SPLITS = ("train", "val", "test")
PAD, UNKNOWN = 0, 1
CTR_PRIOR_IMPRESSIONS = 10.0
"""Pseudo-impressions at the training mean click rate added to every item's count before its rate is
bucketed, so an item seen twice does not land in the 0 % or 100 % bucket."""
CLICK_RATE_FOLDS = 5
"""Folds of the out-of-fold click-rate statistic of training rows (:func:`build_examples`)."""
_WORD = re.compile(r"\w+")


class UnknownUser(SourceError, KeyError):
    """A user id the feature space (and so the model) has never seen."""

    def __str__(self) -> str:
        return str(self.args[0])


def time_split(interactions: pl.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[pl.DataFrame,
                                                                                                   dict[str, int]]:
    """``interactions`` with a ``split`` column (train / val / test) by a global time cut, and the cuts
    ``{"val_from": t1, "test_from": t2}`` (seconds): train is t < t1, val t1 <= t < t2, test t >= t2.
    ``fractions`` (3 positive numbers summing to 1) place t1 and t2 at those quantiles of the timestamps; a
    split that comes out empty (too few distinct timestamps) is an error."""
    if len(fractions) != 3 or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be 3 positive numbers summing to 1, got {list(fractions)}")
    ts = np.sort(interactions["timestamp"].to_numpy())
    if len(ts) == 0:
        raise ValueError("no interactions to split")
    t1 = int(ts[min(int(fractions[0] * len(ts)), len(ts) - 1)])
    t2 = int(ts[min(int((fractions[0] + fractions[1]) * len(ts)), len(ts) - 1)])
    out = interactions.with_columns(
        pl.when(pl.col("timestamp") < t1).then(pl.lit("train"))
        .when(pl.col("timestamp") < t2).then(pl.lit("val")).otherwise(pl.lit("test")).alias("split"))
    counts = dict(out.group_by("split").len().iter_rows())
    empty = [s for s in SPLITS if not counts.get(s)]
    if empty:
        raise ValueError(f"split {empty[0]!r} is empty with fractions {list(fractions)} over {len(ts)} interactions "
                         f"({len(np.unique(ts))} distinct timestamps); use more data or other fractions")
    return out, {"val_from": t1, "test_from": t2}


def tokenize_title(title: str) -> list[str]:
    """Lower-cased word tokens of a title (``\\w+``, so 'Véronique' stays one word)."""
    return _WORD.findall(title.lower())


def _bucketize(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Token 2 + the index of the bucket (by ``edges``, ascending) each value falls in."""
    return 2 + np.searchsorted(edges, values, side="right")


@dataclass
class FeatureTensors:
    """The space as tensors indexed by row (row 0 = padding, all zeros). Items: ``item_token`` (R+1,),
    ``title`` (R+1, T) word tokens, ``genres`` (R+1, G) float multi-hot, ``year`` / ``popularity`` /
    ``click_rate`` (R+1,) bucket tokens. Users: ``user_token`` (U+1,). ``sizes`` are the vocabulary sizes
    (embedding table rows) by name."""

    user_token: torch.Tensor
    item_token: torch.Tensor
    title: torch.Tensor
    genres: torch.Tensor
    year: torch.Tensor
    popularity: torch.Tensor
    click_rate: torch.Tensor
    sizes: dict[str, int]


@dataclass
class FeatureSpace:
    """Vocabularies and item features fitted on training data.

    ``users``: user str, row i64 (1..U), token i64. ``items``: item str, row i64 (1..R), token, title
    (list[i64] of ``title_len`` word tokens), genres (list[i64] of genre indices), year, popularity,
    click_rate (bucket tokens). ``words`` / ``genre_names``: vocabularies (token t ↔ ``words[t - 2]``;
    genre index g ↔ ``genre_names[g]``). ``config``: how it was built, and the bucket edges."""

    users: pl.DataFrame
    items: pl.DataFrame
    words: list[str]
    genre_names: list[str]
    config: dict[str, Any]

    def tensors(self) -> FeatureTensors:
        items, users = self.items.sort("row"), self.users.sort("row")
        rows = items.height + 1

        def column(frame: pl.DataFrame, name: str) -> torch.Tensor:
            return torch.cat([torch.zeros(1, dtype=torch.long), torch.from_numpy(frame[name].to_numpy().copy())])

        title = torch.zeros(rows, self.config["title_len"], dtype=torch.long)
        title[1:] = torch.from_numpy(np.array(items["title"].to_list(), dtype=np.int64).reshape(items.height, -1))
        genres = torch.zeros(rows, max(len(self.genre_names), 1))
        for r, gs in enumerate(items["genres"].to_list(), start=1):
            genres[r, gs] = 1.0
        sizes = {"user_token": int(users["token"].max()) + 1, "item_token": int(items["token"].max()) + 1,
                 "word": len(self.words) + 2, "genre": genres.shape[1],
                 "year": len(self.config["year_edges"]) + 3, "popularity": self.config["popularity_buckets"] + 2,
                 "click_rate": self.config["click_rate_buckets"] + 2, "items": rows, "users": users.height + 1}
        return FeatureTensors(column(users, "token"), column(items, "token"), title, genres, column(items, "year"),
                              column(items, "popularity"), column(items, "click_rate"), sizes)


def build_feature_space(interactions: pl.DataFrame, items: pl.DataFrame, *, title_len: int = 12,
                        min_word_count: int = 2, year_buckets: int = 8, popularity_buckets: int = 8,
                        click_rate_buckets: int = 10) -> FeatureSpace:
    """Fit the space on the ``train`` rows of a :func:`time_split` table; every user of ``interactions`` and
    every item of ``items`` gets a row. Bucket counts are the numbers of real (non-pad, non-unknown) tokens."""
    for name, value in (("title_len", title_len), ("min_word_count", min_word_count), ("year_buckets", year_buckets),
                        ("popularity_buckets", popularity_buckets), ("click_rate_buckets", click_rate_buckets)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if "split" not in interactions.columns:
        raise ValueError("interactions need a 'split' column (time_split adds it)")
    train = interactions.filter(pl.col("split") == "train")
    unknown_items = interactions.select("item").unique().join(items, on="item", how="anti")
    if unknown_items.height:
        raise SourceError(f"item {unknown_items['item'][0]!r} has interactions but no row in the items table")

    users = interactions.select("user").unique(maintain_order=True).sort("user")
    users = users.with_row_index("row", offset=1).with_columns(pl.col("row").cast(pl.Int64))
    users = users.with_columns(pl.col("user").is_in(train["user"].unique().implode()).alias("seen")
                               ).with_columns(_tokens_where("seen")).drop("seen")

    stats = train.group_by("item").agg(pl.len().alias("impressions"), pl.col("click").sum().alias("clicks"))
    items = items.sort("item").with_row_index("row", offset=1).with_columns(pl.col("row").cast(pl.Int64))
    items = items.join(stats, on="item", how="left").with_columns(pl.col("impressions").fill_null(0),
                                                                  pl.col("clicks").fill_null(0)).sort("row")
    items = items.with_columns((pl.col("impressions") > 0).alias("seen")).with_columns(_tokens_where("seen"))

    train_item_ids = set(train["item"].unique().to_list())
    counts: dict[str, int] = {}
    for item, title in zip(items["item"].to_list(), items["title"].to_list()):
        if item in train_item_ids:
            for word in tokenize_title(title):
                counts[word] = counts.get(word, 0) + 1
    words = sorted(w for w, c in counts.items() if c >= min_word_count)
    word_token = {w: t for t, w in enumerate(words, start=2)}
    titles = [([word_token.get(w, UNKNOWN) for w in tokenize_title(t)][:title_len] + [PAD] * title_len)[:title_len]
              for t in items["title"].to_list()]

    genre_names = sorted({g for gs in items["genres"].to_list() for g in gs})
    genre_index = {g: i for i, g in enumerate(genre_names)}
    genres = [sorted({genre_index[g] for g in gs}) for gs in items["genres"].to_list()]

    years = items["year"].to_numpy(allow_copy=True).astype(float)
    known = years[~np.isnan(years)]
    year_edges = np.unique(np.quantile(known, np.linspace(0, 1, year_buckets + 1)[1:-1])) if len(known) else \
        np.zeros(0)
    year_token = np.where(np.isnan(years), UNKNOWN, _bucketize(np.nan_to_num(years), year_edges))

    impressions = items["impressions"].to_numpy()
    clicks = items["clicks"].to_numpy()
    mean_rate = float(train["click"].mean()) if train.height else 0.5
    popularity = np.where(impressions > 0, 2 + np.minimum(np.floor(np.log2(np.maximum(impressions, 1))),
                                                          popularity_buckets - 1), UNKNOWN)
    click_rate = click_rate_token(clicks, impressions, mean_rate, click_rate_buckets)
    items = items.select("item", "row", "token").with_columns(
        pl.Series("title", titles, dtype=pl.List(pl.Int64)), pl.Series("genres", genres, dtype=pl.List(pl.Int64)),
        pl.Series("year", year_token.astype(np.int64)), pl.Series("popularity", popularity.astype(np.int64)),
        pl.Series("click_rate", click_rate.astype(np.int64)), pl.Series("impressions", impressions.astype(np.int64)))
    config = {"title_len": title_len, "min_word_count": min_word_count, "year_edges": [float(e) for e in year_edges],
              "popularity_buckets": popularity_buckets, "click_rate_buckets": click_rate_buckets,
              "train_click_rate": mean_rate, "ctr_prior_impressions": CTR_PRIOR_IMPRESSIONS}
    return FeatureSpace(users.select("user", "row", "token"), items, words, genre_names, config)


def smoothed_click_rate(clicks: np.ndarray, impressions: np.ndarray, prior_rate: float | np.ndarray
                        ) -> np.ndarray:
    """Click rates in [0, 1] smoothed toward ``prior_rate`` with :data:`CTR_PRIOR_IMPRESSIONS`
    pseudo-impressions (``prior_rate`` itself where ``impressions`` is 0)."""
    clicks, impressions = np.asarray(clicks, dtype=float), np.asarray(impressions, dtype=float)
    return (clicks + CTR_PRIOR_IMPRESSIONS * prior_rate) / (impressions + CTR_PRIOR_IMPRESSIONS)


def click_rate_token(clicks: np.ndarray, impressions: np.ndarray, prior_rate: float | np.ndarray,
                     buckets: int) -> np.ndarray:
    """Click-rate bucket tokens (same shape as ``clicks``): :func:`smoothed_click_rate` cut into ``buckets``
    equal-width buckets of [0, 1] (tokens 2 .. buckets + 1); UNKNOWN where ``impressions`` is 0."""
    impressions = np.asarray(impressions, dtype=float)
    rate = smoothed_click_rate(clicks, impressions, prior_rate)
    return np.where(impressions > 0, 2 + np.minimum(np.floor(rate * buckets), buckets - 1), UNKNOWN).astype(np.int64)


def _out_of_fold_click_rate(examples: pl.DataFrame, space: FeatureSpace, folds: int, seed: int
                            ) -> tuple[np.ndarray, np.ndarray]:
    """(fold (N,) i64, −1 outside train; click-rate token (N,) i64) for the rows of ``examples`` (see the
    module doc): training rows from the other folds' training rows of their item, others from the item table."""
    is_train = (examples["split"] == "train").to_numpy()
    items = examples["item_row"].to_numpy().astype(np.int64)
    labels = examples["click"].to_numpy().astype(float)
    fold = np.full(len(examples), -1, dtype=np.int64)
    train_index = np.flatnonzero(is_train)
    fold[train_index] = np.random.default_rng(seed).permutation(len(train_index)) % folds
    rows = int(space.items["row"].max()) + 1 if space.items.height else 1
    by_row = np.full(rows, UNKNOWN, dtype=np.int64)
    by_row[space.items["row"].to_numpy()] = space.items["click_rate"].to_numpy()
    token = by_row[items]
    shown = np.zeros((rows, folds))
    clicked = np.zeros((rows, folds))
    np.add.at(shown, (items[train_index], fold[train_index]), 1.0)
    np.add.at(clicked, (items[train_index], fold[train_index]), labels[train_index])
    i, f = items[train_index], fold[train_index]
    other_shown = shown.sum(1)[i] - shown[i, f]
    other_clicked = clicked.sum(1)[i] - clicked[i, f]
    fold_shown, fold_clicked = shown.sum(0), clicked.sum(0)
    other_mean = (fold_clicked.sum() - fold_clicked[f]) / np.maximum(fold_shown.sum() - fold_shown[f], 1.0)
    token[train_index] = click_rate_token(other_clicked, other_shown, other_mean,
                                          space.config["click_rate_buckets"])
    return fold, token


def _tokens_where(seen: str) -> pl.Expr:
    """ID tokens: 2, 3, ... in row order for rows where ``seen``, UNKNOWN elsewhere."""
    return (pl.when(pl.col(seen)).then(pl.col(seen).cast(pl.Int64).cum_sum() + 1)
            .otherwise(pl.lit(UNKNOWN, dtype=pl.Int64)).alias("token"))


def build_examples(interactions: pl.DataFrame, space: FeatureSpace, history_len: int = 20, *,
                   folds: int = CLICK_RATE_FOLDS, seed: int = 0) -> pl.DataFrame:
    """One row per interaction: ``user_row``, ``item_row``, ``label`` (the click), ``split``, ``timestamp``,
    ``history`` (list[i64], item rows of the user's latest clicks strictly before ``timestamp``, most recent
    first, at most ``history_len``), ``history_len``, ``fold`` (the training row's out-of-fold fold, −1
    elsewhere) and ``click_rate`` (the target item's out-of-fold click-rate token for a training row, the
    item table's otherwise; see the module doc; ``folds`` ≥ 2, fold assignment from ``seed``). Ordered by
    (timestamp, user row, item row)."""
    if isinstance(history_len, bool) or not isinstance(history_len, int) or history_len < 1:
        raise ValueError(f"history_len must be an int >= 1, got {history_len!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an int >= 2, got {folds!r}")
    table = (interactions.join(space.users.select("user", pl.col("row").alias("user_row")), on="user", how="left")
             .join(space.items.select("item", pl.col("row").alias("item_row")), on="item", how="left"))
    for key in ("user", "item"):
        missing = table.filter(pl.col(f"{key}_row").is_null())
        if missing.height:
            raise SourceError(f"{key} {missing[key][0]!r} is not in the feature space")
    table = table.sort("user_row", "timestamp", "item_row")
    users = table["user_row"].to_numpy()
    items = table["item_row"].to_numpy()
    times = table["timestamp"].to_numpy()
    clicks = table["click"].to_numpy()
    histories: list[list[int]] = [[] for _ in range(len(table))]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    for a, b in progress(zip(starts[:-1], starts[1:]), desc="histories", unit="user", total=len(starts) - 1):
        clicked: list[int] = []
        i = a
        while i < b:
            j = i
            while j < b and times[j] == times[i]:
                j += 1
            recent = clicked[-history_len:][::-1]
            for k in range(i, j):
                histories[k] = recent
            clicked.extend(int(items[k]) for k in range(i, j) if clicks[k])
            i = j
    out = table.select("user_row", "item_row", "click", "split", "timestamp").with_columns(
        pl.Series("history", histories, dtype=pl.List(pl.Int64)))
    out = out.with_columns(pl.col("history").list.len().cast(pl.Int64).alias("history_len")).sort(
        "timestamp", "user_row", "item_row")
    fold, token = _out_of_fold_click_rate(out, space, folds, seed)
    return out.rename({"click": "label"}).with_columns(pl.Series("fold", fold), pl.Series("click_rate", token))


@dataclass
class CtrTensors:
    """A batch of examples: ``user`` (N,) user rows, ``item`` (N,) target item rows, ``history`` (N, H) item
    rows (0 = padding, most recent first), ``history_len`` (N,), ``label`` (N,) float 0 / 1 (NaN for a
    :func:`user_request`, which has no labels), ``click_rate`` (N,) the target item's click-rate token for
    this row (out-of-fold for training rows), or None: the item table's."""

    user: torch.Tensor
    item: torch.Tensor
    history: torch.Tensor
    history_len: torch.Tensor
    label: torch.Tensor
    click_rate: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def subset(self, index: torch.Tensor | slice) -> CtrTensors:
        return CtrTensors(self.user[index], self.item[index], self.history[index], self.history_len[index],
                          self.label[index], None if self.click_rate is None else self.click_rate[index])


def _pad_histories(histories: list[list[int]], history_len: int) -> torch.Tensor:
    out = np.zeros((len(histories), history_len), dtype=np.int64)
    for i, h in enumerate(histories):
        out[i, :len(h)] = h[:history_len]
    return torch.from_numpy(out)


def examples_to_tensors(examples: pl.DataFrame, split: str | None = None, history_len: int | None = None
                        ) -> CtrTensors:
    """The rows of ``split`` (all rows if None) of a :func:`build_examples` table as tensors; ``history_len``
    defaults to the longest history present (at least 1)."""
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
        examples = examples.filter(pl.col("split") == split)
    histories = examples["history"].to_list()
    h = history_len or max([len(x) for x in histories] + [1])
    return CtrTensors(torch.from_numpy(examples["user_row"].to_numpy().astype(np.int64)),
                      torch.from_numpy(examples["item_row"].to_numpy().astype(np.int64)),
                      _pad_histories(histories, h),
                      torch.from_numpy(np.minimum(examples["history_len"].to_numpy(), h).astype(np.int64)),
                      torch.from_numpy(examples["label"].to_numpy().astype(np.float32)),
                      torch.from_numpy(examples["click_rate"].to_numpy().astype(np.int64))
                      if "click_rate" in examples.columns else None)


def user_row(space: FeatureSpace, user: str | int) -> int:
    """The row of ``user`` (its id as in the source; an int is read as its string); :class:`UnknownUser` when
    the space has no such user."""
    match = space.users.filter(pl.col("user") == str(user))
    if match.height == 0:
        sample = space.users["user"].head(5).to_list()
        raise UnknownUser(f"user {str(user)!r} is unknown to the model ({space.users.height} users, e.g. {sample})")
    return int(match["row"][0])


def user_request(space: FeatureSpace, interactions: pl.DataFrame, user: str | int, *, history_len: int = 20,
                 exclude_seen: bool = True) -> CtrTensors:
    """Everything needed to score items for ``user`` now: one row per candidate item (every catalogue item, less
    those the user already interacted with when ``exclude_seen``), each with the user's latest clicks in
    ``interactions`` as history (same order as :func:`build_examples`: most recent first, ties by descending
    row); ``item`` holds the candidates' rows (map back with ``space.items``)."""
    row = user_row(space, user)
    mine = interactions.filter(pl.col("user") == str(user)).join(space.items.select("item", "row"), on="item",
                                                                 how="inner")
    clicked = mine.filter(pl.col("click") == 1).sort("timestamp", "row", descending=True)["row"].to_list()
    seen = set(mine["row"].to_list()) if exclude_seen else set()
    candidates = [r for r in space.items["row"].sort().to_list() if r not in seen]
    n = len(candidates)
    history = _pad_histories([clicked[:history_len]], history_len).expand(n, history_len).clone()
    return CtrTensors(torch.full((n,), row, dtype=torch.long), torch.tensor(candidates, dtype=torch.long), history,
                      torch.full((n,), min(len(clicked), history_len), dtype=torch.long),
                      torch.full((n,), float("nan")))


_SPACE_FILES = ("users.parquet", "items.parquet", "space.json")


def save_space(space: FeatureSpace, folder: str | Path) -> Path:
    """Write the space to ``folder`` (users.parquet, items.parquet, space.json), each file atomically."""
    folder = Path(folder)
    write_parquet_atomic(space.users, folder / "users.parquet")
    write_parquet_atomic(space.items, folder / "items.parquet")
    atomic_write_text(folder / "space.json", json.dumps({"words": space.words, "genre_names": space.genre_names,
                                                         "config": space.config}, indent=1))
    return folder


def load_space(folder: str | Path) -> FeatureSpace:
    """A space written by :func:`save_space`; a missing file or column is a SourceError naming it."""
    folder = Path(folder)
    missing = [f for f in _SPACE_FILES if not (folder / f).is_file()]
    if missing:
        raise SourceError(f"{folder}: not a CTR feature space, {missing[0]} is missing")
    users = read_parquet(folder / "users.parquet", {"user": pl.String, "row": pl.Int64, "token": pl.Int64})
    items = read_parquet(folder / "items.parquet", {c: pl.Int64 for c in ("row", "token", "year", "popularity",
                                                                          "click_rate")})
    meta = json.loads((folder / "space.json").read_text())
    return FeatureSpace(users, items, meta["words"], meta["genre_names"], meta["config"])
