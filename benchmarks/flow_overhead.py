"""What the orchestration costs: the main flow with the Ray task runner (each stage a Ray task), the
same flow with its stages run one after another in the flow's process, and the nine stage functions
called directly, side by side in one run on the default data (Fashion-MNIST), each in a fresh work
folder (so nothing is cached), alternated ``--repeats`` times.

Small params keep one pass under a minute: the orchestration cost per stage does not depend on how
long the stage computes, so the seconds added are what matter, not the ratio. Also reported: the
one-off start of Prefect's temporary server and of Ray, and a fully cached rerun of the flow.

    python -m benchmarks.flow_overhead [--repeats 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import yaml  # noqa: E402

from benchmarks._common import mean_std, write_results  # noqa: E402

SMALL = {
    "seed": 0, "device": "cpu",
    "prep": {"source": "fashion-mnist", "per_class": 30, "test_per_class": 10, "val_fraction": 0.2, "shard_size": 128},
    "generate": {"epochs": 2, "batch_size": 64, "channels": 16, "judge_epochs": 2, "quality_samples": 100,
                 "anchors": 60, "views": 2, "shard_size": 100},
    "select": {"method": "full"},
    "train": {"encoder": "small_cnn", "width": 8, "proj_dim": 16, "epochs": 2, "batch_size": 64},
    "evaluate": {"probe_epochs": 30, "eps": [0.03137255], "pgd_steps": 3, "max_test": 50, "alf_epochs": 1,
                 "alf_steps": 2},
    "distill": {"ipc": 2, "iterations": 3, "real_per_class": 8, "eval_archs": ["convnet", "mlp"], "eval_seeds": 1,
                "eval_epochs": 3},
    "zoo": {"members": ["convnet", "mlp"], "epochs": 1},
    "transfer": {"attacks": ["mifgsm"], "eps": [0.1], "steps": 2, "svd_iterations": 5, "max_test": 50,
                 "batch_size": 50},
}


def new_workdir(root: Path, name: str) -> Path:
    ws = root / name
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(SMALL))
    return ws


def direct(ws: Path) -> float:
    """The nine stage functions in the flow's order, no Prefect."""
    from repflow import tracking
    from repflow.config import load_params
    from repflow.stage import Workspace
    from repflow.stage import run_stage

    t0 = time.perf_counter()
    w = Workspace.at(ws)
    params = load_params(w.params_file)
    tracking.configure(w.root)
    shards = run_stage("image.prep", params, {}, w.out("prep"))
    views = run_stage("image.generate", params, {"shards": shards}, w.out("generate"))
    run_stage("image.distill", params, {"shards": shards, "generator": views}, w.out("distill"))
    selection = run_stage("image.select", params, {"shards": shards, "views": views}, w.out("select"))
    enc = run_stage("image.train", params, {"shards": shards, "views": views, "selection": selection}, w.out("train"))
    ev = run_stage("image.evaluate", params, {"shards": shards, "encoder": enc}, w.out("evaluate"))
    zoo_dir = run_stage("image.zoo", params, {"shards": shards}, w.out("zoo"))
    run_stage("image.transfer", params, {"shards": shards, "zoo": zoo_dir, "encoder": enc, "evaluation": ev},
              w.out("transfer"))
    run_stage("image.register", params, {"encoder": enc, "evaluation": ev}, w.out("register"))
    return time.perf_counter() - t0


def via_flow(ws: Path, runner: str) -> float:
    from repflow.families.image.flow import main_flow_with_runner

    t0 = time.perf_counter()
    main_flow_with_runner(runner)(params_file="params.yaml", workdir=str(ws))
    return time.perf_counter() - t0


ARMS = {"direct": ("stage functions called directly", direct),
        "local": ("Prefect flow, stages in the flow's process", lambda ws: via_flow(ws, "local")),
        "ray": ("Prefect flow, RayTaskRunner (each stage a Ray task)", lambda ws: via_flow(ws, "ray"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads in this process (Ray workers with one CPU run one thread)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from prefect.testing.utilities import prefect_test_harness

    from repflow.cluster import ensure_ray

    with tempfile.TemporaryDirectory(prefix="repflow-bench-") as tmp:
        root = Path(tmp)
        os.environ["PREFECT_HOME"] = str(root / "prefect-home")
        os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(root / "prefect-results")
        t0 = time.perf_counter()
        ensure_ray()
        ray_s = time.perf_counter() - t0
        direct(new_workdir(root, "warmup"))  # first-call imports and torch.export warm-up
        t0 = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=180):
            server_s = time.perf_counter() - t0
            for arm in ("local", "ray"):
                ARMS[arm][1](new_workdir(root, f"{arm}-warmup"))  # Ray workers import torch once
            times: dict[str, list[float]] = {arm: [] for arm in ARMS}
            for i in range(args.repeats):
                for arm, (_, fn) in ARMS.items():
                    times[arm].append(fn(new_workdir(root, f"{arm}{i}")))
                print(f"repeat {i}: " + ", ".join(f"{a} {t[-1]:.1f} s" for a, t in times.items()), flush=True)
            cached = via_flow(root / f"local{args.repeats - 1}", "local")
    d_m, _ = mean_std(times["direct"])
    rows = []
    for arm, (label, _) in ARMS.items():
        m, s = mean_std(times[arm])
        rows.append({"how": label, "seconds_mean": m, "seconds_std": s, "added_s": m - d_m, "vs_direct": m / d_m})
    rows.append({"how": "Prefect flow, all nine stages cached", "seconds_mean": cached, "seconds_std": 0.0,
                 "added_s": cached - d_m, "vs_direct": cached / d_m})
    write_results("flow_overhead",
                  "Orchestration overhead on Fashion-MNIST (small params): Ray task runner vs local flow vs direct",
                  rows,
                  [f"{args.repeats} alternated repeats, fresh work folder each, nine stages, {args.threads} torch "
                   f"thread(s) in the driver and 1 in each Ray worker; Ray already running and Prefect's temporary "
                   f"server already up for every arm",
                   f"one-off costs not in the rows: Prefect temporary server start {server_s:.1f} s, "
                   f"Ray start {ray_s:.1f} s"],
                  extra={"server_start_s": server_s, "ray_start_s": ray_s, "raw": times, "params": SMALL})


if __name__ == "__main__":
    main()
