"""SVD-SSA at CPU scale: does fusing the logits of the middle feature's top singular component into the
surrogate's logits raise black-box transfer success of MI-FGSM, DI and SSA, at equal ε and steps?

Fashion-MNIST through the prep stage. Surrogate: a 3-block ConvNet (width 32) split at block2 (32 × 7 × 7
feature); targets (repflow.zoo): the same architecture with another seed, an MLP, a wider ConvNet with
batch norm, ResNet-8, and a PGD-trained ConvNet (the "defence"). Targets are trained once; each seed
trains its own surrogate and attacks its own disjoint test images. Success is counted on the images
each target classifies correctly when clean. Also: the paper's motivating check (surrogate accuracy when
the block2 feature is replaced by its rank-1 part vs by the residual), a β sweep and exact SVD on MI-FGSM.

    python -m benchmarks.svd_transfer [--seeds 3] [--eps 0.1 0.2] [--images 300] [--spectrum 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from benchmarks._common import RESULTS, mean_std, write_results  # noqa: E402
from repflow import tracking  # noqa: E402
from repflow.attacks import accuracy, attack_success_rate, make_attack, rank1_approximation  # noqa: E402
from repflow.config import parse_params  # noqa: E402
from repflow.report import bar_plot, line_plot  # noqa: E402
from repflow.shards import ShardSet  # noqa: E402
from repflow.zoo import ZOO_SPECS, train_zoo_member  # noqa: E402
from repflow.stage import run_stage# noqa: E402

LAYER = "block2"
BASES = ["mifgsm", "di", "ssa"]
BETA_SWEEP = [0.0, 0.25, 0.75]
BATCH = 100


@torch.no_grad()
def feature_ablation_accuracy(model, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Surrogate accuracy with the ``LAYER`` feature kept, replaced by its exact rank-1 part, or by the
    residual (feature − rank-1 part)."""
    front, back = model.split(LAYER)
    correct = {"full feature": 0, "rank-1 part": 0, "residual": 0}
    for i in range(0, len(x), 500):
        feature = front(x[i:i + 500])
        rank1 = rank1_approximation(feature.flatten(2), "exact").reshape(feature.shape)
        for name, value in [("full feature", feature), ("rank-1 part", rank1), ("residual", feature - rank1)]:
            correct[name] += int((back(value).argmax(1) == y[i:i + 500]).sum())
    return {name: c / len(x) for name, c in correct.items()}


