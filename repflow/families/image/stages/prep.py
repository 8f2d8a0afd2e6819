"""image.prep: read an image source on disk, split it, write train / val / test shards with a manifest.

With ``prep.train_order: random`` (the default) the train split is written in an order drawn from ``seed``
after every other draw, so the splits hold the images ``source`` order gives them: a reader with a shuffle buffer
smaller than a class (``train.shuffle_buffer``) then still mixes the classes of an ``imagefolder`` source,
which lists its images class by class (benchmarks/results/stream.md). Val and test stay in source order."""
from __future__ import annotations

import hashlib
import logging

import mlflow
import numpy as np
import torch

from repflow.report import class_grid
from repflow.shards import write_image_split
from repflow.families.image.sources import read_source
from repflow.sources import SourceError
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.prep")


def stratified_subsample(labels: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``per_class`` random samples of every class."""
    if per_class is None:
        return np.arange(len(labels))
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out) with ``fraction`` of every class held out (rounded)."""
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held.append(idx[:int(round(fraction * len(idx)))])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.prep
    src = read_source(cfg.source, cfg.path)
    rng = np.random.default_rng(params.seed)
    x_all, y_all = src.images, src.labels
    if src.test_images is None:
        train_idx, test_idx = stratified_split(y_all, cfg.test_fraction, rng)
        x_tr, y_tr, x_te, y_te = x_all[train_idx], y_all[train_idx], x_all[test_idx], y_all[test_idx]
    else:
        x_tr, y_tr, x_te, y_te = x_all, y_all, src.test_images, src.test_labels
    if len(x_te) == 0:
        raise SourceError(f"{cfg.source}: test split is empty; raise prep.test_fraction or add data")
    keep = stratified_subsample(y_tr, cfg.per_class, rng)
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    tr_idx, val_idx = stratified_split(y_tr, cfg.val_fraction, rng)
    keep_te = stratified_subsample(y_te, cfg.test_per_class, rng)
    if cfg.train_order == "random":
        tr_idx = tr_idx[rng.permutation(len(tr_idx))]
    splits = {"train": (x_tr[tr_idx], y_tr[tr_idx]), "val": (x_tr[val_idx], y_tr[val_idx]),
              "test": (x_te[keep_te], y_te[keep_te])}
    if len(splits["train"][0]) < 2:
        raise SourceError(f"{cfg.source}: only {len(splits['train'][0])} training images after prep.per_class / "
                          "prep.val_fraction; need at least 2")
    h, w = x_tr.shape[1:3]
    channels = 1 if x_tr.ndim == 3 else x_tr.shape[3]
    train_f = splits["train"][0].reshape(-1, h, w, channels).astype(np.float32) / 255.0
    mean, std = train_f.mean(axis=(0, 1, 2)).tolist(), train_f.std(axis=(0, 1, 2)).tolist()
    raw = hashlib.sha256(np.ascontiguousarray(x_all).tobytes())
    raw.update(np.ascontiguousarray(y_all).tobytes())
    if src.test_images is not None:
        raw.update(np.ascontiguousarray(src.test_images).tobytes())
        raw.update(np.ascontiguousarray(src.test_labels).tobytes())
    meta = ctx.meta
    meta.update({"source": cfg.source, "origin": src.origin, "source_digest": raw.hexdigest(),
                 "classes": list(src.classes), "shape": [channels, h, w], "mean": [round(m, 6) for m in mean],
                 "std": [round(max(s, 1e-3), 6) for s in std], "skipped": src.skipped, "splits": {}})
    mlflow.set_tags({"repflow.source": cfg.source, "repflow.source_origin": src.origin,
                     "repflow.source_digest": meta["source_digest"]})
    for name, (x, y) in splits.items():
        meta["splits"][name] = write_image_split(tmp, name, x, y, shard_size=cfg.shard_size, show_progress=True,
                                                 image_format=cfg.image_format)
        mlflow.log_metric(f"{name}_count", len(x))
    x_show = torch.from_numpy(splits["train"][0])
    x_show = x_show.unsqueeze(1) if x_show.ndim == 3 else x_show.permute(0, 3, 1, 2)
    grid = class_grid(x_show, torch.from_numpy(splits["train"][1]), src.classes, tmp / "samples.png",
                      title=f"{cfg.source}: train samples")
    if src.skipped:
        log.warning("prep: skipped %d unreadable files (listed in the manifest), e.g. %s", len(src.skipped),
                    src.skipped[0]["file"])
    counts = {k: v["count"] for k, v in meta["splits"].items()}
    log.info("prep: wrote %s", counts)
    md = (f"- data: **{cfg.source}** ({src.origin}), {len(src.classes)} classes, shape {meta['shape']}; "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" images; {len(src.skipped)} unreadable files skipped")
    return StageSummary(metrics={**{f"{k}_count": v for k, v in counts.items()}, "skipped_files": len(src.skipped)},
                        markdown=md, plots=[grid.name])
