"""What the orchestration costs: the main flow on tiny params against calling the stage functions
directly, in one run, each in a fresh work folder (so nothing is cached), alternated ``--repeats``
times. Also reported: the one-off start of Prefect's temporary server and of Ray, and a fully
cached rerun of the flow.

    python -m benchmarks.flow_overhead [--repeats 3]
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

TINY = {
    "seed": 0, "device": "cpu",
    "prep": {"source": "mnist5k", "per_class": 50, "test_per_class": 20, "val_fraction": 0.2, "shard_size": 200},
    "train": {"encoder": "small_cnn", "width": 8, "proj_dim": 16, "epochs": 2, "batch_size": 64},
    "evaluate": {"probe_epochs": 20, "eps": [0.01568627, 0.03137255], "pgd_steps": 5, "max_test": 100},
}


def new_workdir(root: Path, name: str) -> Path:
    ws = root / name
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(TINY))
    return ws


def direct(ws: Path) -> float:
    from repflow import tracking
    from repflow.config import load_params
    from repflow.stage import Workspace
    from tasks import evaluate, prep, register, train

    t0 = time.perf_counter()
    w = Workspace.at(ws)
    params = load_params(w.params_file)
    tracking.configure(w.root)
    shards = prep.run(params, w.out("prep"))
    enc = train.run(params, shards, w.out("train"))
    ev = evaluate.run(params, shards, enc, w.out("evaluate"))
    register.run(params, enc, ev, w.out("register"))
    return time.perf_counter() - t0


def via_flow(ws: Path) -> float:
    from flows.pipeline import main_flow

    t0 = time.perf_counter()
    main_flow(params_file="params.yaml", workdir=str(ws))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
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
            via_flow(new_workdir(root, "flow-warmup"))
            times = {"direct": [], "flow": []}
            for i in range(args.repeats):
                times["direct"].append(direct(new_workdir(root, f"direct{i}")))
                times["flow"].append(via_flow(new_workdir(root, f"flow{i}")))
                print(f"repeat {i}: direct {times['direct'][-1]:.2f} s, flow {times['flow'][-1]:.2f} s", flush=True)
            cached = via_flow(root / f"flow{args.repeats - 1}")
    d_m, d_s = mean_std(times["direct"])
    f_m, f_s = mean_std(times["flow"])
    rows = [{"how": "stage functions called directly", "seconds_mean": d_m, "seconds_std": d_s, "vs_direct": 1.0},
            {"how": "Prefect flow (warm temporary server)", "seconds_mean": f_m, "seconds_std": f_s,
             "vs_direct": f_m / d_m},
            {"how": "Prefect flow, all stages cached", "seconds_mean": cached, "seconds_std": 0.0,
             "vs_direct": cached / d_m}]
    write_results("flow_overhead", "Orchestration overhead: main flow vs direct stage calls (tiny params)", rows,
                  [f"{args.repeats} alternated repeats, fresh work folder each; Ray already running for both",
                   f"overhead per run: {f_m - d_m:+.2f} s ({(f_m - d_m) / d_m:+.1%})",
                   f"one-off costs not in the rows: Prefect temporary server start {server_s:.1f} s, "
                   f"Ray start {ray_s:.1f} s"],
                  extra={"server_start_s": server_s, "ray_start_s": ray_s, "raw": times})


if __name__ == "__main__":
    main()
