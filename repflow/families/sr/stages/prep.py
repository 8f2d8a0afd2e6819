"""sr.prep: real photos, split by photo, into HR training patches with their bicubic LR versions and whole
held-out photos for evaluation, as png shards.

LR images are made with MATLAB-style antialiased bicubic (``imresize``), the convention the SR literature's
numbers use (PIL's bicubic gives other LR images and shifts PSNR); they are stored as uint8, as the field does.
"""
from __future__ import annotations

import logging

import mlflow
import numpy as np

from repflow.families.sr.patches import lr_of, random_patches, split_photos
from repflow.families.sr.photos import read_photos
from repflow.report import class_grid
from repflow.shards import write_split
from repflow.sources import SourceError
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.sr.prep")


def centre_crop(image: np.ndarray, max_side: int, multiple: int = 12) -> np.ndarray:
    """The centre of ``image`` (H, W, 3), at most ``max_side`` px a side and each side a multiple of ``multiple``."""
    h, w = (min(side, max_side) // multiple * multiple for side in image.shape[:2])
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[top:top + h, left:left + w]


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.sr.prep
    photos = read_photos(cfg.source, cfg.path)
    small = [name for name, img in zip(photos.names, photos.images) if min(img.shape[:2]) < cfg.hr_patch]
    if small:
        raise SourceError(f"{cfg.source}: photo(s) {small[:5]} are smaller than one HR patch of sr.prep.hr_patch = "
                          f"{cfg.hr_patch} px; remove them or lower sr.prep.hr_patch")
    train_idx, test_idx = split_photos(len(photos.images), cfg.test_fraction, params.seed)
    hr = random_patches([photos.images[i] for i in train_idx], cfg.hr_patch, cfg.patches, params.seed)
    lr_names = {s: f"lr{s}.png" for s in cfg.scales}
    members = {"hr.png": "png", **{name: "png" for name in lr_names.values()}, "json": "json"}
    ctx.meta.update({"source": cfg.source, "origin": photos.origin, "bicubic": "matlab-antialiased",
                     "scales": cfg.scales, "hr_patch": cfg.hr_patch, "skipped": photos.skipped,
                     "train_photos": [photos.names[i] for i in train_idx],
                     "test_photos": [photos.names[i] for i in test_idx], "splits": {}})
    mlflow.set_tags({"repflow.source": cfg.source, "repflow.source_origin": photos.origin})

    def train_samples():
        for i, patch in enumerate(hr):
            yield {"hr.png": patch, **{lr_names[s]: lr_of(patch, s) for s in cfg.scales},
                   "json": {"patch": i}}

    def test_samples():
        for i in test_idx:
            photo = centre_crop(photos.images[i], cfg.max_side)
            yield {"hr.png": photo, **{lr_names[s]: lr_of(photo, s) for s in cfg.scales},
                   "json": {"photo": photos.names[i]}}

    ctx.meta["splits"]["train"] = write_split(tmp, "train", train_samples(), members, shard_size=cfg.shard_size,
                                              show_progress=True)
    ctx.meta["splits"]["test"] = write_split(tmp, "test", test_samples(), members, shard_size=cfg.shard_size,
                                             show_progress=True)
    import torch

    show = torch.from_numpy(hr[:8]).permute(0, 3, 1, 2)
    grid = class_grid(show, torch.zeros(len(show), dtype=torch.long), ["HR patches"], tmp / "patches.png",
                      title=f"{cfg.source}: training HR patches ({cfg.hr_patch} px)")
    if photos.skipped:
        log.warning("sr.prep: skipped %d unreadable files (listed in the manifest), e.g. %s", len(photos.skipped),
                    photos.skipped[0]["file"])
    md = (f"- photos: **{cfg.source}** ({photos.origin}): {len(train_idx)} for training → {len(hr)} HR patches of "
          f"{cfg.hr_patch} px, {len(test_idx)} held out whole ({', '.join(ctx.meta['test_photos'])}), centre-cropped "
          f"to ≤ {cfg.max_side} px; LR at ×{', ×'.join(map(str, cfg.scales))} by MATLAB-style antialiased bicubic; "
          f"{len(photos.skipped)} unreadable files skipped")
    return StageSummary(metrics={"train_patches": len(hr), "test_photos": len(test_idx),
                                 "skipped_files": len(photos.skipped)}, markdown=md, plots=[grid.name])
