"""What the orchestration costs: the image flow with the Ray task runner (each stage a Ray task), the
same flow with its stages on the flow's thread pool (independent stages side by side), and the nine
stages through the stage runner without Prefect, side by side in one run on the default data
(Fashion-MNIST), each in a fresh work folder (so nothing is cached), alternated ``--repeats`` times. Then
what per-stage code versions save: a `repflow run` before and after an unrelated edit.

Small params keep one pass under a minute: the orchestration cost per stage does not depend on how
long the stage computes, so the seconds added are what matter, not the ratio. Also reported: the
one-off start of Prefect's temporary server and of Ray, and a fully cached rerun of the flow.

    python -m benchmarks.flow_overhead [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import yaml  # noqa: E402

from benchmarks._common import RESULTS, mean_std, write_results  # noqa: E402

SMALL = {
    "seed": 0, "device": "cpu",
    "prep": {"source": "fashion-mnist", "per_class": 30, "test_per_class": 10, "val_fraction": 0.2, "shard_size": 128,
             "image_format": "png", "train_order": "source"},
    "generate": {"epochs": 2, "batch_size": 64, "channels": 16, "judge_epochs": 2, "quality_samples": 100,
                 "anchors": 60, "views": 2, "shard_size": 100},
    "select": {"method": "full"},
    "train": {"encoder": "small_cnn", "width": 8, "proj_dim": 16, "epochs": 2, "batch_size": 64},
    "evaluate": {"probe_epochs": 30, "eps": [0.03137255], "pgd_steps": 3, "max_test": 50, "alf_epochs": 1,
                 "alf_steps": 2, "compile": False},
    "distill": {"ipc": 2, "iterations": 3, "real_per_class": 8, "eval_archs": ["convnet", "mlp"], "eval_seeds": 1,
                "eval_epochs": 3},
    "zoo": {"members": ["convnet", "mlp"], "epochs": 1},
    "transfer": {"attacks": ["mifgsm"], "eps": [0.1], "steps": 2, "svd_iterations": 5, "max_test": 50,
                 "batch_size": 50, "compile": False},
}


def new_workdir(root: Path, name: str) -> Path:
    ws = root / name
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(SMALL))
    return ws


def direct(ws: Path) -> float:
    """The nine stages through the stage runner in declaration order, no Prefect."""
    from repflow import tracking
    from repflow.family import get_family, load_params
    from repflow.stage import Workspace, run_in

    t0 = time.perf_counter()
    w = Workspace.at(ws)
    params = load_params(w.params_file)
    tracking.configure(w.root)
    for stage in get_family("image").stages:
        run_in(w, stage, params)
    return time.perf_counter() - t0


def via_flow(ws: Path, runner: str) -> float:
    from repflow.family import get_family
    from repflow.flow import flow_with_runner

    t0 = time.perf_counter()
    flow_with_runner(get_family("image"), runner)(params_file="params.yaml", workdir=str(ws))
    return time.perf_counter() - t0


def after_unrelated_edit(root: Path, api_url: str) -> dict[str, float]:
    """A copy of the code, one `repflow run` (cold), an edit of repflow/cli.py, the same run again: with
    per-stage code versions every stage stays cached; with one version for the whole tree (before) the
    edit invalidated every stage, so the second run cost as much as the first."""
    import shutil
    import subprocess
    import sys

    code = root / "code"
    shutil.copytree(Path(__file__).resolve().parent.parent / "repflow", code / "repflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    ws = new_workdir(root, "edit")
    env = {**os.environ, "PYTHONPATH": str(code), "PREFECT_API_URL": api_url}
    env.pop("MLFLOW_TRACKING_URI", None)

    def run() -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "repflow", "run", "--workdir", str(ws)], env=env, check=True,
                       capture_output=True)
        return time.perf_counter() - t0

    cold = run()
    with open(code / "repflow" / "cli.py", "a") as fh:
        fh.write("\n# an unrelated edit\n")
    warm = run()
    return {"cold_s": cold, "after_edit_s": warm, "saved_s": cold - warm}


ARMS = {"direct": ("stages through the runner, no Prefect", direct),
        "local": ("Prefect flow, stages one at a time in the flow's process", lambda ws: via_flow(ws, "local")),
        "ray": ("Prefect flow, RayTaskRunner (each stage a Ray task, independent ones side by side)",
                lambda ws: via_flow(ws, "ray"))}


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
            from prefect.settings import PREFECT_API_URL

            edit = after_unrelated_edit(root, PREFECT_API_URL.value())
            print(f"unrelated edit: {edit}", flush=True)
    d_m, _ = mean_std(times["direct"])
    rows = []
    for arm, (label, _) in ARMS.items():
        m, s = mean_std(times[arm])
        rows.append({"how": label, "seconds_mean": m, "seconds_std": s, "added_s": m - d_m, "vs_direct": m / d_m})
    rows.append({"how": "Prefect flow, all nine stages cached", "seconds_mean": cached, "seconds_std": 0.0,
                 "added_s": cached - d_m, "vs_direct": cached / d_m})
    before = json.loads((RESULTS / "flow_overhead.json").read_text()) if (RESULTS / "flow_overhead.json").exists() \
        else {"rows": []}
    for row, old in zip(rows, before["rows"][:4]):  # the same four arms: direct, local, ray, cached
        row["before: vs_direct"] = old["vs_direct"]
    rows.append({"how": "`repflow run` after an edit of repflow/cli.py (subprocess, server up)",
                 "seconds_mean": edit["after_edit_s"], "seconds_std": 0.0, "added_s": None, "vs_direct": None,
                 "before: vs_direct": None})
    rows.append({"how": "the same run before the edit, nothing cached (= the edit's cost with one code version "
                        "for the whole tree)", "seconds_mean": edit["cold_s"], "seconds_std": 0.0, "added_s": None,
                 "vs_direct": None, "before: vs_direct": None})
    write_results("flow_overhead",
                  "Orchestration overhead on Fashion-MNIST (small params): Ray task runner vs local flow vs direct",
                  rows,
                  [f"{args.repeats} alternated repeats, fresh work folder each, nine stages, {args.threads} torch "
                   f"thread(s) in the driver and 1 in each Ray worker; Ray already running and Prefect's temporary "
                   f"server already up for every arm",
                   f"one-off costs not in the rows: Prefect temporary server start {server_s:.1f} s, "
                   f"Ray start {ray_s:.1f} s"],
                  extra={"server_start_s": server_s, "ray_start_s": ray_s, "raw": times, "params": SMALL,
                         "unrelated_edit": edit, "before": before["rows"]})


if __name__ == "__main__":
    main()
