"""Mechanism check of the two pretext methods (``masked_ae``, ``bigan`` of the image family) on real Fashion-MNIST:
does each do what its objective says, and does its encoder beat the random-init encoder it started from?

Data: Fashion-MNIST (Debian's dataset-fashion-mnist), a stratified 500 train images per class (5,000) and
100 test images per class (1,000), drawn with the seed. Encoder: small_cnn, width 32 (the train stage's
default), normalised with the training images' mean/std. Training: ``train_contrastive`` with the
method's head from ``build_training_head``, the train stage's defaults (batch 256, Adam lr 1e-3, weight
decay 1e-6, default augmentations), ``--epochs`` epochs, one torch thread; except bigan's learning rate,
``--bigan-lr`` (default 2e-4, BiGAN's paper's; at 1e-3 its discriminator wins within the first epoch).

Measured per seed:

- masked_ae: the masked-patch MSE (the training loss, 75 % of 4×4 patches, masks from a fixed generator,
  no augmentation) on the test images, against the mean-image baseline (the training images' per-pixel
  mean as the prediction for every masked patch);
- bigan: the discriminator's accuracy on real vs generated pairs over training (per batch, summarised
  at the start, middle and end; 0.5 = D is fooled, 1.0 = D wins outright); and the per-image Pearson
  correlation between G(E(x)) and x on test images against that of shuffled pairs G(E(x_π)) vs x;
- both: linear-probe test accuracy (``repflow.probe.embed`` + ``fit_linear_probe``, 30 epochs, lr 0.01,
  the evaluate stage's defaults) of the frozen trained encoder vs the same encoder at its random init,
  as built (batch-norm running statistics at their initial 0 / 1) and with its batch-norm statistics
  measured on the training images (no weight changed): any training calibrates those statistics, so the
  second is the baseline that isolates what the learned weights add. The trained encoder is probed as
  trained and, likewise, with its statistics re-measured on the (unmasked, unaugmented) training images
  (``probe_acc_bn_measured``): masked_ae's batch norm saw 75 %-masked images while training.

    python -m benchmarks.pretext_mechanism [--seeds 0 1] [--epochs 6] [--bigan-lr 2e-4] [--per-class 500]
                                           [--test-per-class 100]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import RESULTS, mean_std, write_results  # noqa: E402
from repflow.families.image.contrastive import train_contrastive  # noqa: E402
from repflow.families.image.train_methods import build_training_head  # noqa: E402
from repflow.families.image.params import AugmentParams, TrainParams  # noqa: E402
from repflow.families.image.stages.prep import stratified_subsample  # noqa: E402
from repflow.families.image.masked_ae import masked_patch_mse, random_patch_mask  # noqa: E402
from repflow.families.image.models import build_encoder  # noqa: E402
from repflow.families.image.probes import calibrate_batch_norm, embed  # noqa: E402
from repflow.probe import fit_linear_probe  # noqa: E402
from repflow.report import markdown_table  # noqa: E402
from repflow.families.image.sources import read_source  # noqa: E402


def fashion_mnist(per_class: int, test_per_class: int, seed: int) -> dict:
    src = read_source("fashion-mnist")
    rng = np.random.default_rng(seed)
    train = stratified_subsample(src.labels, per_class, rng)
    test = stratified_subsample(src.test_labels, test_per_class, rng)
    x = torch.from_numpy(src.images[train]).unsqueeze(1)
    pixels = x.float().div(255)
    return {"x_train": x, "y_train": torch.from_numpy(src.labels[train].astype("int64")),
            "x_test": torch.from_numpy(src.test_images[test]).unsqueeze(1),
            "y_test": torch.from_numpy(src.test_labels[test].astype("int64")),
            "mean": [float(pixels.mean())], "std": [float(pixels.std())]}


def probe_accuracy(encoder: torch.nn.Module, data: dict, seed: int) -> float:
    probe = fit_linear_probe(embed(encoder, data["x_train"]), data["y_train"], 10, epochs=30, lr=0.01,
                             batch_size=256, seed=seed)
    with torch.no_grad():
        return float((probe(embed(encoder, data["x_test"])).argmax(1) == data["y_test"]).float().mean())


@torch.no_grad()
def with_measured_bn_stats(encoder: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """A copy of ``encoder`` whose batch-norm running statistics are measured on ``images`` (uint8)."""
    return calibrate_batch_norm(copy.deepcopy(encoder), images)


def train(method: str, encoder: torch.nn.Module, data: dict, epochs: int, seed: int, lr: float):
    defaults = TrainParams()
    head, _ = build_training_head(method, encoder.out_dim, (1, 28, 28), proj_dim=defaults.proj_dim, dual_bn=False)
    trace: list[dict[str, float]] = []
    if method == "bigan":
        per_batch = head.batch_stats

        def recorded() -> dict[str, float]:
            trace.append(per_batch())
            return trace[-1]
        head.batch_stats = recorded
    t0 = time.process_time()
    history = train_contrastive(encoder, head, data["x_train"], epochs=epochs, batch_size=defaults.batch_size,
                                lr=lr, weight_decay=defaults.weight_decay,
                                temperature=defaults.temperature, augment=AugmentParams().model_dump(),
                                device=torch.device("cpu"), seed=seed)
    return head.eval(), history, trace, time.process_time() - t0


@torch.no_grad()
def masked_ae_scores(encoder, head, data: dict, seed: int) -> dict[str, float]:
    encoder.eval()
    x = data["x_test"].float().div(255)
    mean_image = data["x_train"].float().div(255).mean(0, keepdim=True).expand_as(x)
    mask = random_patch_mask(len(x), head.num_patches, head.mask_ratio, torch.Generator().manual_seed(seed + 77))
    recon = torch.cat([head.reconstruct(encoder, x[i:i + 500], mask[i:i + 500]) for i in range(0, len(x), 500)])
    return {"masked_mse": masked_patch_mse(recon, x, mask, head.patch).item(),
            "mean_image_mse": masked_patch_mse(mean_image, x, mask, head.patch).item()}


def _rowwise_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-8)


@torch.no_grad()
def bigan_scores(encoder, head, data: dict, trace: list[dict], seed: int) -> dict[str, float]:
    encoder.eval()
    x = data["x_test"].float().div(255)
    recon = torch.cat([head.reconstruct(encoder, x[i:i + 500]) for i in range(0, len(x), 500)])
    shuffled = recon[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 91))]
    acc = [t["d_accuracy"] for t in trace]
    tenth = max(len(acc) // 10, 1)
    return {"recon_corr": _rowwise_corr(recon, x).mean().item(),
            "shuffled_corr": _rowwise_corr(shuffled, x).mean().item(),
            "d_acc_first10pct": float(np.mean(acc[:tenth])), "d_acc_mid10pct": float(np.mean(
                acc[len(acc) // 2 - tenth // 2:len(acc) // 2 - tenth // 2 + tenth])),
            "d_acc_last10pct": float(np.mean(acc[-tenth:])), "d_acc_min": min(acc), "d_acc_max": max(acc)}


COMMON = ("method", "seed", "epochs", "lr", "train_cpu_s", "first_epoch_loss", "last_epoch_loss", "probe_acc",
          "probe_acc_bn_measured", "random_init_probe_acc", "random_init_bn_measured_probe_acc")
OWN = {"masked_ae": ("masked_mse", "mean_image_mse"),
       "bigan": ("recon_corr", "shuffled_corr", "d_acc_first10pct", "d_acc_mid10pct", "d_acc_last10pct", "d_acc_min",
                 "d_acc_max")}


def setup_line(per_class: int, test_per_class: int, epochs: int, seeds: list[int], total: float) -> str:
    return (f"Fashion-MNIST, {per_class}/class train, {test_per_class}/class test; small_cnn width 32; {epochs} "
            f"epochs per method; seeds {seeds}; torch threads 1; whole script {total:.0f} CPU s")


def report(runs: list[dict], setup: str, total: float) -> None:
    """results/pretext_mechanism.{json,md}: one table of what both methods share, one of each method's own
    mechanism numbers (seed by seed), and the probe gains over both random-init baselines."""
    notes = [setup]
    for method in OWN:
        mine = [r for r in runs if r["method"] == method]
        for baseline in ("random_init_probe_acc", "random_init_bn_measured_probe_acc"):
            gain = mean_std([r["probe_acc"] - r[baseline] for r in mine])
            notes.append(f"{method}: probe_acc minus {baseline}, mean ± std over {len(mine)} seeds: "
                         f"{gain[0]:+.4f} ± {gain[1]:.4f}")
    for method, keys in OWN.items():
        notes.append(f"{method}'s own numbers:\n\n" + markdown_table(
            [{"seed": r["seed"], **{k: r[k] for k in keys}} for r in runs if r["method"] == method],
            floatfmt="{:.4f}") + "\n")
    rows = [{k: (f"{r[k]:g}" if k == "lr" else r[k]) for k in COMMON} for r in runs]
    write_results("pretext_mechanism", "Mechanism check: masked_ae and bigan on Fashion-MNIST", rows, notes,
                  extra={"runs": runs, "setup": setup, "total_cpu_seconds": total})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--bigan-lr", type=float, default=2e-4)
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--from-json", action="store_true", help="re-render the markdown from the last run's json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.from_json:
        payload = json.loads((RESULTS / "pretext_mechanism.json").read_text())
        runs, total = payload.get("runs", payload["rows"]), payload["total_cpu_seconds"]
        seeds = sorted({r["seed"] for r in runs})
        report(runs, setup_line(args.per_class, args.test_per_class, runs[0]["epochs"], seeds, total), total)
        return
    start = time.process_time()
    runs = []
    for seed in args.seeds:
        data = fashion_mnist(args.per_class, args.test_per_class, seed)
        torch.manual_seed(seed)
        init = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 32, "mean": data["mean"],
                              "std": data["std"]})
        random_acc = probe_accuracy(init, data, seed)
        calibrated_acc = probe_accuracy(with_measured_bn_stats(init, data["x_train"]), data, seed)
        for method in ("masked_ae", "bigan"):
            torch.manual_seed(seed)
            encoder = copy.deepcopy(init)
            lr = args.bigan_lr if method == "bigan" else TrainParams().lr
            head, history, trace, seconds = train(method, encoder, data, args.epochs, seed, lr)
            row = {"method": method, "seed": seed, "epochs": args.epochs, "lr": lr, "train_cpu_s": seconds,
                   "first_epoch_loss": history[0]["loss"], "last_epoch_loss": history[-1]["loss"],
                   "probe_acc": probe_accuracy(encoder, data, seed),
                   "probe_acc_bn_measured": probe_accuracy(with_measured_bn_stats(encoder, data["x_train"]), data,
                                                           seed),
                   "random_init_probe_acc": random_acc,
                   "random_init_bn_measured_probe_acc": calibrated_acc}
            row.update(masked_ae_scores(encoder, head, data, seed) if method == "masked_ae"
                       else bigan_scores(encoder, head, data, trace, seed))
            runs.append(row)
            print(row, flush=True)
    total = time.process_time() - start
    report(runs, setup_line(args.per_class, args.test_per_class, args.epochs, args.seeds, total), total)


if __name__ == "__main__":
    main()
