"""The CTR family's sources, read into two polars tables with fixed columns; nothing is downloaded.

Sources (:data:`CTR_SOURCES`):
- ``movielens``: MovieLens-100K as the ``recbole`` wheel ships it (``recbole/dataset_example/ml-100k``, tab-
  separated with typed headers such as ``user_id:token``). Install it with ``pip install --no-deps
  recbole==1.2.1``; the files are read, recbole is never imported (it needs an old ray). 100,000 ratings
  1–5 of 1,682 movies by 943 users with a timestamp; each movie's title, release year and genres.
- ``table``: the user's own interactions, one parquet or CSV file whose columns are mapped by a dict
  ``{role: column}``: ``user``, ``item``, ``timestamp`` and one of ``rating`` / ``click`` are required;
  ``title``, ``genres`` (one string, genres separated by ``genre_separator``) and ``year`` are optional.

The tables (:data:`INTERACTION_COLUMNS`, :data:`ITEM_COLUMNS`):
- interactions: ``user`` str, ``item`` str, ``rating`` f64 (null when the source has clicks only), ``click``
  i8 (1 where rating >= ``click_threshold``, the usual MovieLens CTR rule: 4 gives 55% positives),
  ``timestamp`` i64 (seconds; a datetime column becomes epoch seconds).
- items: ``item`` str, ``title`` str ('' when unknown), ``genres`` list[str], ``year`` i32 (null when unknown:
  ml-100k has two movies with a year of 'V' / 'unkonwn').

Every item an interaction names has a row in the items table. Both are written with
:func:`write_parquet_atomic`, so a reader never sees half a file.
"""
from __future__ import annotations

import importlib.util
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import polars as pl

from repflow.sources import MAX_SKIPPED_SHARE, SkipReport, SourceError

__all__ = ["CtrTables", "SourceError", "read_movielens", "read_interaction_table", "read_ctr_source",
           "movielens_folder", "write_parquet_atomic", "read_parquet", "CTR_SOURCES", "REQUIRED_ROLES",
           "OPTIONAL_ROLES", "INTERACTION_COLUMNS", "ITEM_COLUMNS", "CLICK_THRESHOLD", "RECBOLE_INSTALL"]

CTR_SOURCES = ("movielens", "table")
REQUIRED_ROLES = ("user", "item", "timestamp")
OPTIONAL_ROLES = ("rating", "click", "title", "genres", "year")
INTERACTION_COLUMNS = {"user": pl.String, "item": pl.String, "rating": pl.Float64, "click": pl.Int8,
                       "timestamp": pl.Int64}
ITEM_COLUMNS = {"item": pl.String, "title": pl.String, "genres": pl.List(pl.String), "year": pl.Int32}
CLICK_THRESHOLD = 4.0
RECBOLE_INSTALL = "pip install --no-deps recbole==1.2.1"
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")


@dataclass
class CtrTables:
    """One source's interactions and items (columns in the module docstring); ``origin`` names the source."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    origin: str
    report: SkipReport | None = None  # what reading skipped


def movielens_folder() -> Path:
    """The ml-100k folder inside the installed recbole wheel (found without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"movielens: the recbole wheel is not installed ({RECBOLE_INSTALL})")
    return Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k"


def _read_atomic_file(path: Path) -> pl.DataFrame:
    """A recbole atomic file: tab-separated, header ``name:type``; the type suffix is dropped."""
    if not path.is_file():
        raise SourceError(f"movielens: {path} is missing ({RECBOLE_INSTALL})")
    table = pl.read_csv(path, separator="\t", quote_char=None, infer_schema=False)
    return table.rename({c: c.split(":")[0] for c in table.columns})


