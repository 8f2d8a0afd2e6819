"""GLaD at CPU scale: does distilling into a generator's latent space generalise across architectures
better than distilling pixels? Fashion-MNIST, ipc ∈ {1, 10}, DM and DC.

Arms (each with ``--seeds`` seeds; the seed fixes the initial set, the distillation and the evaluation):

* random real — ``ipc`` random real training images per class (the coreset baseline);
* generator samples — G(z, c) for seeded z, not optimised (the prior alone; also the initial set of
  the two generator arms);
* pixel — DM / DC on pixels, initialised from the random real images (as DC / DM do);
* latent (z) — DM / DC on the generator's input latents;
* feature (F_l, w) — GLaD: DM / DC on the feature map after synthesis layer ``--layer`` and the style
  vectors after it.

Every set is evaluated by training a fresh network of each architecture in
:data:`repflow.distill.EVAL_ARCHITECTURES` on it (``--eval-seeds`` per distillation seed) and testing
on the real test split. "same-arch" = the distillation ConvNet; "cross-arch" = the mean over the MLP,
the batch-norm ConvNet and the ResNet. One generator (the generate stage, seed 0) serves every arm.

    python -m benchmarks.glad [--seeds 3] [--per-class 300] [--dm-iterations 150] [--dc-iterations 60]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from benchmarks._common import RESULTS, mean_std, write_results  # noqa: E402
from repflow import distill as D  # noqa: E402
from repflow import tracking  # noqa: E402
from repflow.config import parse_params  # noqa: E402
from repflow.report import class_grid  # noqa: E402
from repflow.shards import ShardSet  # noqa: E402
from repflow.families.image.stages.generate import load_generator  # noqa: E402
from repflow.stage import run_stage  # noqa: E402

BASELINES = ["random real", "generator samples"]
PARAMETERISATIONS = ["pixel", "latent (z)", "feature (F_l, w)"]
IPCS = [1, 10]
LOSSES = ["dm", "dc"]


def prepare(root: Path, per_class: int, test_per_class: int, generator_epochs: int):
    """prep + generate (seed 0) under ``root`` (reused when up to date): the shards and the generator."""
    tracking.configure(root)
    params = parse_params({
        "seed": 0, "device": "cpu",
        "prep": {"source": "fashion-mnist", "per_class": per_class, "test_per_class": test_per_class},
        "generate": {"epochs": generator_epochs, "patience": 3, "judge_epochs": 2, "quality_samples": 500,
                     "anchors": 10, "views": 1}})
    shards = run_stage("image.prep", params, {}, root / "prep")
    data = ShardSet(shards)
    gen_out = run_stage("image.generate", params, {"shards": shards}, root / "generate")
    gen, _ = load_generator(gen_out, data.shape, data.num_classes)
    return data, gen, ShardSet(gen_out).meta["quality"]


def architectures(data: ShardSet) -> tuple[dict, dict]:
    """(distillation net, evaluation pool), normalising inputs with the data's mean and std."""
    norm = {"mean": data.meta["mean"], "std": data.meta["std"]}
    return {**D.DISTILL_NET, **norm}, {name: {**cfg, **norm} for name, cfg in D.EVAL_ARCHITECTURES.items()}


def make_param(arm: str, gen, x: torch.Tensor, y: torch.Tensor, ipc: int, seed: int, layer: int) -> D.Parameterization:
    if arm == "pixel":
        return D.PixelParam.from_real(x, y, ipc, seed)
    if arm == "latent (z)":
        return D.LatentParam(gen, ipc, seed)
    if arm == "feature (F_l, w)":
        return D.FeatureParam(gen, ipc, layer, seed)
    raise ValueError(f"arm {arm!r} unknown; allowed: {PARAMETERISATIONS}")


