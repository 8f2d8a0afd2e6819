"""The audio family's one reader from prep shards to normalised log-mel tensors.

A prep folder holds splits whose samples are ``{"flac": mono waveform, "json": {"labels": {task: class
name}, "name": clip id}}``; its manifest ``meta`` holds ``sample_rate``, ``tasks`` ({task: class names in
order}), ``features`` (:class:`MelSettings` as a dict) and ``norm`` (the train split's log-mel mean/std).
:func:`load_audio_split` decodes a whole split into memory (clips are short and sets small) and computes
its features in batches, the fast path for batched torchaudio.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from repflow.families.audio.features import FeatureError, MelSettings, batched_logmel, check_stats, fix_length
from repflow.manifest import OutputError
from repflow.progress import progress
from repflow.shards import ShardReader

__all__ = ["AudioSplit", "load_audio_split"]


@dataclass
class AudioSplit:
    """One split in memory, in write order.

    logmel: float32 (N, 1, n_mels, frames), normalised with ``stats``. waveforms: float32 (N, clip_samples),
    the fixed-length clips the log-mels were computed from (the waveform attack starts from them).
    labels: {task: int64 (N,)} indices into ``classes[task]``. names: clip ids. settings / stats: the
    features and normalisation used, which a model trained on this split keeps.
    """

    logmel: Tensor
    waveforms: Tensor
    labels: dict[str, Tensor]
    classes: dict[str, list[str]]
    names: list[str]
    settings: MelSettings
    stats: dict[str, float]

    def __len__(self) -> int:
        return len(self.names)


def _meta(reader: ShardReader, key: str) -> Any:
    if key not in reader.meta:
        raise OutputError(f"{reader.url('manifest.json')}: meta has no {key!r}; an audio prep folder holds "
                          f"sample_rate, tasks, features, norm and splits (has {sorted(reader.meta)})")
    return reader.meta[key]


def _settings(reader: ShardReader, settings: MelSettings | None, stats: dict | None) -> MelSettings:
    mpath = reader.url("manifest.json")
    try:
        written = MelSettings.from_dict(_meta(reader, "features"))
    except (FeatureError, TypeError) as exc:
        raise OutputError(f"{mpath}: meta 'features': {exc}") from None
    rate = _meta(reader, "sample_rate")
    if written.sample_rate != rate:
        raise OutputError(f"{mpath}: meta features.sample_rate = {written.sample_rate} Hz but meta sample_rate = "
                          f"{rate} Hz")
    if settings is None:
        return written
    if settings.sample_rate != rate:
        raise FeatureError(f"settings.sample_rate = {settings.sample_rate} Hz but the audio in {mpath} is at "
                           f"{rate} Hz (meta sample_rate); resample the source or use settings at {rate} Hz")
    if stats is None and settings != written:
        diff = {k: (v, getattr(written, k)) for k, v in settings.to_dict().items() if v != getattr(written, k)}
        raise FeatureError(f"settings differ from the features in {mpath} ({{key: (given, manifest)}} = {diff}), "
                           "whose norm statistics only fit its own features; pass stats computed with these settings")
    return settings


def _tasks(reader: ShardReader, tasks: Sequence[str] | None) -> dict[str, list[str]]:
    available = _meta(reader, "tasks")
    wanted = list(available) if tasks is None else list(tasks)
    missing = [t for t in wanted if t not in available]
    if missing:
        raise FeatureError(f"task(s) {missing} not in {reader.url('manifest.json')}; its tasks: "
                           f"{sorted(available)}")
    return {t: list(available[t]) for t in wanted}


def load_audio_split(folder: str | Path, split: str, *, settings: MelSettings | None = None,
                     stats: dict | None = None, batch_size: int = 8,
                     tasks: Sequence[str] | None = None) -> AudioSplit:
    """Decode ``split`` of the prep folder ``folder`` and compute its normalised log-mels.

    ``settings``: the features (default: the manifest's ``features``; other settings need their own
    ``stats``). ``stats``: ``{"mean", "std"}`` to normalise with (default: the manifest's ``norm``, the
    train split's own statistics). ``tasks``: the label sets to return (default: all the manifest has).
    Features are computed without autograd after decoding, ``batch_size`` clips at a time: on CPU small
    batches are fastest, as the STFT of a few clips stays in cache (8 is about 3x faster per clip than
    256 on the 2-core development machine; see ``benchmarks/audio_loading.py``).
    """
    if batch_size < 1:
        raise FeatureError(f"batch_size = {batch_size}, must be >= 1")
    reader = ShardReader(folder)
    mpath = reader.url("manifest.json")
    settings = _settings(reader, settings, stats)
    if stats is None:
        try:
            stats = check_stats(_meta(reader, "norm"))
        except FeatureError as exc:
            raise OutputError(f"{mpath}: meta 'norm': {exc}") from None
    else:
        stats = check_stats(stats)
    classes = _tasks(reader, tasks)
    members = reader.members(split) or {}
    flac = members.get("flac", {})
    if set(members) != {"flac", "json"} or flac.get("type") != "flac" or members["json"]["type"] != "json":
        raise OutputError(f"{mpath}: split {split!r} declares members {members}; an audio split holds 'flac' "
                          "(type flac) and 'json' (type json)")
    if flac["sample_rate"] != settings.sample_rate:
        raise OutputError(f"{mpath}: split {split!r} stores flac at {flac['sample_rate']} Hz but meta sample_rate "
                          f"is {settings.sample_rate} Hz")

    count = reader.count(split)
    # rows copied by numpy: per-clip torch row assignment measured 20-50 µs/clip slower in this loop
    waveforms = np.empty((count, settings.clip_samples), dtype=np.float32)
    index = {task: {name: i for i, name in enumerate(names)} for task, names in classes.items()}
    labels: dict[str, list[int]] = {task: [] for task in classes}
    names: list[str] = []
    for i, sample in enumerate(progress(reader.stream(split), desc=f"load {split}", unit="clip", total=count)):
        key = sample["__key__"]
        if i >= count:
            raise OutputError(f"{mpath}: split {split!r} has more samples than the {count} it declares")
        audio = sample["flac"]
        if audio.shape[0] != 1:
            raise OutputError(f"{mpath}: {split} sample {key!r} has {audio.shape[0]} channels; the audio family "
                              "stores mono clips")
        waveforms[i] = fix_length(torch.from_numpy(audio[0]), settings.clip_samples).numpy()
        info = sample["json"] if isinstance(sample["json"], dict) else {}
        given = info.get("labels", {})
        for task, lookup in index.items():
            if given.get(task) not in lookup:
                raise OutputError(f"{mpath}: {split} sample {key!r} has label {given.get(task)!r} for task "
                                  f"{task!r}; the manifest's classes for it: {classes[task]}")
            labels[task].append(lookup[given[task]])
        names.append(str(info.get("name", key)))
    if len(names) != count:
        raise OutputError(f"{mpath}: split {split!r} has {len(names)} samples, the manifest says {count}")
    wave = torch.from_numpy(waveforms)
    return AudioSplit(logmel=batched_logmel(wave, settings, batch_size=batch_size, stats=stats), waveforms=wave,
                      labels={task: torch.tensor(ids, dtype=torch.int64) for task, ids in labels.items()},
                      classes=classes, names=names, settings=settings, stats=stats)
