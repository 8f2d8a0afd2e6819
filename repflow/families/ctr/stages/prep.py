"""ctr.prep: a source's interactions and items (:mod:`repflow.families.ctr.tables`) → a global time split →
behaviour histories and item modalities fitted on the training part (:mod:`repflow.families.ctr.features`).

Written (parquet, each file atomically): ``interactions.parquet`` (the source's interactions with their
``split``), ``catalogue.parquet`` (the source's items: titles, genres, years), the feature space
(``users.parquet``, ``items.parquet``, ``space.json``, read back by
:func:`~repflow.families.ctr.features.load_space`) and ``examples.parquet`` (one row per interaction with its
history). The manifest meta records the split's cut times and counts.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import mlflow
import polars as pl

from repflow.families.ctr.features import SPLITS, build_examples, build_feature_space, save_space, time_split
from repflow.families.ctr.tables import read_ctr_source, write_parquet_atomic
from repflow.report import bar_plot, markdown_table
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.ctr.prep")


def _day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.ctr.prep
    tables = read_ctr_source(cfg.source, path=cfg.path, columns=cfg.columns, click_threshold=cfg.click_threshold,
                             genre_separator=cfg.genre_separator, max_skipped_share=cfg.max_skipped_share)
    fractions = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction)
    split, cuts = time_split(tables.interactions, fractions)
    space = build_feature_space(split, tables.items, title_len=cfg.title_len, min_word_count=cfg.min_word_count,
                                year_buckets=cfg.year_buckets, popularity_buckets=cfg.popularity_buckets,
                                click_rate_buckets=cfg.click_rate_buckets)
    examples = build_examples(split, space, cfg.history)
    write_parquet_atomic(split, tmp / "interactions.parquet")
    write_parquet_atomic(tables.items, tmp / "catalogue.parquet")
    write_parquet_atomic(examples, tmp / "examples.parquet")
    save_space(space, tmp)
    counts = {s: examples.filter(pl.col("split") == s) for s in SPLITS}
    rows = [{"split": s, "impressions": len(t), "users": t["user_row"].n_unique(), "items": t["item_row"].n_unique(),
             "click_rate": float(t["label"].mean()) if len(t) else float("nan"),
             "mean_history": float(t["history_len"].mean()) if len(t) else float("nan")} for s, t in counts.items()]
    ctx.meta.update({"source": cfg.source, "origin": tables.origin, "cuts": cuts,
                     "counts": {r["split"]: r["impressions"] for r in rows}, "users": len(space.users),
                     "items": len(space.items), "words": len(space.words), "genres": len(space.genre_names),
                     "history": cfg.history, "skipped": tables.report.manifest() if tables.report else None})
    if tables.report and tables.report.skipped:
        log.warning("ctr.prep: %s", tables.report.describe())
    mlflow.set_tags({"repflow.source": cfg.source, "repflow.source_origin": tables.origin})
    bar_plot(list(SPLITS), {"impressions": [r["impressions"] for r in rows],
                            "clicks": [r["impressions"] * r["click_rate"] for r in rows]},
             tmp / "splits.png", ylabel="interactions", title=f"ctr.prep {cfg.source}: time split")
    log.info("ctr.prep: %s, %d users, %d items; train / val / test %s", tables.origin, len(space.users),
             len(space.items), "/".join(str(r["impressions"]) for r in rows))
    md = (f"- interactions: **{cfg.source}** ({tables.origin}); click = rating ≥ {cfg.click_threshold:g}; global "
          f"time cut: train before {_day(cuts['val_from'])}, val until {_day(cuts['test_from'])}, test after (UTC); "
          f"{len(space.users)} users, {len(space.items)} items, {len(space.words)} title words, "
          f"{len(space.genre_names)} genres; histories of up to {cfg.history} earlier clicks\n\n"
          + markdown_table(rows, floatfmt="{:.3f}"))
    return StageSummary(metrics={f"{r['split']}_impressions": r["impressions"] for r in rows}
                        | {"users": len(space.users), "items": len(space.items)}, markdown=md, plots=["splits.png"])


def load_prepared(folder) -> tuple:
    """(feature space, examples table, history length) of a verified ctr.prep output."""
    from repflow.families.ctr.features import load_space
    from repflow.families.ctr.tables import read_parquet
    from repflow.manifest import read_manifest

    meta = read_manifest(folder, stage="ctr.prep")["meta"]
    return load_space(folder), read_parquet(folder / "examples.parquet"), int(meta["history"])