def build_set(arm: str, loss: str | None, gen, x, y, ipc: int, seed: int, args, net_config: dict,
              lr: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(images, labels, info) of one arm; info = distillation seconds and first / last loss."""
    if arm == "random real":
        return (*D.random_real_subset(x, y, ipc, seed), {})
    if arm == "generator samples":
        return (*D.generator_samples(gen, ipc, seed), {})
    param = make_param(arm, gen, x, y, ipc, seed, args.layer)
    iterations = args.dm_iterations if loss == "dm" else args.dc_iterations
    t0 = time.perf_counter()
    history = D.distill(param, x, y, loss=loss, iterations=iterations, lr=lr, net_config=net_config, seed=seed)
    info = {"distill_s": time.perf_counter() - t0, "loss_first": history[0]["loss"], "loss_last": history[-1]["loss"]}
    return (*param.snapshot(), info)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.clamp(0, 1).mul(255).round().byte()


def save_grid(sets: dict[str, tuple[torch.Tensor, torch.Tensor]], ipc: int, path: Path, title: str) -> Path:
    """One row per arm, one column per class (the first image of each class)."""
    names = list(sets)
    picks, rows = [], []
    for r, name in enumerate(names):
        images, labels = sets[name]
        first = torch.stack([torch.nonzero(labels == c).flatten()[0] for c in range(int(labels.max()) + 1)])
        picks.append(images[first])
        rows.append(torch.full((len(first),), r))
    return class_grid(_to_uint8(torch.cat(picks)), torch.cat(rows), names, path, per_class=len(picks[0]), title=title)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eval-seeds", type=int, default=1, help="evaluation nets per architecture and distillation seed")
    ap.add_argument("--per-class", type=int, default=300, help="Fashion-MNIST train+val images per class")
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--generator-epochs", type=int, default=15)
    ap.add_argument("--dm-iterations", type=int, default=150)
    ap.add_argument("--dc-iterations", type=int, default=60)
    ap.add_argument("--eval-epochs", type=int, default=100)
    ap.add_argument("--layer", type=int, default=1, help="GLaD split layer (generator layers: 0..3)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep prep/generate outputs here (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 because on shared cores two threads ran these small nets ~30x slower")
    args = ap.parse_args()
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="repflow-glad-") as tmp:
        root = args.workdir or Path(tmp)
        data, gen, quality = prepare(root, args.per_class, args.test_per_class, args.generator_epochs)
        x, y = data.load("train")
        x_test, y_test = data.load("test")
        t_data = time.perf_counter() - t_start
    net_config, archs = architectures(data)
    print(f"data + generator: {t_data:.0f} s; {len(x)} train, {len(x_test)} test images", flush=True)

    arms = [(name, None) for name in BASELINES] + [(name, loss) for loss in LOSSES for name in PARAMETERISATIONS]
    summaries: dict[tuple, list[dict]] = {}
    raw: list[dict] = []
    grids: dict[int, dict] = {ipc: {} for ipc in IPCS}
    for seed in range(args.seeds):
        for ipc in IPCS:
            for name, loss in arms:
                t0 = time.perf_counter()
                images, labels, info = build_set(name, loss, gen, x, y, ipc, seed, args, net_config)
                rows = D.evaluate_distilled(images, labels, x_test, y_test, archs=archs, epochs=args.eval_epochs,
                                            seeds=[seed * 100 + i for i in range(args.eval_seeds)])
                summary = D.summarize(rows)
                summaries.setdefault((ipc, loss or "—", name), []).append(summary)
                raw.append({"seed": seed, "ipc": ipc, "loss": loss, "arm": name, **info, "rows": rows})
                if seed == 0:
                    grids[ipc][f"{loss.upper()} {name}" if loss else name] = (images, labels)
                print(f"seed {seed} ipc {ipc} {loss or '—'} {name}: same {summary['same_arch']:.3f} cross "
                      f"{summary['cross_arch']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    table = []
    for (ipc, loss, name), runs in summaries.items():
        same, cross = mean_std([r["same_arch"] for r in runs]), mean_std([r["cross_arch"] for r in runs])
        per_arch = {arch: mean_std([r["per_arch"][arch] for r in runs])[0] for arch in archs}
        distill_s = [r.get("distill_s", 0.0) for r in raw
                     if (r["ipc"], r["loss"] or "—", r["arm"]) == (ipc, loss, name)]
        table.append({"ipc": ipc, "loss": loss, "arm": name, "same_arch": same[0], "same_std": same[1],
                      "cross_arch": cross[0], "cross_std": cross[1], **per_arch,
                      "distill_s": sum(distill_s) / len(distill_s)})
    table.sort(key=lambda r: (r["ipc"], ["—", *LOSSES].index(r["loss"])))

    RESULTS.mkdir(exist_ok=True)
    for ipc in IPCS:
        save_grid(grids[ipc], ipc, RESULTS / f"glad_ipc{ipc}.png",
                  f"ipc {ipc}, seed 0 (first image of each class)")

    def cross(ipc: int, loss: str, name: str) -> tuple[float, float]:
        row = next(r for r in table if (r["ipc"], r["loss"], r["arm"]) == (ipc, loss, name))
        return row["cross_arch"], row["cross_std"]

    with torch.no_grad():
        w0 = gen.mapping(torch.zeros(1, gen.z_dim), torch.zeros(1, dtype=torch.long))
        feature_shape = tuple(gen.features(w0, args.layer).shape[1:])
    claims = []
    for loss in LOSSES:
        for ipc in IPCS:
            px = cross(ipc, loss, "pixel")
            for name in ("latent (z)", "feature (F_l, w)"):
                lat = cross(ipc, loss, name)
                clear = abs(lat[0] - px[0]) > max(lat[1], px[1])
                claims.append(f"{loss.upper()} ipc {ipc}: {name} {lat[0]:.3f} ± {lat[1]:.3f} vs pixel {px[0]:.3f} ± "
                              f"{px[1]:.3f} → latent beats pixel on the cross-arch mean: {lat[0] > px[0]} "
                              f"(gap {lat[0] - px[0]:+.3f}, {'larger' if clear else 'not larger'} than one std)")
    notes = [
        f"Fashion-MNIST: {len(x)} train images ({args.per_class} per class before the 10% val split), "
        f"{len(x_test)} test images; {args.seeds} seeds per arm (mean ± std over seeds); each seed fixes the "
        f"initial set, the distillation and {args.eval_seeds} evaluation net(s) per architecture",
        f"distillation: ConvNet width {D.DISTILL_NET['width']} depth {D.DISTILL_NET['depth']} instance norm, a fresh "
        f"random net every iteration; DM {args.dm_iterations} iterations, DC {args.dc_iterations} iterations "
        f"(outer/inner loop 1/1, as GLaD); 32 real images per class per iteration; siamese DSA-style augmentation "
        f"(shift ±12.5%, scale ×1.2, rotation ±15°); SGD momentum 0.5, learning rates {D.DEFAULT_LR}",
        f"GLaD feature arm: generator layer {args.layer}, F_l of shape {feature_shape} and the styles of layers "
        f"{args.layer + 1}..{gen.num_layers - 1}; layer 1 leaves two styled upsampling blocks as the prior (layer 2 "
        f"leaves one, layer 3 only the 1×1 output conv) and is the smaller search space (3136 vs 6272 numbers per "
        f"image); on the validation split layers 1 and 2 tied (cross-arch 0.469 vs 0.470, mean of DM/DC × ipc 1/10)",
        "learning rates: chosen per loss and parameterisation on the validation split (cross-arch mean, 1 seed, "
        "a grid ×0.1, ×0.3, ×1, ×3, ×10), never on the test split",
        f"evaluation: {', '.join(archs)}; {args.eval_epochs} epochs (one step per epoch: the sets fit in one batch), "
        f"SGD momentum 0.9, lr 0.01 (× 0.1 after half), weight decay 5e-4, per-image augmentation; "
        f"same_arch = convnet, cross_arch = mean of the other three",
        f"generator (VAE decoder, {args.generator_epochs} epochs max): Fréchet distance "
        f"{quality['frechet_distance']:.3f} (real vs real {quality['frechet_distance_real_vs_real']:.3f}), judge "
        f"accuracy on samples {quality['judge_acc']:.3f} (on real {quality['judge_acc_real']:.3f})",
        *claims,
        f"wall time {time.perf_counter() - t_start:.0f} s (data + generator {t_data:.0f} s), torch threads "
        f"{args.threads}; "
        f"image grids: glad_ipc1.png, glad_ipc10.png",
    ]
    write_results("glad", "GLaD: cross-architecture accuracy of distilled Fashion-MNIST sets", table, notes,
                  extra={"raw": raw, "generator_quality": quality, "args": {k: str(v) for k, v in vars(args).items()}})


if __name__ == "__main__":
    main()
