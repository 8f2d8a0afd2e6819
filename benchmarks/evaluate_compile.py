"""Does ``evaluate.compile`` pay on the default run (issue 34, fast defaults)? The PGD grid of ``image.evaluate``
with and without ``torch.compile``, compile time included.

The default grid is 2 probes (SLF, ALF) × 4 ε = 8 Ray tasks, each :func:`robust_accuracy_job` on 500 test
images, PGD-10 in batches of 250; Ray spreads them over one worker process per CPU, so on 2 CPUs a worker runs
4 tasks in a row. Here one fresh Python process per mode runs those 4 tasks (the 4 ε of one probe) one after
another with a cold inductor cache (an empty ``TORCHINDUCTOR_CACHE_DIR``, as on a fresh machine or after a
torch upgrade), and its CPU seconds are measured task by task: the first compiled task carries the compile,
later ones recompile for their new model instance. The encoder is the default architecture at its default
width, randomly initialised with a random probe (the cost does not depend on the weights); robust accuracies
of the two modes are printed side by side to show they agree.

    python -m benchmarks.evaluate_compile [--encoder small_cnn] [--tasks 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._common import write_results  # noqa: E402

EPS = [1 / 255, 2 / 255, 4 / 255, 8 / 255]
PROTOCOL = {"images": 500, "steps": 10, "step_ratio": 2.5, "batch_size": 250, "width": 32}


def worker(encoder_name: str, compile: bool, tasks: int) -> list[dict]:
    """The tasks one Ray worker runs, in this process: CPU and wall seconds and robust accuracy of each."""
    from repflow.families.image.models import ProbedEncoder, build_encoder
    from repflow.families.image.sources import read_source
    from repflow.families.image.stages.evaluate import robust_accuracy_job

    torch.set_num_threads(1)
    src = read_source("fashion-mnist")
    x = torch.from_numpy(src.test_images[:PROTOCOL["images"]]).unsqueeze(1).float().div(255)
    y = torch.from_numpy(src.test_labels[:PROTOCOL["images"]].astype("int64"))
    config = {"name": encoder_name, "in_channels": 1, "width": PROTOCOL["width"], "mean": [0.286], "std": [0.353]}
    torch.manual_seed(0)
    encoder = build_encoder(config)
    state = ProbedEncoder(encoder, torch.nn.Linear(encoder.out_dim, 10)).state_dict()
    rows = []
    for eps in EPS[:tasks]:
        cpu, wall = time.process_time(), time.perf_counter()
        out = robust_accuracy_job(config, state, x, y, eps, PROTOCOL["steps"], PROTOCOL["step_ratio"] * eps /
                                  PROTOCOL["steps"], 0, PROTOCOL["batch_size"], "cpu", compile)
        rows.append({"eps": eps, "robust_acc": out["robust_acc"], "cpu_s": time.process_time() - cpu,
                     "wall_s": time.perf_counter() - wall})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default="small_cnn")
    ap.add_argument("--tasks", type=int, default=4, help="tasks per worker (the default grid on 2 CPUs: 4)")
    ap.add_argument("--worker", choices=["eager", "compile"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.encoder, args.worker == "compile", args.tasks)))
        return
    rows, totals = [], {}
    for mode in ("eager", "compile"):
        with tempfile.TemporaryDirectory(prefix="inductor-cold-") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, "-m", "benchmarks.evaluate_compile", "--encoder", args.encoder,
                                  "--tasks", str(args.tasks), "--worker", mode], env=env, check=True,
                                 capture_output=True, text=True)
        tasks = json.loads(out.stdout.strip().splitlines()[-1])
        totals[mode] = sum(t["cpu_s"] for t in tasks)
        rows += [{"mode": mode, "task": i + 1, "eps × 255": round(t["eps"] * 255), **t} for i, t in enumerate(tasks)]
        print(mode, tasks, flush=True)
    later = {m: [r["cpu_s"] for r in rows if r["mode"] == m and r["task"] > 1] for m in totals}
    notes = [f"encoder {args.encoder} (width {PROTOCOL['width']}, random init) + linear probe; {PROTOCOL['images']} "
             f"Fashion-MNIST test images, PGD-{PROTOCOL['steps']}, step {PROTOCOL['step_ratio']}ε/steps, batch "
             f"{PROTOCOL['batch_size']}; one fresh process per mode, cold inductor cache, 1 torch thread",
             f"one worker's {args.tasks} tasks: eager {totals['eager']:.1f} CPU s, compiled {totals['compile']:.1f} "
             f"CPU s ({totals['compile'] / totals['eager']:.2f}×, compile included)",
             "tasks after the first: eager " + ", ".join(f"{s:.1f}" for s in later["eager"]) + "; compiled "
             + ", ".join(f"{s:.1f}" for s in later["compile"]) + " CPU s",
             "robust accuracy per ε equal in both modes: " + str(all(
                 abs(a["robust_acc"] - b["robust_acc"]) < 0.005 for a, b in
                 zip([r for r in rows if r["mode"] == "eager"], [r for r in rows if r["mode"] == "compile"])))]
    write_results(f"evaluate_compile_{args.encoder}", f"evaluate.compile on the default PGD grid: {args.encoder}",
                  rows, notes, extra={"protocol": PROTOCOL, "totals_cpu_s": totals, "args": vars(args)})


if __name__ == "__main__":
    main()
