"""audio.prep: read an audio source, resample to one rate, split by a label, write flac shards.

The manifest carries what every later stage needs to read the clips the same way: the sample rate, each
label task's classes, the log-mel settings, and the normalisation statistics of the train split's log-mel
(BYOL-A normalises with each dataset's own statistics). Undecodable files are listed under ``skipped``.
"""
from __future__ import annotations

import logging

import mlflow
import numpy as np
import soundfile
import torch
from sklearn.model_selection import train_test_split

from repflow.families.audio.features import batched_logmel, fix_length, normalisation_stats, pcm16
from repflow.families.audio.pictures import logmel_rows
from repflow.families.audio.sources import read_audio_source, stratify_label
from repflow.shards import write_split
from repflow.sources import SourceError
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.audio.prep")


def split_indices(labels: np.ndarray, *, val_fraction: float, test_fraction: float, min_count: int,
                  seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Stratified train / val / test indices (sorted) over the clips whose class has ≥ ``min_count`` clips;
    returns them and the dropped classes."""
    classes, counts = np.unique(labels, return_counts=True)
    dropped = [str(c) for c, n in zip(classes, counts) if n < min_count]
    keep = np.flatnonzero(~np.isin(labels, dropped))
    if len(np.unique(labels[keep])) < 2:
        raise SourceError(f"fewer than 2 classes have at least {min_count} clips (audio.prep.min_class_count); "
                          f"class counts: {dict(zip(classes.tolist(), counts.tolist()))}")
    try:
        rest, test = train_test_split(keep, test_size=test_fraction, stratify=labels[keep], random_state=seed)
        val = np.array([], dtype=np.int64)
        if val_fraction > 0:
            rest, val = train_test_split(rest, test_size=val_fraction, stratify=labels[rest], random_state=seed)
    except ValueError as exc:
        raise SourceError(f"cannot split {len(keep)} clips of {len(np.unique(labels[keep]))} classes with "
                          f"audio.prep.test_fraction / val_fraction ({exc}); use more clips or larger "
                          "fractions") from None
    return {"train": np.sort(rest), "val": np.sort(val), "test": np.sort(test)}, dropped


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg, feat = params.audio.prep, params.audio.features.settings()
    clips = read_audio_source(cfg.source, sample_rate=feat.sample_rate, seed=params.seed, path=cfg.path,
                              words=cfg.words, clips_per_word=cfg.clips_per_word, pitch_bands=cfg.pitch_bands,
                              max_seconds=cfg.max_seconds)
    labels = {task: np.asarray(values) for task, values in clips.labels.items()}
    stratify = stratify_label(params)
    splits, dropped = split_indices(labels[stratify], val_fraction=cfg.val_fraction,
                                    test_fraction=cfg.test_fraction, min_count=cfg.min_class_count, seed=params.seed)
    kept = np.concatenate(list(splits.values()))
    tasks = {task: sorted(set(values[kept].tolist())) for task, values in labels.items()}

    # statistics of what the shards will hold: fixed-length clips after the 16-bit FLAC round trip
    train_wave = pcm16(torch.stack([fix_length(torch.from_numpy(clips.waveforms[i]), feat.clip_samples)
                                    for i in splits["train"]]))
    train_mel = batched_logmel(train_wave, feat)
    norm = normalisation_stats(train_mel)
    ctx.meta.update({"source": cfg.source, "origin": clips.origin, "sample_rate": feat.sample_rate, "tasks": tasks,
                     "features": feat.to_dict(), "norm": norm, "skipped": clips.skipped,
                     "dropped_classes": {stratify: dropped}, "splits": {}})
    mlflow.set_tags({"repflow.source": cfg.source, "repflow.source_origin": clips.origin})
    members = {"flac": {"type": "flac", "sample_rate": feat.sample_rate}, "json": "json"}
    for name, idx in splits.items():
        samples = ({"flac": clips.waveforms[i],
                    "json": {"labels": {t: str(v[i]) for t, v in labels.items()}, "name": clips.names[i]}}
                   for i in idx)
        ctx.meta["splits"][name] = write_split(tmp, name, samples, members, shard_size=cfg.shard_size,
                                               show_progress=True)
        mlflow.log_metric(f"{name}_count", len(idx))

    # one example per class of the stratifying label: its log-mel, and its audio for a listener
    (tmp / "examples").mkdir()
    strat, panels = labels[stratify], []
    for cls in tasks[stratify][:12]:
        i = int(splits["train"][strat[splits["train"]] == cls][0])
        soundfile.write(tmp / "examples" / f"{cls.replace('/', '_')}.wav", clips.waveforms[i], feat.sample_rate)
        patch = train_mel[int(np.searchsorted(splits["train"], i))]
        panels.append((f"{stratify} {cls}", (patch - norm["mean"]) / norm["std"]))
    logmel_rows([("", panels[r:r + 4]) for r in range(0, len(panels), 4)], tmp / "samples.png",
                title=f"{cfg.source}: normalised log-mel of train clips",
                frame_ms=1000 * feat.hop_length / feat.sample_rate)
    counts = {k: len(v) for k, v in splits.items()}
    if clips.skipped:
        log.warning("audio.prep: skipped %d undecodable files (listed in the manifest), e.g. %s", len(clips.skipped),
                    clips.skipped[0]["file"])
    md = (f"- audio: **{cfg.source}** ({clips.origin}), {feat.sample_rate} Hz; "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + " clips; tasks "
          + ", ".join(f"{t} ({len(c)} classes)" for t, c in tasks.items())
          + f"; {len(clips.skipped)} undecodable files skipped"
          + (f"; {len(dropped)} {stratify} classes with < {cfg.min_class_count} clips dropped" if dropped else ""))
    md += f"\n\n![log-mel of train clips]({(ctx.out / 'samples.png').resolve().as_uri()})"
    return StageSummary(metrics={**{f"{k}_count": v for k, v in counts.items()}, "skipped_files": len(clips.skipped),
                                 "norm_mean": norm["mean"], "norm_std": norm["std"]},
                        markdown=md, plots=["samples.png"])
