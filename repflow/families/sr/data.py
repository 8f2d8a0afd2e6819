"""Reading sr.prep shards: LR / HR pairs at one scale, as uint8 tensors."""
from __future__ import annotations

from pathlib import Path

import torch

from repflow.manifest import OutputError
from repflow.shards import ShardReader

__all__ = ["load_pairs"]


def load_pairs(folder: str | Path, split: str, scale: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list]:
    """(LR images, HR images, json records) of a split, uint8 (3, h, w) and (3, scale·h, scale·w) each, in
    write order. A scale the shards were not written for is an error naming the folder and its scales."""
    reader = ShardReader(folder)
    scales = reader.meta.get("scales", [])
    if scale not in scales:
        raise OutputError(f"{folder}: no ×{scale} LR images (sr.prep.scales was {scales})")
    lrs, hrs, records = [], [], []
    for sample in reader.stream(split):
        lr, hr = sample[f"lr{scale}.png"], sample["hr.png"]
        if tuple(hr.shape[1:]) != (lr.shape[1] * scale, lr.shape[2] * scale):
            raise OutputError(f"{folder}: {split} sample {sample['__key__']}: HR {tuple(hr.shape)} is not ×{scale} "
                              f"of LR {tuple(lr.shape)}")
        lrs.append(lr)
        hrs.append(hr)
        records.append(sample["json"])
    if len(lrs) != reader.count(split):
        raise OutputError(f"{folder}: split {split!r} has {len(lrs)} samples, manifest says {reader.count(split)}")
    return lrs, hrs, records
