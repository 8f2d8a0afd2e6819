"""Reading video.prep shards: the clips of a split as one uint8 tensor, and the split rule prep uses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from repflow.manifest import OutputError
from repflow.shards import ShardReader
from repflow.sources import SourceError

__all__ = ["load_clips", "split_clips", "clip_group"]


def clip_group(name: str) -> str:
    """The video (or photo) a clip name ``<video>@<start>`` / ``<photo>#<k>`` comes from."""
    return name.rsplit("@", 1)[0].rsplit("#", 1)[0]


def _start(name: str) -> int:
    tail = name.rsplit("@", 1)[-1] if "@" in name else name.rsplit("#", 1)[-1]
    return int(tail)


def split_clips(names: list[str], frames: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, test indices) of clips, so that no test clip shares a frame with a training clip.

    With two or more videos (or photos), whole videos are held out: ``round(test_fraction · videos)``, at
    least one and at most all but one, drawn with ``seed``. A single video is cut in time instead: clips
    starting in its last ``test_fraction`` of start positions are test clips, and training clips that would
    run into that part are dropped."""
    groups = sorted({clip_group(n) for n in names})
    if len(groups) >= 2:
        n_test = min(len(groups) - 1, max(1, round(test_fraction * len(groups))))
        held = set(np.random.default_rng(seed).choice(groups, size=n_test, replace=False).tolist())
        test = [i for i, n in enumerate(names) if clip_group(n) in held]
        train = [i for i, n in enumerate(names) if clip_group(n) not in held]
        return train, test
    starts = np.array([_start(n) for n in names])
    cut = np.quantile(starts, 1 - test_fraction)
    test = [i for i, s in enumerate(starts) if s >= cut]
    train = [i for i, s in enumerate(starts) if s + frames <= cut]
    if not train or not test:
        raise SourceError(f"one video ({groups[0]}) gives too few distinct clip starts to hold out "
                          f"{test_fraction:.0%} of it in time; add videos or clips_per_video")
    return train, test


def load_clips(folder: str | Path, split: str) -> tuple[torch.Tensor, list[str]]:
    """(uint8 (N, T, H, W, 3) clips, their names) of a split of a video.prep output, in write order."""
    reader = ShardReader(folder)
    clips, names = [], []
    for sample in reader.stream(split):
        clips.append(torch.from_numpy(np.ascontiguousarray(sample["clip.npy"])))
        names.append(sample["json"]["name"])
    if len(clips) != reader.count(split):
        raise OutputError(f"{folder}: split {split!r} has {len(clips)} clips, manifest says {reader.count(split)}")
    if not clips:
        raise OutputError(f"{folder}: split {split!r} holds no clip")
    shapes = {tuple(c.shape) for c in clips}
    if len(shapes) != 1:
        raise OutputError(f"{folder}: split {split!r} mixes clip shapes {sorted(shapes)}")
    return torch.stack(clips), names
