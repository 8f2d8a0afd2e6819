"""Issue 21's GPU rows, torch only (no Ray / Prefect / MLflow; torchattacks and torchattack join when
importable): PGD-10 and MI-FGSM-10 throughput (eager and ``compile=True``) against the peers, PGD with SVD
logit fusion against PGD, and SSA against MI-FGSM and torchattack's SSA, all raced side by side by
``benchmarks/_attack_arms.py`` on one model and batch. For a machine lent with a GPU:

    python -m benchmarks.gpu_perf --out $OUT            # CUDA, batch 256, 21 rounds
    python -m benchmarks.gpu_perf --device cpu --tiny   # a seconds-long check that the script runs

The model is the zoo's ConvNet (width 32, instance norm) trained for two epochs on synthetic 28×28
"blobs" (no dataset files needed). Writes ``gpu_perf.md`` / ``gpu_perf.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._attack_arms import attack_arms, race, verdicts  # noqa: E402
from benchmarks.gpu_check import blobs  # noqa: E402
from repflow.report import markdown_table  # noqa: E402
from repflow.families.image.zoo import ZOO_SPECS, train_zoo_member  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--spectrum", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--no-compile", action="store_true", help="leave out the compile=True arms")
    ap.add_argument("--tiny", action="store_true", help="batch 16, 2 steps, 1 round, 200 training images")
    args = ap.parse_args()
    if args.tiny:
        args.batch, args.steps, args.repeats = 16, 2, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_perf: torch sees no CUDA device (use --device cpu --tiny for a dry run)")
    if device.type == "cpu":
        torch.set_num_threads(1)
    images, labels = blobs(200 if args.tiny else 4096, 0)
    model = train_zoo_member(ZOO_SPECS["convnet"], images, labels, seed=0, epochs=1 if args.tiny else 2,
                             batch_size=128, num_classes=10, device=device)
    x_test, y_test = blobs(args.batch, 1)
    x, y = x_test.float().div(255).to(device), y_test.to(device)
    arms = attack_arms(model, device, eps=0.1, steps=args.steps, spectrum=args.spectrum, fusion_layer="block2",
                       compiled=not args.no_compile)
    rows, seconds = race(arms, model, x, y, args.repeats)
    lines, targets = verdicts(rows, seconds, steps=args.steps, spectrum=args.spectrum)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (1 thread)"
    report = {"device": name, "torch": torch.__version__, "args": vars(args), "rows": rows, "targets": targets,
              "seconds": seconds}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_perf.json").write_text(json.dumps(report, indent=1, default=str))
    md = [f"# Issue 21 GPU rows ({name}, torch {torch.__version__})", "", markdown_table(rows, floatfmt="{:.3f}"), "",
          f"- batch {args.batch} synthetic 28×28 images, ε = 0.1, {args.steps} steps, SSA N = {args.spectrum}; "
          f"one warm-up per arm (compile included in 'first call s'), then {args.repeats} rounds per heat, order "
          "rotated; '× baseline time' = median over rounds of seconds / the heat's first arm's seconds",
          *[f"- {line}" for line in lines]]
    (out / "gpu_perf.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