def _need(table: pl.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SourceError(f"{path}: no column {missing[0]!r}; it has {table.columns}")


def read_movielens(folder: str | Path | None = None, *, click_threshold: float = CLICK_THRESHOLD,
                   max_skipped_share: float = MAX_SKIPPED_SHARE) -> CtrTables:
    """MovieLens-100K from ``folder`` (default: :func:`movielens_folder`), under the same bad-row policy as
    :func:`read_interaction_table`."""
    folder = Path(folder) if folder is not None else movielens_folder()
    inter_path, item_path = folder / "ml-100k.inter", folder / "ml-100k.item"
    raw = _read_atomic_file(inter_path)
    _need(raw, ("user_id", "item_id", "rating", "timestamp"), inter_path)
    raw = raw.rename({"user_id": "user", "item_id": "item"})
    names = {"user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp"}
    report = SkipReport(str(inter_path), unit="rows", seen=raw.height)
    interactions, _ = _typed_interactions(raw, inter_path, names, has_rating=True, click_threshold=click_threshold,
                                          report=report)
    report.kept = interactions.height
    report.check(max_skipped_share, "ctr.prep.max_skipped_share")
    meta = _read_atomic_file(item_path)
    _need(meta, ("item_id", "movie_title", "release_year", "class"), item_path)
    items = meta.select(
        pl.col("item_id").alias("item"),
        pl.col("movie_title").fill_null("").alias("title"),
        pl.col("class").fill_null("").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        .alias("genres"),
        pl.col("release_year").cast(pl.Int32, strict=False).alias("year"))
    return CtrTables(interactions, _complete_items(items, interactions), origin=str(folder), report=report)


def _numeric(table: pl.DataFrame, role: str) -> tuple[pl.Series, pl.Series]:
    """Column ``role`` as float64 and the mask of its cells that hold something other than a finite number
    (those cells are null in the float column)."""
    series = table[role]
    if series.dtype == pl.Datetime or series.dtype == pl.Date:
        return series.cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.Float64), pl.Series([False] * table.height)
    if series.dtype == pl.Boolean:
        series = series.cast(pl.Int8)
    cast = series.cast(pl.Float64, strict=False) if series.dtype != pl.String else \
        series.str.strip_chars().cast(pl.Float64, strict=False)
    bad = ((cast.is_null() & series.is_not_null()) | cast.is_nan() | cast.is_infinite()).fill_null(False)
    return cast.set(bad, None), bad


def _typed_interactions(raw: pl.DataFrame, path: Path, names: Mapping[str, str], *, has_rating: bool,
                        click_threshold: float, report: SkipReport) -> tuple[pl.DataFrame, pl.Series]:
    """``raw`` with columns user, item, timestamp and rating or click (any types) → the interactions table
    without the rows whose required cells are empty or not numbers (each counted in ``report`` by column and
    reason, 1-based data row numbers), and the mask of the rows kept; ``names`` maps those roles to the
    file's column names."""
    keep = pl.Series([True] * raw.height)
    required = ("user", "item", "timestamp", "rating" if has_rating else "click")
    numbers: dict[str, pl.Series] = {}
    for role in required:
        empty = raw[role].is_null()
        if raw[role].dtype == pl.String:
            empty = empty | (raw[role].str.strip_chars() == "").fill_null(True)
        reasons = [(empty, "empty")]
        if role in ("timestamp", "rating", "click"):
            numbers[role], bad = _numeric(raw, role)
            reasons.append((bad & ~empty, "not a number"))
            if role == "click":
                reasons.append((~numbers[role].is_in([0.0, 1.0]).fill_null(True) & ~bad & ~empty, "not 0 or 1"))
        for mask, why in reasons:
            for row in (mask & keep).arg_true().to_list():
                report.add_bad(f"{row + 1} ({raw[role][row]!r})", f"{names[role]!r} ({role}) {why}")
            keep = keep & ~mask
    raw = raw.filter(keep)
    numbers = {role: series.filter(keep) for role, series in numbers.items()}
    if has_rating:
        rating = numbers["rating"]
        click = (rating >= click_threshold).cast(pl.Int8)
    else:
        rating = pl.Series("rating", [None] * raw.height, dtype=pl.Float64)
        click = numbers["click"].cast(pl.Int8)
    return pl.DataFrame({
        "user": raw["user"].cast(pl.String), "item": raw["item"].cast(pl.String), "rating": rating,
        "click": click, "timestamp": numbers["timestamp"].round(0).cast(pl.Int64)}, schema=INTERACTION_COLUMNS), keep


def _complete_items(items: pl.DataFrame, interactions: pl.DataFrame) -> pl.DataFrame:
    """One row per item (first wins), plus an empty row for every interacted item the metadata lacks."""
    items = items.unique("item", keep="first", maintain_order=True)
    missing = interactions.select("item").unique(maintain_order=True).join(items, on="item", how="anti")
    filler = missing.with_columns(pl.lit("").alias("title"), pl.lit([], dtype=pl.List(pl.String)).alias("genres"),
                                  pl.lit(None, dtype=pl.Int32).alias("year"))
    return pl.concat([items.cast(ITEM_COLUMNS), filler.cast(ITEM_COLUMNS)]).select(list(ITEM_COLUMNS))


