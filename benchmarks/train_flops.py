"""Training-step FLOP/s of the SimCLR encoders (forward + backward of two views through encoder, projection
head and NT-Xent), against a 2048³ fp32 matmul timed in the same run: a guard that the model's kernels stay
near what the CPU's matmul reaches, so the time to accuracy is a FLOPs question, not a kernel one.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and
backward). Arms alternate (matmul, encoder, matmul, ...) and the median of ``--repeats`` is reported.

    python -m benchmarks.train_flops [--batch 256] [--repeats 7] [--threads 1 2] [--encoders small_cnn small_cnn_s2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks._common import write_results  # noqa: E402
from repflow.families.image.contrastive import nt_xent_loss  # noqa: E402
from repflow.families.image.models import ProjectionHead, build_encoder  # noqa: E402

GUARD = 0.9


def training_step(name: str, batch: int, seed: int = 0) -> Callable[[], None]:
    """One forward + backward of a SimCLR batch (two views of ``batch`` 28×28 grey images) for encoder ``name``."""
    torch.manual_seed(seed)
    encoder = build_encoder({"name": name, "in_channels": 1, "width": 32}).train()
    head = ProjectionHead(encoder.out_dim, 64).train()
    g = torch.Generator().manual_seed(seed)
    v1, v2 = torch.rand(batch, 1, 28, 28, generator=g), torch.rand(batch, 1, 28, 28, generator=g)

    def step() -> None:
        encoder.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        nt_xent_loss(head(encoder(v1)), head(encoder(v2)), 0.5).backward()

    return step


def counted_flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def measure(arms: dict[str, Callable[[], None]], flops: dict[str, int], repeats: int) -> list[dict]:
    """Rows of GFLOP/s per arm: ``repeats`` interleaved rounds after a warm-up, medians; the first arm is
    the matmul every share divides by."""
    for fn in arms.values():
        fn()
    seconds: dict[str, list[float]] = {label: [] for label in arms}
    for r in range(repeats):
        for label, fn in arms.items():
            t0 = time.perf_counter()
            fn()
            seconds[label].append(time.perf_counter() - t0)
        print(f"threads {torch.get_num_threads()}: round {r + 1}/{repeats}", flush=True)
    matmul = next(iter(arms))
    peak = flops[matmul] / statistics.median(seconds[matmul])
    return [{"threads": torch.get_num_threads(), "arm": label, "GFLOP per call": flops[label] / 1e9,
             "seconds (median)": statistics.median(t), "GFLOP/s": flops[label] / statistics.median(t) / 1e9,
             "share of matmul GFLOP/s": flops[label] / statistics.median(t) / peak} for label, t in seconds.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoders", nargs="+", default=["small_cnn", "small_cnn_s2"], help="first = the guarded default")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--matmul", type=int, default=2048, help="side of the square fp32 matmul")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts, one block each")
    args = ap.parse_args()
    a = torch.rand(args.matmul, args.matmul, generator=torch.Generator().manual_seed(1))
    b = torch.rand(args.matmul, args.matmul, generator=torch.Generator().manual_seed(2))
    arms: dict[str, Callable[[], None]] = {f"matmul {args.matmul}³ fp32": lambda: torch.mm(a, b)}
    arms.update({f"{name}: SimCLR step, batch 2×{args.batch}": training_step(name, args.batch)
                 for name in args.encoders})
    flops = {label: counted_flops(fn) for label, fn in arms.items()}
    rows, guard, lines = [], {}, []
    for threads in args.threads:
        torch.set_num_threads(threads)
        block = measure(arms, flops, args.repeats)
        rows += block
        share = block[1]["share of matmul GFLOP/s"]
        guard[str(threads)] = {"measured": share, "target": f">= {GUARD}", "met": share >= GUARD}
        lines.append(f"guard (issue 21), {threads} thread(s): {block[1]['arm']} at {share:.0%} of the same-run "
                     f"matmul's GFLOP/s, needs ≥ {GUARD:.0%}: {'met' if share >= GUARD else 'not met'}")
    write_results("train_flops", "Training-step FLOP/s vs a same-run fp32 matmul", rows,
                  ["FLOPs from torch.utils.flop_counter (forward + backward; elementwise ops such as batch norm and "
                   f"ReLU count zero); {args.repeats} interleaved rounds per thread count, median", *lines],
                  extra={"guard": guard, "args": vars(args)})


if __name__ == "__main__":
    main()
