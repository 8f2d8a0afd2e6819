"""video.prep: fixed-size clips of T frames from real videos (or pan/zoom over real photos), split so that no
test clip shares a frame with a training clip, as npy shards (uint8 (T, S, S, 3) per clip).

Held-out clips come from held-out videos when the source has two or more, else from the end of the one
video's time line (:func:`~repflow.families.video.data.split_clips`).
"""
from __future__ import annotations

import logging

import mlflow
import torch

from repflow.families.video.clips import read_clips
from repflow.families.video.data import clip_group, split_clips
from repflow.report import class_grid
from repflow.shards import write_split
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.video.prep")


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.video.prep
    clips = read_clips(cfg.source, path=cfg.path, frames=cfg.frames, size=cfg.size,
                       clips_per_video=cfg.clips_per_video, seed=params.seed)
    train_idx, test_idx = split_clips(clips.names, cfg.frames, cfg.test_fraction, params.seed)
    members = {"clip.npy": "npy", "json": "json"}
    ctx.meta.update({"source": cfg.source, "origin": clips.origin, "frames": cfg.frames, "size": cfg.size,
                     "skipped": clips.skipped, "splits": {},
                     "train_videos": sorted({clip_group(clips.names[i]) for i in train_idx}),
                     "test_videos": sorted({clip_group(clips.names[i]) for i in test_idx})})
    mlflow.set_tags({"repflow.source": cfg.source, "repflow.source_origin": clips.origin})
    for split, idx in (("train", train_idx), ("test", test_idx)):
        samples = ({"clip.npy": clips.clips[i], "json": {"name": clips.names[i]}} for i in idx)
        ctx.meta["splits"][split] = write_split(tmp, split, samples, members, shard_size=cfg.shard_size,
                                                show_progress=True)
    first = torch.from_numpy(clips.clips[train_idx[0]]).permute(0, 3, 1, 2)
    grid = class_grid(first, torch.zeros(len(first), dtype=torch.long), [clips.names[train_idx[0]]],
                      tmp / "clip.png", per_class=min(cfg.frames, 16),
                      title=f"{cfg.source}: one training clip, {cfg.frames} frames")
    if clips.skipped:
        log.warning("video.prep: skipped %d video(s) (listed in the manifest), e.g. %s", len(clips.skipped),
                    clips.skipped[0]["file"])
    md = (f"- clips: **{cfg.source}** ({clips.origin}): {len(train_idx)} training clips from "
          f"{', '.join(ctx.meta['train_videos'])}; {len(test_idx)} held-out clips from "
          f"{', '.join(ctx.meta['test_videos'])}; {cfg.frames} frames of {cfg.size}×{cfg.size}; "
          f"{len(clips.skipped)} video(s) skipped")
    return StageSummary(metrics={"train_clips": len(train_idx), "test_clips": len(test_idx),
                                 "skipped_videos": len(clips.skipped)}, markdown=md, plots=[grid.name])
