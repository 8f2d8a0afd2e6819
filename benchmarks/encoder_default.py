"""Which encoder is the default (issue 34, fast defaults): ``small_cnn_s2`` (about 1/4 of ``small_cnn``'s
FLOPs) replaces ``small_cnn`` only if its linear-probe accuracy is no worse at the default run's protocol.

Declared before the run: the per-seed paired difference small_cnn − small_cnn_s2 in probe test accuracy,
judged by :func:`repflow.verdict.judge` with the smallest effect that matters 0.01. s2 becomes the default
when the interval's upper end lies below 0.01 (the verdict "does not hold", or "holds" with a lead too small
to count): s2 then loses less than 0.01 at 95 %. An interval that reaches 0.01 keeps small_cnn.

Protocol, pinned here (params.yaml's defaults when this was written, so a later change of the defaults leaves
these numbers as they are): per seed s the data ``image.prep`` makes with seed s (Fashion-MNIST, 600 images
per class, 10 % held out: 5,400 training and 2,000 test images); SimCLR with NT-Xent for 8 epochs, batch 256,
Adam lr 1e-3, weight decay 1e-6, temperature 0.5, width 32, projection 64, the default augmentations; then
``image.evaluate``'s linear probe (30 epochs, lr 0.01, batch 256) on the frozen encoder, test accuracy. Both
arms of a seed see the same data, the same augmentation generator and the same batches; they differ only in
the encoder. Training CPU seconds (one torch thread) are recorded beside each arm.

    python -m benchmarks.encoder_default [--seeds 5] [--rows rows.jsonl]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks._common import append_rows, mean_std, read_rows, write_results  # noqa: E402
from benchmarks.time_to_accuracy import default_run_data, probe_accuracy  # noqa: E402
from repflow.families.image.contrastive import train_contrastive  # noqa: E402
from repflow.families.image.models import ProjectionHead, build_encoder  # noqa: E402
from repflow.families.image.params import AugmentParams  # noqa: E402
from repflow.verdict import Claim, judge  # noqa: E402

REFERENCE, CANDIDATE = "small_cnn", "small_cnn_s2"
PROTOCOL = {"epochs": 8, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-6, "temperature": 0.5, "width": 32,
            "proj_dim": 64, "probe": "30 epochs, lr 0.01, batch 256"}
CLAIM = Claim("image.encoder_default_lead", "image", "repflow issue 34 (fast defaults)",
              f"{REFERENCE} reaches a higher linear-probe accuracy than {CANDIDATE} at the default protocol.",
              f"probe test accuracy, {REFERENCE} − {CANDIDATE}", "higher", 0.01, "accuracy",
              (REFERENCE, CANDIDATE))


def train_arm(name: str, data: dict, seed: int) -> dict:
    """One encoder trained and probed at :data:`PROTOCOL`; its accuracy, final loss and CPU seconds."""
    torch.manual_seed(seed)
    encoder = build_encoder({"name": name, "in_channels": 1, "width": PROTOCOL["width"], "mean": data["mean"],
                             "std": data["std"]})
    head = ProjectionHead(encoder.out_dim, PROTOCOL["proj_dim"])
    with FlopCounterMode(display=False) as flops:
        encoder.eval()(torch.rand(1, 1, 28, 28))
    cpu = time.process_time()
    history = train_contrastive(encoder, head, data["x_train"], epochs=PROTOCOL["epochs"],
                                batch_size=PROTOCOL["batch_size"], lr=PROTOCOL["lr"],
                                weight_decay=PROTOCOL["weight_decay"], temperature=PROTOCOL["temperature"],
                                augment=AugmentParams().model_dump(), device=torch.device("cpu"), seed=seed)
    train_cpu = time.process_time() - cpu
    return {"seed": seed, "encoder": name, "probe_acc": probe_accuracy(encoder, data, seed),
            "final_loss": history[-1]["loss"], "train_cpu_seconds": train_cpu,
            "mflop_per_image": flops.get_total_flops() / 1e6, "train_images": len(data["x_train"]),
            "test_images": len(data["x_test"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rows", type=Path, default=None, help="resumable rows file (JSON lines)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = read_rows(args.rows)
    done = {(r["seed"], r["encoder"]) for r in rows}
    for seed in range(args.seeds):
        data = None
        for name in (REFERENCE, CANDIDATE):
            if (seed, name) in done:
                continue
            data = data or default_run_data(seed)
            row = train_arm(name, data, seed)
            print(row, flush=True)
            rows.append(row)
            append_rows(args.rows, [row])
    by = {(r["seed"], r["encoder"]): r for r in rows}
    seeds = sorted(s for s in {r["seed"] for r in rows} if (s, REFERENCE) in by and (s, CANDIDATE) in by)
    diffs = [by[s, REFERENCE]["probe_acc"] - by[s, CANDIDATE]["probe_acc"] for s in seeds]
    verdict = judge(CLAIM, diffs)
    switch = bool(verdict.n >= 5 and np.isfinite(verdict.high) and verdict.high < CLAIM.smallest_effect)
    table = []
    for name in (REFERENCE, CANDIDATE):
        accs = [by[s, name]["probe_acc"] for s in seeds]
        cpu = [by[s, name]["train_cpu_seconds"] for s in seeds]
        table.append({"encoder": name, "MFLOP / image (forward)": by[seeds[0], name]["mflop_per_image"],
                      "probe_acc_mean": mean_std(accs)[0], "probe_acc_sd": mean_std(accs)[1],
                      "train_cpu_seconds_mean": mean_std(cpu)[0]})
    cost = table[1]["train_cpu_seconds_mean"] / table[0]["train_cpu_seconds_mean"]
    notes = [
        f"Protocol (pinned): {PROTOCOL['epochs']} epochs, batch {PROTOCOL['batch_size']}, Adam lr {PROTOCOL['lr']}, "
        f"temperature {PROTOCOL['temperature']}, width {PROTOCOL['width']}, projection {PROTOCOL['proj_dim']}, "
        f"default augmentations; linear probe {PROTOCOL['probe']}; {by[seeds[0], REFERENCE]['train_images']} training "
        f"and {by[seeds[0], REFERENCE]['test_images']} test Fashion-MNIST images per seed, drawn as image.prep draws "
        "them with that seed.",
        "Per-seed " + ", ".join(f"s{s}: {d:+.4f}" for s, d in zip(seeds, diffs)) + f" ({REFERENCE} − {CANDIDATE}).",
        f"Verdict on '{CLAIM.statement}' (smallest effect {CLAIM.smallest_effect}): **{verdict.verdict}** — "
        f"{verdict.reason}; mean lead {verdict.mean:+.4f} over {verdict.n} seeds.",
        f"Decision: {'switch the default to ' + CANDIDATE if switch else 'keep ' + REFERENCE} ("
        f"{CANDIDATE} {'loses less than' if switch else 'is not shown to lose less than'} "
        f"{CLAIM.smallest_effect} at 95 %); {CANDIDATE} trains in {cost:.2f}× {REFERENCE}'s CPU seconds.",
        "CPU seconds: the process's, one torch thread, on a shared 2-core machine (load varies; the ratio is what "
        "to read).",
    ]
    write_results("encoder_default", f"Default encoder: {REFERENCE} vs {CANDIDATE} at the default protocol", table,
                  notes, extra={"per_seed": rows, "protocol": PROTOCOL, "claim": CLAIM.__dict__,
                                "verdict": verdict.__dict__, "switch": switch, "seeds": seeds})


if __name__ == "__main__":
    main()
