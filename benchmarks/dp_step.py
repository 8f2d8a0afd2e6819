"""CPU cost of one data-parallel SimCLR step: 2 gloo processes (torch.multiprocessing, no Ray) against one process,
one torch thread each, in one run. The cheap, load-robust measure behind benchmarks/scaling.py: CPU seconds per
step are what a worker spends, whatever the scheduler does with wall time on a shared machine.

The step is :func:`repflow.families.image.contrastive.train_contrastive`'s (small_cnn width 32 + projection head 64,
NT-Xent, Adam, 28×28 one-channel images, global batch 256, the default augmentation): each view through the
encoder on its own, each view's projections gathered with gradients.

Arms: one process on the global batch (the reference a 2-rank step should halve) and on one rank's half;
two ranks with batch norm synchronised over the group (:func:`repflow.data_parallel.sync_batch_norm`) and, to
separate the collectives' cost from the rest, with each rank's batch norm local. Every 2-rank row counts the
collectives of one step. A last row times lone all-reduces of one batch norm's statistics (129 float64).

Efficiency = one process's CPU per global step / the two ranks' summed CPU per step (1.0: data parallelism
costs no CPU); with both ranks on their own core the wall-clock speed-up is at most 2 × that.

    python -m benchmarks.dp_step [--steps 8] [--warmup 2] [--batch 256] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from benchmarks._common import machine  # noqa: E402
from repflow.data_parallel import average_gradients, broadcast_module, gather_with_grad, local_slice, \
    sync_batch_norm  # noqa: E402
from repflow.families.image.augment import random_views  # noqa: E402
from repflow.families.image.contrastive import nt_xent_loss  # noqa: E402
from repflow.families.image.models import ProjectionHead, build_encoder  # noqa: E402
from repflow.families.image.params import AugmentParams  # noqa: E402

ENC = {"name": "small_cnn", "in_channels": 1, "width": 32, "mean": [0.286], "std": [0.353]}
TWO_RANK_ARMS = (True, False)  # batch norm synchronised, local


def _models(sync: bool):
    torch.manual_seed(0)
    encoder = build_encoder(ENC)
    head = ProjectionHead(encoder.out_dim, 64)
    if sync:
        encoder, head = sync_batch_norm(encoder, "cpu"), sync_batch_norm(head, "cpu")
    broadcast_module(encoder)
    broadcast_module(head)
    return encoder.train(), head.train()


def _images(batch: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def _time_steps(sync: bool, batch: int, rows: slice, steps: int, warmup: int) -> dict:
    """Train ``warmup + steps`` steps of the global ``batch`` on this process's ``rows``; the last ``steps`` are
    timed: (CPU s, wall s) per step, the last loss, collectives per step."""
    encoder, head = _models(sync)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-6)
    x = _images(batch).float().div_(255)
    augment = AugmentParams().model_dump()
    calls = _count_collectives()
    for i in range(warmup + steps):
        if i == warmup:
            cpu, wall, calls["n"] = time.process_time(), time.perf_counter(), 0
        g = torch.Generator().manual_seed(i)
        v1, v2 = random_views(x, g, **augment)[rows], random_views(x, g, **augment)[rows]
        z1, z2 = gather_with_grad(head(encoder(v1))), gather_with_grad(head(encoder(v2)))
        loss = nt_xent_loss(z1, z2, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(params)
        opt.step()
    return {"cpu_s_per_step": (time.process_time() - cpu) / steps,
            "wall_s_per_step": (time.perf_counter() - wall) / steps, "loss": float(loss),
            "collectives_per_step": calls["n"] / steps}


def _count_collectives() -> dict:
    """Count this process's all-reduces and all-gathers from here on (wraps torch.distributed's functions)."""
    calls = {"n": 0}
    for name in ("all_reduce", "all_gather"):
        original = getattr(dist, name)
        original = getattr(original, "__wrapped_by_dp_step__", original)

        def counted(*args, _original=original, **kwargs):
            calls["n"] += 1
            return _original(*args, **kwargs)

        counted.__wrapped_by_dp_step__ = original
        setattr(dist, name, counted)
    return calls


def _lone_all_reduces(count: int) -> dict:
    stats = torch.zeros(129, dtype=torch.float64)
    dist.barrier()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        dist.all_reduce(stats)
    return {"cpu_s_per_step": (time.process_time() - cpu) / count,
            "wall_s_per_step": (time.perf_counter() - wall) / count}


def _rank(rank: int, size: int, port: int, out: str, batch: int, steps: int, warmup: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        found = {}
        rows = local_slice(batch, rank, size)
        for sync in TWO_RANK_ARMS:
            dist.barrier()
            found[f"2 ranks/{'sync' if sync else 'local'}"] = _time_steps(sync, batch, rows, steps, warmup)
        found["lone all-reduce"] = _lone_all_reduces(200)
        Path(out, f"rank{rank}.json").write_text(json.dumps(found))
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--batch", type=int, default=256, help="global batch")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    rows = []
    for label, part in (("1 process, global batch", slice(None)), ("1 process, one rank's half",
                                                                   local_slice(args.batch, 0, 2))):
        found = _time_steps(False, args.batch, part, args.steps, args.warmup)
        rows.append({"arm": label, "bn": "local", "ranks": 1, **found})
        print(json.dumps(rows[-1]), flush=True)
    with tempfile.TemporaryDirectory(prefix="dp-step-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_rank, args=(2, port, tmp, args.batch, args.steps, args.warmup), nprocs=2, join=True)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(2)]
    for key in ranks[0]:
        arm, _, bn = key.partition("/")
        per_rank = [r[key] for r in ranks]
        rows.append({"arm": arm, "bn": bn, "ranks": 2,
                     "cpu_s_per_step": statistics.fmean(r["cpu_s_per_step"] for r in per_rank),
                     "wall_s_per_step": max(r["wall_s_per_step"] for r in per_rank),
                     **({"loss": per_rank[0]["loss"], "collectives_per_step": per_rank[0]["collectives_per_step"]}
                        if bn else {})})
        print(json.dumps(rows[-1]), flush=True)
    reference = next(r["cpu_s_per_step"] for r in rows if r["arm"] == "1 process, global batch")
    for r in rows:
        if r["arm"] == "2 ranks":
            r["efficiency"] = reference / (2 * r["cpu_s_per_step"])
    summary = {"machine": machine(), "load_before": load, "load_after": os.getloadavg()[0], "args": vars(args),
               "rows": rows}
    for r in rows:
        print(" | ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(f"load average before {load:.2f}, after {summary['load_after']:.2f}")
    if args.out is not None:
        from repflow.manifest import atomic_write_text

        atomic_write_text(args.out, json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
