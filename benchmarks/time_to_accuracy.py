"""Time to accuracy of SimCLR encoders: training seconds until the linear probe reaches the accuracy the
default run's encoder reaches, with every arm on the default run's data and training settings.

Data as ``image.prep``'s defaults make it: Fashion-MNIST, 600 images per class (10 % of them held out for
validation, so 5,400 training images) and 200 test images per class. Training as ``image.train``'s
defaults: NT-Xent, batch 256, Adam lr 1e-3, temperature 0.5, projection 64, default augmentations. After
every epoch the frozen encoder gets ``image.evaluate``'s linear probe (30 epochs, lr 0.01), scored on the
test split; probing is not counted in the seconds. Arms train one epoch at a time in turn (A B A B ...),
so load on a shared machine hits both alike. The reference (first encoder) trains ``--epochs`` (the default
run's 8); the others go on alone for up to ``--extra-epochs`` more until they reach its final accuracy.

    python -m benchmarks.time_to_accuracy [--encoders small_cnn small_cnn_s2] [--epochs 8] [--extra-epochs 8]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks._common import RESULTS, write_results  # noqa: E402
from repflow.families.image.params import AugmentParams  # noqa: E402
from repflow.families.image.contrastive import train_contrastive  # noqa: E402
from repflow.families.image.stages.prep import stratified_split, stratified_subsample  # noqa: E402
from repflow.families.image.models import ProjectionHead, build_encoder  # noqa: E402
from repflow.families.image.probes import embed  # noqa: E402
from repflow.probe import fit_linear_probe  # noqa: E402
from repflow.families.image.sources import read_source  # noqa: E402


def default_run_data(seed: int = 0) -> dict[str, torch.Tensor | list[float]]:
    """Train and test uint8 (N,1,28,28) images with labels, and the train mean/std, as image.prep makes them."""
    src = read_source("fashion-mnist")
    rng = np.random.default_rng(seed)
    keep = stratified_subsample(src.labels, 600, rng)
    x_tr, y_tr = src.images[keep], src.labels[keep]
    train_idx, _ = stratified_split(y_tr, 0.1, rng)
    test_keep = stratified_subsample(src.test_labels, 200, rng)
    x = torch.from_numpy(x_tr[train_idx]).unsqueeze(1)
    pixels = x.float().div(255)
    return {"x_train": x, "y_train": torch.from_numpy(y_tr[train_idx].astype("int64")),
            "x_test": torch.from_numpy(src.test_images[test_keep]).unsqueeze(1),
            "y_test": torch.from_numpy(src.test_labels[test_keep].astype("int64")),
            "mean": [round(float(pixels.mean()), 6)], "std": [round(float(pixels.std()), 6)]}


def probe_accuracy(encoder: torch.nn.Module, data: dict, seed: int) -> float:
    probe = fit_linear_probe(embed(encoder, data["x_train"]), data["y_train"], 10, epochs=30, lr=0.01,
                             batch_size=256, seed=seed)
    with torch.no_grad():
        logits = probe(embed(encoder, data["x_test"]))
    return float((logits.argmax(1) == data["y_test"]).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoders", nargs="+", default=["small_cnn", "small_cnn_s2"], help="first = the reference")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--extra-epochs", type=int, default=8, help="further epochs for the other arms, at most")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = default_run_data(args.seed)
    arms = {}
    for name in args.encoders:
        torch.manual_seed(args.seed)
        encoder = build_encoder({"name": name, "in_channels": 1, "width": 32, "mean": data["mean"],
                                 "std": data["std"]})
        head = ProjectionHead(encoder.out_dim, 64)
        with FlopCounterMode(display=False) as flops:
            encoder.eval()(torch.rand(1, 1, 28, 28))
        arms[name] = {"encoder": encoder, "head": head, "opt": None, "seconds": 0.0, "curve": [],
                      "mflop_per_image": flops.get_total_flops() / 1e6}

    def keep_state(arm: dict):
        return lambda epoch, stats, opt: arm.update(opt=opt.state_dict(), loss=stats["loss"])

    reference = args.encoders[0]
    for epoch in range(args.epochs + args.extra_epochs):
        for name, arm in arms.items():
            if epoch >= args.epochs and (name == reference or arm["curve"][-1]["probe_accuracy"]
                                         >= arms[reference]["curve"][-1]["probe_accuracy"]):
                continue
            t0 = time.perf_counter()
            train_contrastive(arm["encoder"], arm["head"], data["x_train"], epochs=epoch + 1, batch_size=256,
                              lr=1e-3, weight_decay=1e-6, temperature=0.5, augment=AugmentParams().model_dump(),
                              device=torch.device("cpu"), seed=args.seed, optimizer_state=arm["opt"],
                              start_epoch=epoch, on_epoch=keep_state(arm))
            arm["seconds"] += time.perf_counter() - t0
            accuracy = probe_accuracy(arm["encoder"], data, args.seed)
            arm["curve"].append({"epoch": epoch + 1, "train_seconds": arm["seconds"], "probe_accuracy": accuracy,
                                 "loss": arm["loss"]})
            print(f"{name} epoch {epoch + 1}: {arm['seconds']:.1f} s, probe accuracy {accuracy:.4f}", flush=True)

    goal = arms[reference]["curve"][-1]["probe_accuracy"]
    goal_seconds = arms[reference]["curve"][-1]["train_seconds"]
    rows, lines, targets = [], [], {}
    for name, arm in arms.items():
        reached = next((p for p in arm["curve"] if p["probe_accuracy"] >= goal), None)
        for point in arm["curve"]:
            rows.append({"encoder": name, "MFLOP / image (forward)": arm["mflop_per_image"], **point})
        if reached is None:
            lines.append(f"{name}: never reached {goal:.4f} in {len(arm['curve'])} epochs "
                         f"(best {max(p['probe_accuracy'] for p in arm['curve']):.4f})")
            targets[name] = {"reached": False}
            continue
        ratio = reached["train_seconds"] / goal_seconds
        targets[name] = {"reached": True, "epoch": reached["epoch"], "seconds": reached["train_seconds"],
                         "time_ratio": ratio, "met": ratio <= 0.5}
        verdict = "" if name == reference else f" (target ≤ 0.5×: {'met' if ratio <= 0.5 else 'not met'})"
        lines.append(f"{name}: reaches {goal:.4f} after epoch {reached['epoch']}, {reached['train_seconds']:.1f} s = "
                     f"{ratio:.2f}× the reference's time{verdict}")
    plot = RESULTS / "time_to_accuracy.png"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, arm in arms.items():
        ax.plot([p["train_seconds"] for p in arm["curve"]], [p["probe_accuracy"] for p in arm["curve"]], "o-",
                label=f"{name} ({arm['mflop_per_image']:.0f} MFLOP/image)")
    ax.axhline(goal, color="grey", ls="--", lw=1, label=f"{reference} after {args.epochs} epochs")
    ax.set(xlabel="training seconds (1 CPU thread)", ylabel="linear-probe test accuracy",
           title="SimCLR on Fashion-MNIST (default run's data): accuracy vs seconds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    write_results("time_to_accuracy", "Time to accuracy: SimCLR encoders on the default run's data", rows,
                  [f"torch threads {torch.get_num_threads()}; {len(data['x_train'])} training and "
                   f"{len(data['x_test'])} test images; {args.epochs} epochs per arm, arms "
                   f"interleaved epoch by epoch; seed {args.seed}",
                   f"goal: the reference ({reference}) probe accuracy after {args.epochs} epochs, {goal:.4f}, "
                   f"reached in {goal_seconds:.1f} s", *lines, f"curve: {plot.name}"],
                  extra={"targets": targets, "args": vars(args)})


if __name__ == "__main__":
    main()
