"""A tiny interactions table for the CTR family's tests, written by the tests themselves: 24 users, 30 items,
~480 ratings over 60 days with same-second bursts (as in ml-100k), ratings driven by a user's taste for the
item's genre plus item quality, so models have something to learn."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

GENRES = ("Action", "Comedy", "Drama", "Horror")
WORDS = ("night", "day", "return", "the", "of", "love", "city", "dark", "star", "war")
COLUMNS = {"user": "uid", "item": "movie", "rating": "stars", "timestamp": "when", "title": "name",
           "genres": "kinds", "year": "released"}


def tiny_frame(seed: int = 0, users: int = 24, items: int = 30, per_user: int = 20) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    genre_of = rng.integers(0, len(GENRES), items)
    second = rng.integers(0, len(GENRES), items)
    quality = rng.normal(0, 1, items)
    taste = rng.normal(0, 1.5, (users, len(GENRES)))
    titles = [" ".join(rng.choice(WORDS, 2 + i % 3)) + (f" part{i}" if i % 5 == 0 else "") for i in range(items)]
    rows = []
    for u in range(users):
        chosen = rng.choice(items, per_user, replace=False)
        times = 1_000_000 + np.sort(rng.integers(0, 60 * 86400, per_user))
        times[1::4] = times[0::4][:len(times[1::4])]
        for i, t in zip(chosen, np.sort(times)):
            score = taste[u, genre_of[i]] + quality[i] + rng.normal(0, 0.5)
            rating = int(np.clip(np.round(3 + score), 1, 5))
            rows.append({"uid": f"u{u}", "movie": f"m{i}", "stars": rating, "when": int(t),
                         "name": titles[i],
                         "kinds": "|".join(sorted({GENRES[genre_of[i]], GENRES[second[i]]})),
                         "released": 1970 + (i * 7) % 30})
    return pl.DataFrame(rows)


def write_tiny(folder: Path, suffix: str = ".csv", **kw) -> Path:
    frame = tiny_frame(**kw)
    path = folder / f"interactions{suffix}"
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return path
