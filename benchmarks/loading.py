"""Data loading throughput: the project's shard reader against PNG files in class folders.

The same Fashion-MNIST training images (from the default source) are written once as repflow
shards and once as one PNG per image under ``<class>/``; each reader then decodes every image to a
uint8 tensor. Images/s, median of ``--repeats`` passes, side by side in one run.

    python -m benchmarks.loading [--images 20000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import decode_image, read_file

os.environ.setdefault("REPFLOW_PROGRESS", "0")

from benchmarks._common import write_results  # noqa: E402
from repflow.manifest import staged_output  # noqa: E402
from repflow.shards import ShardSet, write_image_split  # noqa: E402
from repflow.sources import read_source  # noqa: E402


class PngFolder(torch.utils.data.Dataset):
    """The usual baseline: one PNG per image, one folder per class (ImageFolder layout)."""

    def __init__(self, root: Path, decoder: str = "pil"):
        self.items = sorted((p, int(p.parent.name)) for p in root.rglob("*.png"))
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        if self.decoder == "torchvision":
            return decode_image(read_file(str(path))), label
        return torch.from_numpy(np.array(Image.open(path))).unsqueeze(0), label


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-size", type=int, default=2000)
    args = ap.parse_args()

    src = read_source("fashion-mnist")
    x, y = src.images[:args.images], src.labels[:args.images]
    with tempfile.TemporaryDirectory(prefix="repflow-bench-") as tmp:
        tmp = Path(tmp)
        meta = {"classes": src.classes, "shape": [1, 28, 28], "splits": {}}
        with staged_output(tmp / "shards", stage="prep", meta=meta) as out:
            meta["splits"]["train"] = write_image_split(out, "train", x, y, shard_size=args.shard_size)
        for i, (img, label) in enumerate(zip(x, y)):
            d = tmp / "png" / str(int(label))
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:06d}.png")

        t0 = time.perf_counter()
        shards = ShardSet(tmp / "shards")
        verify_s = time.perf_counter() - t0
        png = PngFolder(tmp / "png")
        png_tv = PngFolder(tmp / "png", decoder="torchvision")

        def shards_load():
            return len(shards.load("train")[0])

        def shards_stream(workers):
            return lambda: sum(len(b[0]) for b in shards.loader("train", batch_size=256, num_workers=workers,
                                                                  shuffle_buffer=1000))

        def png_loader(workers, dataset=png):
            return lambda: sum(len(b[0]) for b in torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=True,
                                                                              num_workers=workers))

        rows = []
        for name, fn in [("repflow shards: ShardSet.load (whole split)", shards_load),
                         ("repflow shards: loader, 0 workers, shuffle buffer 1000", shards_stream(0)),
                         ("repflow shards: loader, 2 workers, shuffle buffer 1000", shards_stream(2)),
                         ("PNG class folders: DataLoader, 0 workers, shuffle", png_loader(0)),
                         ("PNG class folders: DataLoader, 2 workers, shuffle", png_loader(2)),
                         ("PNG class folders, torchvision decoder: DataLoader, 2 workers", png_loader(2, png_tv))]:
            rate = timed(fn, args.repeats)
            rows.append({"reader": name, "images_per_s": rate})
            print(f"{name}: {rate:,.0f} images/s", flush=True)
        base = rows[3]["images_per_s"]
        for r in rows:
            r["vs_png_0_workers"] = r["images_per_s"] / base
        write_results("loading", f"Data loading throughput ({len(x)} Fashion-MNIST 28x28 images)", rows,
                      [f"median of {args.repeats} passes per reader; shard size {args.shard_size}",
                       f"opening the shard set verifies every shard's sha256 first: {verify_s:.3f} s "
                       f"({len(x) / verify_s:,.0f} images/s), not included above",
                       "both layouts hold the same PNG bytes; the PNG-folder baseline decodes with PIL as "
                       "torchvision.datasets.ImageFolder does; the last row gives it the shard reader's decoder",
                       "files were just written, so both read from the page cache: CPU cost, not disk speed"])


if __name__ == "__main__":
    main()