def craft(name: str, surrogate, x: torch.Tensor, y: torch.Tensor, *, eps: float, seed: int, spectrum: int,
          svd: dict | None) -> torch.Tensor:
    params = {"eps": eps, "steps": 10, "seed": seed}
    if name == "ssa":
        params["num_spectrum"] = spectrum
    attack = make_attack(name, surrogate, svd=svd, **params)
    return torch.cat([attack(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def fmt(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.3f} ± {s:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--images", type=int, default=300, help="attacked test images per seed (disjoint)")
    ap.add_argument("--spectrum", type=int, default=5, help="SSA spectrum copies N per step")
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids contention on a shared CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    print(f"ε = {args.eps} (pixels in [0, 1]; 8/255 barely transfers at 28×28), T = 10, α = ε/10, μ = 1, "
          f"DI p = 0.5 r = 0.9, SSA N = {args.spectrum} ρ = 0.5 σ = ε; SVD: {LAYER}, β = {args.beta}, "
          f"power iteration × 20", flush=True)
    with tempfile.TemporaryDirectory(prefix="repflow-svd-") as tmp:
        root = Path(tmp)
        tracking.configure(root)
        params = parse_params({"seed": 0, "device": "cpu", "prep": {"source": "fashion-mnist",
                                                                     "per_class": args.per_class,
                                                                     "test_per_class": 100 * args.seeds}})
        data = ShardSet(run_stage("image.prep", params, {}, root / "prep"))
        x_train, y_train = data.load("train")
        x_test_u8, y_test = data.load("test")
    x_test = x_test_u8.float() / 255
    if args.images * args.seeds > len(x_test):
        raise SystemExit(f"--images {args.images} × --seeds {args.seeds} exceeds the {len(x_test)} test images")
    train = {"epochs": args.epochs, "batch_size": 64, "num_classes": data.num_classes}

    targets = {}
    for spec in ZOO_SPECS.values():
        if spec.role != "surrogate":
            t0 = time.perf_counter()
            targets[spec.name] = train_zoo_member(spec, x_train, y_train, seed=0, **train)
            print(f"target {spec.name}: clean acc {accuracy(targets[spec.name], x_test, y_test):.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    target_names = list(targets)

    arms = [(base, None) for base in BASES] + [(base, args.beta) for base in BASES]
    arms += [("mifgsm", beta) for beta in BETA_SWEEP] + [("mifgsm", "exact")]
    success: dict[tuple, list[float]] = {}  # (eps, base, fusion, model) -> per-seed success rates
    ablation: dict[str, list[float]] = {}
    surrogate_acc: list[float] = []
    order = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(1234))
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        surrogate = train_zoo_member(ZOO_SPECS["convnet"], x_train, y_train, seed=seed, **train)
        surrogate_acc.append(accuracy(surrogate, x_test, y_test))
        for name, value in feature_ablation_accuracy(surrogate, x_test, y_test).items():
            ablation.setdefault(name, []).append(value)
        idx = order[seed * args.images:(seed + 1) * args.images]
        x, y = x_test[idx], y_test[idx]
        for eps in args.eps:
            for base, fusion in arms:
                svd = None
                if fusion == "exact":
                    svd = {"layer": LAYER, "beta": args.beta, "method": "exact"}
                elif fusion is not None:
                    svd = {"layer": LAYER, "beta": fusion}
                x_adv = craft(base, surrogate, x, y, eps=eps, seed=seed, spectrum=args.spectrum, svd=svd)
                for model_name, model in [("surrogate", surrogate), *targets.items()]:
                    rate, _ = attack_success_rate(model, x_adv, x, y)
                    success.setdefault((eps, base, fusion, model_name), []).append(rate)
        print(f"seed {seed}: surrogate acc {surrogate_acc[-1]:.4f}, ablation "
              f"{ {k: round(v[-1], 4) for k, v in ablation.items()} } ({time.perf_counter() - t0:.0f} s)", flush=True)

    def blackbox(eps, base, fusion) -> list[float]:
        """Per seed: success averaged over the black-box targets."""
        return [statistics.fmean(success[(eps, base, fusion, t)][s] for t in target_names) for s in range(args.seeds)]

    label = {None: "none", "exact": f"exact β={args.beta}"}
    rows, raw = [], {}
    for eps in args.eps:
        for base, fusion in arms:
            bb = blackbox(eps, base, fusion)
            row = {"ε": eps, "attack": base, "SVD fusion": label.get(fusion, f"power β={fusion}"),
                   "white-box (surrogate)": fmt(success[(eps, base, fusion, "surrogate")])}
            row.update({t: fmt(success[(eps, base, fusion, t)]) for t in target_names})
            row["black-box mean"] = fmt(bb)
            if fusion is not None:
                gain = [a - b for a, b in zip(bb, blackbox(eps, base, None))]
                row["Δ vs no SVD"] = f"{statistics.fmean(gain):+.3f} ± {mean_std(gain)[1]:.3f}"
            else:
                row["Δ vs no SVD"] = ""
            rows.append(row)
            raw[f"eps={eps} {base} svd={fusion}"] = {m: success[(eps, base, fusion, m)]
                                                      for m in ["surrogate", *target_names]}

    verdicts, raised = [], 0
    for eps in args.eps:
        for base in BASES:
            gain = [a - b for a, b in zip(blackbox(eps, base, args.beta), blackbox(eps, base, None))]
            m, s = mean_std(gain)
            raised += m > 0
            verdicts.append(f"ε={eps} {base}: black-box success {statistics.fmean(blackbox(eps, base, None)):.3f} → "
                            f"{statistics.fmean(blackbox(eps, base, args.beta)):.3f}, Δ = {m:+.3f} ± {s:.3f} "
                            f"(seeds with a gain: {sum(g > 0 for g in gain)}/{len(gain)})")

    RESULTS.mkdir(exist_ok=True)
    groups = [f"{base} ε={eps}" for eps in args.eps for base in BASES]
    means = {key: [mean_std(blackbox(eps, base, fusion))[0] for eps in args.eps for base in BASES]
             for key, fusion in [("without SVD", None), (f"with SVD (β={args.beta})", args.beta)]}
    errors = {key: [mean_std(blackbox(eps, base, fusion))[1] for eps in args.eps for base in BASES]
              for key, fusion in [("without SVD", None), (f"with SVD (β={args.beta})", args.beta)]}
    bar_plot(groups, means, RESULTS / "svd_transfer.png", errors=errors, ylabel="black-box success (mean of 5)",
             title=f"Transfer from a ConvNet surrogate, Fashion-MNIST ({args.seeds} seeds)")
    betas = sorted([*BETA_SWEEP, args.beta, 1.0])
    line_plot(betas, {f"ε={eps}": [statistics.fmean(blackbox(eps, "mifgsm", None if b == 1.0 else b))
                                   for b in betas] for eps in args.eps},
              RESULTS / "svd_transfer.beta.png", xlabel="β (1 = no fusion)", ylabel="black-box success",
              title="MI-FGSM + SVD fusion: β sweep")
    abl = {k: mean_std(v) for k, v in ablation.items()}
    notes = [
        f"{args.seeds} seeds (surrogate training seed, attack seed, disjoint sets of {args.images} Fashion-MNIST "
        f"test images); cells: attack success rate mean ± std over seeds, on images the model classifies "
        f"correctly when clean; black-box mean = mean over the {len(target_names)} targets",
        f"ε ∈ {args.eps}, 10 steps, α = ε/10, μ = 1 (DI and SSA on MI-FGSM); DI p = 0.5, resize 0.9; SSA "
        f"N = {args.spectrum}, ρ = 0.5, σ = ε; SVD fusion at {LAYER} (32 × 7 × 7), power iteration × 20",
        f"models: {args.per_class} train images per class ({len(x_train)}), {args.epochs} epochs, Adam; clean test "
        f"accuracy ({len(x_test)} images): surrogate {fmt(surrogate_acc)}, "
        + ", ".join(f"{t} {accuracy(m, x_test, y_test):.3f}" for t, m in targets.items()),
        f"motivating check (surrogate, block2 feature replaced, exact SVD): full {abl['full feature'][0]:.3f}, "
        f"rank-1 part {abl['rank-1 part'][0]:.3f} ± {abl['rank-1 part'][1]:.3f}, residual "
        f"{abl['residual'][0]:.3f} ± {abl['residual'][1]:.3f}; rank-1 keeps more accuracy than the residual: "
        f"{abl['rank-1 part'][0] > abl['residual'][0]}",
        "claim 'fusion raises black-box success' — " + "; ".join(verdicts),
        f"fusion raised the mean black-box success in {raised} of {len(verdicts)} (attack, ε) cells",
        f"wall time {time.perf_counter() - t_start:.0f} s, torch threads {args.threads}; plots: svd_transfer.png, "
        f"svd_transfer.beta.png",
    ]
    write_results("svd_transfer", "SVD logit fusion: black-box transfer success on Fashion-MNIST", rows, notes,
                  extra={"raw": raw, "feature_ablation": ablation, "surrogate_acc": surrogate_acc,
                         "args": vars(args)})


if __name__ == "__main__":
    main()
