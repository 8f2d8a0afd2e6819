"""Training-step FLOP/s of the SimCLR encoders (forward + backward of two views through encoder, projection
head and NT-Xent), against a 2048³ fp32 matmul timed in the same run: a guard that the model's kernels stay
near what the CPU's matmul reaches, so the time to accuracy is a FLOPs question, not a kernel one.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and
backward). Arms alternate (matmul, encoder, matmul, ...) and the median of ``--repeats`` is reported.

    python -m benchmarks.train_flops [--batch 256] [--repeats 7] [--threads 1] [--encoders small_cnn small_cnn_s2]
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
from repflow.contrastive import nt_xent_loss  # noqa: E402
from repflow.models import ProjectionHead, build_encoder  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoders", nargs="+", default=["small_cnn", "small_cnn_s2"], help="first = the guarded default")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--matmul", type=int, default=2048, help="side of the square fp32 matmul")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    a = torch.rand(args.matmul, args.matmul, generator=torch.Generator().manual_seed(1))
    b = torch.rand(args.matmul, args.matmul, generator=torch.Generator().manual_seed(2))
    arms: dict[str, Callable[[], None]] = {f"matmul {args.matmul}³ fp32": lambda: torch.mm(a, b)}
    arms.update({f"{name}: SimCLR step, batch 2×{args.batch}": training_step(name, args.batch)
                 for name in args.encoders})
    flops = {label: counted_flops(fn) for label, fn in arms.items()}
    for fn in arms.values():
        fn()
    seconds: dict[str, list[float]] = {label: [] for label in arms}
    for r in range(args.repeats):
        for label, fn in arms.items():
            t0 = time.perf_counter()
            fn()
            seconds[label].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{args.repeats}", flush=True)
    matmul_label = next(iter(arms))
    peak = flops[matmul_label] / statistics.median(seconds[matmul_label])
    rows = [{"arm": label, "GFLOP per call": flops[label] / 1e9, "seconds (median)": statistics.median(t),
             "GFLOP/s": flops[label] / statistics.median(t) / 1e9,
             "share of matmul GFLOP/s": flops[label] / statistics.median(t) / peak} for label, t in seconds.items()]
    default = rows[1]
    guard = default["share of matmul GFLOP/s"] >= GUARD
    write_results("train_flops", "Training-step FLOP/s vs a same-run fp32 matmul", rows,
                  [f"torch threads {torch.get_num_threads()}; FLOPs from torch.utils.flop_counter (forward + backward;"
                   f" elementwise ops such as batch norm and ReLU count zero);"
                   f" {args.repeats} interleaved rounds, median",
                   f"guard (issue 21): {default['arm']} at {default['share of matmul GFLOP/s']:.0%} of the matmul's "
                   f"GFLOP/s, needs ≥ {GUARD:.0%}: {'met' if guard else 'not met'}"],
                  extra={"guard": {"measured": default["share of matmul GFLOP/s"], "target": f">= {GUARD}",
                                   "met": guard}, "seconds": seconds, "args": vars(args)})


if __name__ == "__main__":
    main()
