"""RCS at CPU scale: ACL on the full training set vs on an RCS coreset vs on a random coreset.

Every arm runs the real select → train → evaluate stages on Fashion-MNIST with the same schedule
(``--warmup`` epochs on all images, then the coreset re-selected every ``--every`` epochs, ``--epochs``
in total) and is evaluated with SLF and ALF (clean and PGD-20 accuracy at ε = 8/255) and the
representational divergence on held-out test images. Wall time = warm-up + training + every selection.
A last section times RCS's candidate-gradient scoring in process vs fanned out on Ray workers.

    python -m benchmarks.rcs [--seeds 3] [--per-class 100] [--epochs 8] [--warmup 2] [--every 3] [--method acl]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from benchmarks._common import RESULTS, mean_std, write_results  # noqa: E402
from repflow import tracking  # noqa: E402
from repflow.config import parse_params  # noqa: E402
from repflow.report import line_plot  # noqa: E402
from repflow.shards import ShardSet  # noqa: E402
from repflow.stage import run_stage# noqa: E402
from repflow.families.image.stages._contrastive import choose_coreset, load_training_state, new_models, training_set  # noqa: E402

ARMS = [("full", 1.0), ("rcs", 0.1), ("random", 0.1), ("rcs", 0.2), ("random", 0.2)]
EPS = 8 / 255


def arm_params(args, seed: int, method: str, fraction: float) -> dict:
    return {
        "seed": seed, "device": "cpu",
        "prep": {"source": "fashion-mnist", "per_class": args.per_class, "test_per_class": 100},
        "select": {"method": method, "fraction": fraction, "warmup_epochs": args.warmup, "every": args.every,
                   "val_size": 128, "candidate_batch": 32},
        "train": {"method": args.method, "encoder": "small_cnn", "width": 16, "proj_dim": 32, "epochs": args.epochs,
                  "batch_size": 128, "lr": 2e-3, "adversarial": {"eps": EPS, "alpha": 2.5 * EPS / 2, "steps": 2}},
        "evaluate": {"eps": [EPS], "pgd_steps": 20, "max_test": 500, "alf_epochs": 2, "alf_steps": 3,
                     "probe_epochs": 30},
    }


def run_arm(root: Path, shards: Path, raw: dict) -> dict:
    p = parse_params(raw)
    sel = run_stage("image.select", p, {"shards": shards, "views": None}, root / "select")
    enc = run_stage("image.train", p, {"shards": shards, "views": None, "selection": sel}, root / "train")
    ev = run_stage("image.evaluate", p, {"shards": shards, "encoder": enc}, root / "evaluate")
    s = json.loads((sel / "selection.json").read_text())
    h = json.loads((enc / "history.json").read_text())
    m = json.loads((ev / "metrics.json").read_text())
    selection = s["selection_seconds"] + h["selection_seconds"]
    return {"slf_clean": m["clean_acc"], "slf_robust": m["robust_acc_mean"], "alf_clean": m["alf_clean_acc"],
            "alf_robust": m["alf_robust_acc_mean"], "rd": m["representational_divergence"],
            "selection_s": selection, "total_s": s["warmup_seconds"] + h["train_seconds"] + selection}


def ray_scoring(root: Path, shards: Path, raw: dict, workers: int) -> float:
    """Seconds of one RCS selection on the warmed-up model of ``root`` with ``workers`` Ray tasks."""
    p = parse_params({**raw, "select": {**raw["select"], "workers": workers}})
    data = ShardSet(shards)
    images, _, _ = training_set(p, data, None)
    enc, head, ec, hc = new_models(p, data)
    load_training_state(root / "select" / "warmup.safetensors", enc, head)
    _, seconds = choose_coreset(p, enc, head, ec, hc, images, epoch=p.select.warmup_epochs, device=torch.device("cpu"))
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--method", default="acl", choices=["acl", "dynacl"])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0 = torch's default; 1 keeps timings stable on a shared 2-core CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    results: dict[tuple[str, float], list[dict]] = {arm: [] for arm in ARMS}
    scoring = {}
    with tempfile.TemporaryDirectory(prefix="repflow-rcs-") as tmp:
        base = Path(tmp)
        tracking.configure(base)
        shards = run_stage("image.prep", parse_params(arm_params(args, 0, "full", 1.0)), {}, base / "prep")
        n_train = ShardSet(shards).count("train")
        for seed in range(args.seeds):
            for method, fraction in ARMS:
                root = base / f"s{seed}-{method}-{fraction}"
                row = run_arm(root, shards, arm_params(args, seed, method, fraction))
                results[(method, fraction)].append(row)
                print(f"seed {seed} {method} {fraction}: {row}", flush=True)
        raw = arm_params(args, 0, "rcs", 0.2)
        for workers in (1, 2):
            scoring[workers] = ray_scoring(base / "s0-rcs-0.2", shards, raw, workers)
    full_time = mean_std([r["total_s"] for r in results[("full", 1.0)]])[0]
    rows = []
    for (method, fraction), runs in results.items():
        row = {"arm": f"{method}" + ("" if method == "full" else f" @ {fraction:g}")}
        for key in ("slf_clean", "slf_robust", "alf_clean", "alf_robust", "rd"):
            m, s = mean_std([r[key] for r in runs])
            row[key] = f"{m:.4f} ± {s:.4f}"
        t, ts = mean_std([r["total_s"] for r in runs])
        row["selection s"] = f"{mean_std([r['selection_s'] for r in runs])[0]:.1f}"
        row["total s"] = f"{t:.1f} ± {ts:.1f}"
        row["speed-up"] = f"{full_time / t:.2f}×"
        rows.append(row)
    for fraction in (0.1, 0.2):
        xs = [r["alf_robust"] for r in results[("rcs", fraction)]]
        ys = [r["alf_robust"] for r in results[("random", fraction)]]
        print(f"fraction {fraction}: RCS − random ALF robust per seed {[round(a - b, 4) for a, b in zip(xs, ys)]}")
    RESULTS.mkdir(exist_ok=True)
    fr = [0.1, 0.2]
    line_plot(fr, {name: [mean_std([r["alf_robust"] for r in results[(name, f)]])[0] for f in fr]
                   for name in ("rcs", "random")} | {"full": [mean_std([r["alf_robust"] for r in
                                                                          results[("full", 1.0)]])[0]] * 2},
              RESULTS / "rcs_robust.png", xlabel="coreset fraction", ylabel="ALF PGD-20 accuracy (ε=8/255)",
              title=f"{args.method.upper()} on Fashion-MNIST ({n_train} train images)")
    notes = [
        f"{args.method.upper()} (ε 8/255, 2 PGD steps), small_cnn width 16, {args.epochs} epochs, "
        f"warm-up {args.warmup}, "
        f"re-selection every {args.every}; {n_train} training images, {args.seeds} seeds (mean ± std).",
        "slf/alf = standard / adversarial linear finetuning; *_robust = PGD-20 accuracy at ε = 8/255 on 500 test "
        "images; rd = representational divergence KL(p(x) ‖ p(x̃)) on the same held-out images (lower = more robust "
        "representation).",
        f"total s = warm-up + training + all selections (seconds, CPU, {torch.get_num_threads()} torch thread(s)); "
        "speed-up = full / arm.",
        f"RCS candidate scoring, one selection on the warmed-up seed-0 model: in process {scoring[1]:.1f} s, "
        f"Ray 2 workers {scoring[2]:.1f} s (ratio {scoring[1] / scoring[2]:.2f}×).",
        f"wall time of the benchmark: {(time.perf_counter() - t_start) / 60:.1f} min",
    ]
    write_results("rcs", "RCS vs random coreset vs full data (ACL)", rows, notes,
                  {"runs": {f"{m}@{f}": v for (m, f), v in results.items()}, "ray_scoring_seconds": scoring})


if __name__ == "__main__":
    main()