def read_interaction_table(path: str | Path, columns: Mapping[str, str], *, click_threshold: float = CLICK_THRESHOLD,
                           genre_separator: str = "|", max_skipped_share: float = MAX_SKIPPED_SHARE) -> CtrTables:
    """The user's own interactions from a parquet or CSV/TSV file. ``columns`` maps roles
    (:data:`REQUIRED_ROLES` + :data:`OPTIONAL_ROLES`) to the file's column names; with both ``rating`` and
    ``click`` mapped, the click column wins and ratings are kept as they are.

    The bad-input policy (:mod:`repflow.sources`): a row with an empty id, or a timestamp / rating / click that
    is not a number (a click not 0 or 1), is skipped and counted by reason in ``CtrTables.report``; more than
    ``max_skipped_share`` of the rows skipped is a :class:`SourceError` naming the file and the first bad rows.
    A bad optional cell (a ``year`` of 'V', as ml-100k has) becomes missing. A missing file or column, or an
    unknown role, is a :class:`SourceError` naming the file and column."""
    path = Path(path)
    unknown = sorted(set(columns) - set(REQUIRED_ROLES) - set(OPTIONAL_ROLES))
    if unknown:
        raise SourceError(f"{path}: unknown column role {unknown[0]!r}; allowed: "
                          f"{list(REQUIRED_ROLES + OPTIONAL_ROLES)}")
    for role in REQUIRED_ROLES:
        if role not in columns:
            raise SourceError(f"{path}: the column map has no {role!r} entry (required: {list(REQUIRED_ROLES)} and "
                              "one of 'rating' / 'click')")
    if "rating" not in columns and "click" not in columns:
        raise SourceError(f"{path}: the column map needs a 'rating' or a 'click' column")
    if not path.is_file():
        raise SourceError(f"interactions table {path} does not exist")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise SourceError(f"{path}: unsupported table type {path.suffix!r}; allowed: {list(TABLE_SUFFIXES)}")
    try:
        table = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else \
            pl.read_csv(path, separator="\t" if path.suffix.lower() == ".tsv" else ",", infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceError(f"{path}: cannot be read as {path.suffix.lstrip('.')} ({exc})") from None
    for role, column in columns.items():
        if column not in table.columns:
            raise SourceError(f"{path}: no column {column!r} (mapped as {role!r}); the file has {table.columns}")
    if table.is_empty():
        raise SourceError(f"{path}: the table has no rows")
    raw = table.select(pl.col(column).alias(role) for role, column in columns.items())
    report = SkipReport(str(path), unit="rows", seen=raw.height)
    interactions, keep = _typed_interactions(raw, path, columns, has_rating="click" not in columns,
                                             click_threshold=click_threshold, report=report)
    report.kept = interactions.height
    report.check(max_skipped_share, "ctr.prep.max_skipped_share")
    raw = raw.filter(keep)
    if "click" in columns and "rating" in columns:
        interactions = interactions.with_columns(_numeric(raw, "rating")[0].alias("rating"))
    item_meta = [pl.col("item").cast(pl.String)]
    item_meta.append(pl.col("title").cast(pl.String).fill_null("") if "title" in columns else pl.lit("").alias("title"))
    if "genres" in columns:
        item_meta.append(pl.col("genres").cast(pl.String).fill_null("").str.split(genre_separator)
                         .list.eval(pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != ""))
                         .alias("genres"))
    else:
        item_meta.append(pl.lit([], dtype=pl.List(pl.String)).alias("genres"))
    if "year" in columns:
        item_meta.append(_numeric(raw, "year")[0].round(0).cast(pl.Int32, strict=False).alias("year"))
    else:
        item_meta.append(pl.lit(None, dtype=pl.Int32).alias("year"))
    items = raw.select(item_meta)
    return CtrTables(interactions, _complete_items(items, interactions), origin=str(path), report=report)


def read_ctr_source(source: str, *, path: str | Path | None = None, columns: Mapping[str, str] | None = None,
                    click_threshold: float = CLICK_THRESHOLD, genre_separator: str = "|",
                    max_skipped_share: float = MAX_SKIPPED_SHARE) -> CtrTables:
    """Dispatch on ``source`` (:data:`CTR_SOURCES`): ``movielens`` reads ``path`` or the recbole wheel's folder;
    ``table`` needs ``path`` and ``columns``."""
    if source == "movielens":
        return read_movielens(path, click_threshold=click_threshold, max_skipped_share=max_skipped_share)
    if source == "table":
        if path is None or not columns:
            raise SourceError("source 'table' needs a path and a column map {role: column}")
        return read_interaction_table(path, columns, click_threshold=click_threshold, genre_separator=genre_separator,
                                      max_skipped_share=max_skipped_share)
    raise SourceError(f"unknown CTR source {source!r}; allowed: {list(CTR_SOURCES)}")


def write_parquet_atomic(table: pl.DataFrame, path: str | Path) -> Path:
    """Write ``table`` to ``path`` through a temporary sibling renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        table.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_parquet(path: str | Path, schema: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
    """A parquet file; with ``schema``, a missing column or one of another type is a :class:`SourceError`
    naming the file and column."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    table = pl.read_parquet(path)
    for column, dtype in (schema or {}).items():
        if column not in table.columns:
            raise SourceError(f"{path}: no column {column!r}; it has {table.columns}")
        if table.schema[column] != dtype:
            raise SourceError(f"{path}: column {column!r} is {table.schema[column]}, expected {dtype}")
    return table
