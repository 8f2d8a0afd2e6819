"""Data-parallel scaling of the image family's training loop (``train.workers``): samples/s and peak memory for
1 vs 2 Ray Train workers on the same global batch, and the final probe accuracy of both, so that speed is not
bought with a different model.

Both arms run through :func:`repflow.cluster.run_data_parallel` (Ray Train's ``TorchTrainer``, gloo on CPU),
each worker with ONE torch thread, so 2 workers use 2 cores where 1 worker uses one: like for like per core.
Data and training are ``image.train``'s defaults on ``image.prep``'s default data (Fashion-MNIST, 5,400
training images; :func:`benchmarks.time_to_accuracy.default_run_data`): SimCLR, small_cnn width 32,
NT-Xent, global batch 256, Adam 1e-3. Each round is one seed (the same start, data and batches for both
arms); the arms alternate inside a round (1 then 2 workers, then the next round 2 then 1), so load on a
shared machine hits both alike. Samples/s: images trained per wall second from the end of the first epoch to
the end of the last (Ray start-up and the first epoch's warm-up excluded), measured on rank 0. Peak memory:
each worker's peak resident set (``ru_maxrss``), summed over the workers. Probe: ``image.evaluate``'s linear
probe (30 epochs) on the frozen encoder, test accuracy on 2,000 Fashion-MNIST test images.

The machine's load average is recorded before every arm (the machine is shared; read the rows with it).

Sections:
- **Ray Train, CPU** (above): the target is >= 1.7x samples/s at 2 workers with the same probe accuracy.
- **In-memory vs streaming** (``--streaming``): one worker reading batches from the tensor in memory vs from the
  shards; filled in when the train stage streams (another change); until then it says so.
- **GPU** (runs when CUDA is present, else skips with a line): one GPU, a 1-process NCCL group, the
  data-parallel SimCLR step (gather with gradients, synchronised batch norm, gradient all-reduce) against the
  plain step: the same loss and samples/s of both (:func:`benchmarks.gpu_check.data_parallel_step`).

    python -m benchmarks.scaling [--rounds 5] [--epochs 3] [--per-class 600] [--rows FILE] [--streaming]
        [--stream-epochs 2] [--gpu-only]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._common import RESULTS, append_rows, interval_text, read_rows, write_results  # noqa: E402

WHERE_THE_TIME_GOES = (
    "Where 2 workers lose: benchmarks/results/dp_step.md (2 gloo processes, no Ray, one SimCLR step of global batch "
    "256): a rank's CPU per step against one process's on the whole batch gives an efficiency of 0.91 with "
    "synchronised batch norm and 0.94 with local batch norm (0.72 before synchronised batch norm ran on the "
    "batch-norm kernels: var_mean over (N, H, W) cost more than the all-reduces). The 35 collectives per step "
    "cost ~1 ms each. Beyond that, on a 2-core machine Ray's own processes (GCS, raylet, agents, Train's "
    "controller; ray_other_cpu_s) share the two cores with the two workers, where one worker leaves them a core.")


def _load() -> float:
    return os.getloadavg()[0]


class ChildCPU:
    """CPU seconds (user + system) of this process's descendants while an arm runs (Ray's GCS, raylet, agents,
    pooled idle workers and the Train workers), sampled every ``interval`` s from a thread: per process (named as last
    seen: a pooled worker turns into an actor) the last reading minus the first (a process that ends between two
    samples loses at most ``interval`` of its count;
    one seen first mid-arm counts from its start). ``by_name(skip)``: the seconds by process name, leaving out the
    pids in ``skip`` (the data-parallel workers, which report their own CPU)."""

    def __init__(self, interval: float = 0.5):
        import threading

        self.interval, self.first, self.last, self.names = interval, {}, {}, {}
        self._started = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        for proc in psutil.Process().children(recursive=True):
            try:
                times = proc.cpu_times()
                self.names[proc.pid] = proc.name()
            except psutil.Error:
                continue
            self.first.setdefault(proc.pid, 0.0 if self._started else times.user + times.system)
            self.last[proc.pid] = times.user + times.system

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "ChildCPU":
        self._sample()
        self._started = True
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_name(self, skip: set[int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, last in self.last.items():
            if pid not in skip:
                name = self.names[pid]
                out[name] = out.get(name, 0.0) + last - self.first[pid]
        return out


def scaling_loop(job: dict, device: torch.device) -> None:
    """One Ray Train worker: SimCLR on the job's images from the job's seed; rank 0 writes the encoder and the
    timings to ``job["out"]``."""
    import torch.distributed as dist

    from repflow.checkpoints import save_tensors
    from repflow.data_parallel import broadcast_module, sync_batch_norm, world
    from repflow.families.image.contrastive import train_contrastive
    from repflow.families.image.models import ProjectionHead, build_encoder
    from repflow.families.image.params import AugmentParams

    rank, ranks = world()
    torch.manual_seed(job["seed"])
    encoder = build_encoder(job["enc_config"])
    head = ProjectionHead(encoder.out_dim, 64)
    encoder, head = sync_batch_norm(encoder, device), sync_batch_norm(head, device)
    broadcast_module(encoder)
    broadcast_module(head)
    ends: list[tuple[float, float]] = []
    history = train_contrastive(encoder, head, job["images"], epochs=job["epochs"], batch_size=256, lr=1e-3,
                                weight_decay=1e-6, temperature=0.5, augment=AugmentParams().model_dump(),
                                device=device, seed=job["seed"],
                                on_epoch=lambda epoch, stats, opt: ends.append((time.perf_counter(),
                                                                                time.process_time())))
    mine = {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "pid": os.getpid(),
            "timed_cpu_s": ends[-1][1] - ends[0][1], "process_cpu_s": time.process_time()}
    found = [None] * ranks
    dist.all_gather_object(found, mine)
    if rank == 0:
        trained = sum(h["trained"] for h in history[1:])
        out = Path(job["out"])
        save_tensors(out / "encoder.safetensors", encoder.cpu().state_dict(), job["enc_config"])
        (out / "stats.json").write_text(json.dumps({
            "samples_per_s": trained / (ends[-1][0] - ends[0][0]),
            "samples_per_cpu_s": trained / sum(f["timed_cpu_s"] for f in found),
            "peak_mb": sum(f["peak_mb"] for f in found), "peak_mb_per_worker": [f["peak_mb"] for f in found],
            "workers_cpu_s": sum(f["process_cpu_s"] for f in found), "worker_pids": [f["pid"] for f in found],
            "losses": [h["loss"] for h in history], "threads": torch.get_num_threads()}))


def ray_arm(workers: int, seed: int, data: dict, epochs: int) -> dict:
    from benchmarks.time_to_accuracy import probe_accuracy
    from repflow.checkpoints import load_tensors
    from repflow.cluster import run_data_parallel
    from repflow.families.image.models import build_encoder

    enc_config = {"name": "small_cnn", "in_channels": 1, "width": 32, "mean": data["mean"], "std": data["std"]}
    load = _load()
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        out = Path(tmp)
        cpu = time.process_time()
        t0 = time.perf_counter()
        with ChildCPU() as children:
            run_data_parallel(scaling_loop, {"images": data["x_train"], "enc_config": enc_config, "seed": seed,
                                             "epochs": epochs, "out": str(out)},
                              workers=workers, device="cpu", storage=out / "ray", name=f"scaling-{workers}w-{seed}")
        wall = time.perf_counter() - t0
        stats = json.loads((out / "stats.json").read_text())
        ray_cpu = children.by_name(set(stats["worker_pids"]))
        tensors, config = load_tensors(out / "encoder.safetensors")
    encoder = build_encoder(config)
    encoder.load_state_dict(tensors)
    acc = probe_accuracy(encoder.eval(), data, seed)
    return {"seed": seed, "workers": workers, "samples/s": stats["samples_per_s"],
            "samples/cpu_s": stats["samples_per_cpu_s"], "peak_mb": stats["peak_mb"],
            "probe_acc": acc, "final_loss": stats["losses"][-1], "wall_s": wall,
            "driver_cpu_s": time.process_time() - cpu, "workers_cpu_s": stats["workers_cpu_s"],
            "ray_other_cpu_s": sum(ray_cpu.values()), "load_before": load, "worker_threads": stats["threads"],
            "ray_other_cpu_by_name": {k: round(v, 2) for k, v in sorted(ray_cpu.items(), key=lambda kv: -kv[1])}}


def streaming_section(data: dict, epochs: int) -> tuple[list[dict], list[str]]:
    """In-memory vs streamed training set (``train.stream``), one process, one torch thread, seed 0: samples/s
    (wall and per CPU-second, the first epoch excluded) and the process's peak resident memory while
    training (:class:`repflow.memory.PeakMemory`; the shards written before it starts)."""
    try:
        from repflow.families.image.stages._splits import ShardImages
        from repflow.memory import PeakMemory
    except ImportError:
        return [], ["In-memory vs streaming: not measured — the train stage has no streaming data path on this "
                    "branch; rerun `--streaming` once it is merged."]
    from benchmarks.stream import write_shards
    from repflow.families.image.contrastive import train_contrastive
    from repflow.families.image.models import ProjectionHead, build_encoder
    from repflow.families.image.params import AugmentParams

    rows = []
    with tempfile.TemporaryDirectory(prefix="scaling-stream-") as tmp:
        shards = write_shards(Path(tmp) / "shards", data["x_train"].squeeze(1).numpy(), data["y_train"].numpy())
        for arm in ("memory", "stream"):
            torch.manual_seed(0)
            encoder = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 32, "mean": data["mean"],
                                     "std": data["std"]})
            head = ProjectionHead(encoder.out_dim, 64)
            images = data["x_train"] if arm == "memory" else ShardImages(shards, "train", shuffle_buffer=10_000,
                                                                         seed=0)
            ends: list[tuple[float, float]] = []
            scope = PeakMemory()
            before = scope.start()
            history = train_contrastive(encoder, head, images, epochs=epochs, batch_size=256, lr=1e-3,
                                        weight_decay=1e-6, temperature=0.5, augment=AugmentParams().model_dump(),
                                        device=torch.device("cpu"), seed=0,
                                        on_epoch=lambda e, s, o: ends.append((time.perf_counter(),
                                                                              time.process_time())))
            peak = scope.stop()
            trained = sum(h["trained"] for h in history[1:])
            rows.append({"arm": arm, "samples/s": trained / (ends[-1][0] - ends[0][0]),
                         "samples/cpu_s": trained / (ends[-1][1] - ends[0][1]), "rss_before_mb": before,
                         "peak_rss_mb": peak, "final_loss": history[-1]["loss"], "load_before": _load()})
            print(json.dumps(rows[-1]), flush=True)
    note = (f"In-memory vs streaming (one process, seed 0, {len(data['x_train'])} images = "
            f"{data['x_train'].numel() / 2**20:.1f} MiB as uint8, {epochs} epochs, shards of 500, buffer 10000): "
            + "; ".join(f"{r['arm']} {r['samples/s']:.0f} samples/s ({r['samples/cpu_s']:.0f} per CPU-second), "
                        f"peak RSS {r['peak_rss_mb']:.0f} MiB" for r in rows)
            + ". At this size the split is a rounding error beside torch and the model; streaming's memory "
              "bound matters for splits larger than memory (benchmarks/results/stream.md: same accuracy).")
    return rows, [note]


def gpu_section() -> list[str]:
    if not torch.cuda.is_available():
        return ["GPU section: skipped (torch sees no CUDA device)."]
    from benchmarks.gpu_check import data_parallel_step

    row = data_parallel_step(torch.device("cuda"))
    return [f"GPU ({torch.cuda.get_device_name()}, 1-process NCCL group): {json.dumps(row)}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3, help="per arm; the first is warm-up, not timed")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--rows", type=Path, default=RESULTS / "scaling.rows.jsonl")
    ap.add_argument("--streaming", action="store_true")
    ap.add_argument("--stream-epochs", type=int, default=2, help="per streaming arm; the first is not timed")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU section (a lent GPU machine)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    notes = gpu_section()
    if args.gpu_only:
        print("\n".join(notes))
        return
    from benchmarks.time_to_accuracy import default_run_data
    from repflow.cluster import ensure_ray

    ensure_ray(num_cpus=2)
    data = default_run_data(0)
    if args.per_class < 600:  # a random subset of the 540 training images per class (90 % of 600)
        keep = torch.randperm(len(data["x_train"]), generator=torch.Generator().manual_seed(0))[:args.per_class * 9]
        data = {**data, "x_train": data["x_train"][keep], "y_train": data["y_train"][keep]}
    rows = read_rows(args.rows)
    for seed in range(args.rounds):
        order = (1, 2) if seed % 2 == 0 else (2, 1)
        for workers in order:
            if any(r["seed"] == seed and r["workers"] == workers for r in rows):
                continue
            row = ray_arm(workers, seed, data, args.epochs)
            print(json.dumps(row), flush=True)
            rows.append(row)
            append_rows(args.rows, [row])
    stream_rows, stream_notes = (streaming_section(data, args.stream_epochs) if args.streaming else
                                 ([], ["In-memory vs streaming: not run (`--streaming`)."]))
    by = {(r["seed"], r["workers"]): r for r in rows}
    seeds = sorted({s for s, w in by if (s, 1) in by and (s, 2) in by})
    speedups = [by[s, 2]["samples/s"] / by[s, 1]["samples/s"] for s in seeds]
    acc_diffs = [by[s, 2]["probe_acc"] - by[s, 1]["probe_acc"] for s in seeds]
    mem_ratio = [by[s, 2]["peak_mb"] / by[s, 1]["peak_mb"] for s in seeds]
    efficiency = [by[s, 2]["samples/cpu_s"] / by[s, 1]["samples/cpu_s"] for s in seeds]
    summary = {"seeds": len(seeds), "speedup_mean": statistics.fmean(speedups) if speedups else None,
               "speedup_min": min(speedups, default=None), "speedup_max": max(speedups, default=None)}
    notes = [f"2 vs 1 Ray Train workers (1 torch thread each), {len(seeds)} rounds × {args.epochs} epochs "
             f"({len(data['x_train'])} images, global batch 256): samples/s ×{summary['speedup_mean']:.2f} "
             f"(per round {', '.join(f'{s:.2f}' for s in speedups)}; target ≥ 1.7); peak memory (summed over "
             f"workers, Ray's worker runtime included) ×{statistics.fmean(mem_ratio):.2f}; samples per worker "
             f"CPU-second ×{statistics.fmean(efficiency):.2f} (1.0 = no cost of the gathers and all-reduces); "
             f"probe accuracy 2 − 1 workers "
             f"{statistics.fmean(acc_diffs):+.4f} ({interval_text(acc_diffs) if len(acc_diffs) > 1 else 'n=1'}).",
             f"Load average (1 min) before the arms: {min(r['load_before'] for r in rows):.1f}–"
             f"{max(r['load_before'] for r in rows):.1f} on {os.cpu_count()} cores (a shared machine: with more "
             f"runnable threads than cores the scheduler shares CPU per thread, so wall-clock samples/s flatters 2 "
             f"workers; samples per CPU-second depends on it less, though waiting in the collectives costs CPU "
             f"too, more the more loaded the machine).",
             f"CPU: driver {sum(r['driver_cpu_s'] for r in rows):.0f} s + workers "
             f"{sum(r['workers_cpu_s'] for r in rows):.0f} s + Ray's other processes "
             f"{sum(r.get('ray_other_cpu_s', float('nan')) for r in rows):.0f} s over the {len(rows)} arms (GCS, "
             f"raylet, agents, idle pooled workers, Train's controller; by name per arm in scaling.json).",
             WHERE_THE_TIME_GOES,
             *stream_notes, *notes]
    ordered = sorted(rows, key=lambda r: (r["seed"], r["workers"]))
    write_results("scaling", "Data-parallel scaling: 1 vs 2 Ray Train workers (train.workers)",
                  [{k: v for k, v in r.items() if k != "ray_other_cpu_by_name"} for r in ordered], notes,
                  {"summary": summary, "streaming": stream_rows,
                   "ray_other_cpu_by_name": [{"seed": r["seed"], "workers": r["workers"],
                                              **r.get("ray_other_cpu_by_name", {})} for r in ordered]})


if __name__ == "__main__":
    main()
