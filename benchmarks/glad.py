"""GLaD at CPU scale: does distilling into a generator's latent space generalise across architectures
better than distilling pixels, when both start from the same images? Fashion-MNIST, ipc ∈ {1, 10}, DM and DC.

Start sets (evaluated as they are; each distilled arm's gain is measured against its own start):

* random real — ``ipc`` random real training images per class (the coreset baseline);
* generator samples — G(z, c) for the seeded z: the prior alone, and the start of the pixel ← generator,
  latent and feature arms (the pixel arm gets exactly the images the latent arms render at step 0);
* noise — Gaussian noise with the data's per-channel mean and std, clipped to [0, 1] (GLaD's default pixel
  start, ``pix_init noise``: N(0, 1) in normalised units).

Distilled arms: pixel ← generator, pixel ← noise, latent (z) (the generator's input latents), feature (F_l, w)
(GLaD: the feature map after synthesis layer ``--layer`` and the styles after it); ``--arms`` can add
pixel ← real (the old protocol's pixel arm). Each is distilled ``--dm-iterations`` / ``--dc-iterations``
(N) iterations. Convergence check, on the first ``--check-seeds`` seeds and the ``--check`` (ipc, loss)
cells: the same run continues to 2N, the 2N set is evaluated with ``--eval-epochs`` E, and the N set also with
2E epochs; the check reports whether the cross-architecture ranking of the arms changes between N and 2N
and between E and 2E. Continuing a run does not change its first N steps, so the N-iteration sets of the
check seeds are the ones in the main table. The check's evaluations run after every seed's main ones,
and the results files are rewritten after each seed, so a cut-short run still leaves its finished seeds.

Every set is evaluated by training a fresh network of each architecture in
:data:`repflow.families.image.distill.EVAL_ARCHITECTURES` on it (``--eval-seeds`` per distillation seed) and testing
on the real test split. "same-arch" = the distillation ConvNet; "cross-arch" = the mean over the MLP,
the batch-norm ConvNet and the ResNet. One generator (the generate stage, seed 0) serves every arm.

    python -m benchmarks.glad [--seeds 3] [--check-seeds 1] [--check 1:dm 1:dc 10:dm] [--dm-iterations 150]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from itertools import combinations
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks._common import RESULTS, Tested, mean_std, write_claims, write_results  # noqa: E402
from repflow.families.image import distill as D  # noqa: E402
from repflow import tracking  # noqa: E402
from repflow.family import parse_params  # noqa: E402
from repflow.report import class_grid, markdown_table  # noqa: E402
from repflow.shards import ShardSet  # noqa: E402
from repflow.families.image.stages.generate import load_generator  # noqa: E402
from repflow.stage import run_stage  # noqa: E402
from repflow.families.image.models.generator import ConditionalGenerator  # noqa: E402
from repflow.verdict import Claim, positive_control, separation_check  # noqa: E402

STARTS = ["random real", "generator samples", "noise"]
ARM_START = {
    "pixel ← generator": "generator samples",
    "pixel ← noise": "noise",
    "pixel ← real": "random real",
    "latent (z)": "generator samples",
    "feature (F_l, w)": "generator samples",
}
"""Every distilled arm and the start set it is initialised with (its gain is measured against it)."""
PIXEL_ARMS = ["pixel ← generator", "pixel ← noise", "pixel ← real"]
GENERATOR_ARMS = ["latent (z)", "feature (F_l, w)"]
IPCS = [1, 10]
LOSSES = ["dm", "dc"]
DEFAULT_ARMS = ["pixel ← generator", "pixel ← noise", "latent (z)", "feature (F_l, w)"]
V1_NAMES = {"pixel ← real": "pixel"}
"""Arms of the old protocol (results/glad_v1.json) under another name."""

PAPER = D.DISTILL_PARAMS["feature"].paper
CLAIMS = {(ipc, loss): Claim(
    f"image.glad_feature_vs_pixel_{loss}_ipc{ipc}", "image", PAPER, f"Distilling into the generator's features "
    f"(GLaD) generalises across architectures better than distilling pixels from the same start ({loss.upper()}, "
    f"{ipc} image(s) per class).", "cross-architecture accuracy", "higher", 0.01, "accuracy", ("feature",))
    for ipc in IPCS for loss in LOSSES}
"""Declared before the run: feature (F_l, w) − pixel ← generator, both from generator samples, paired by seed."""


def judged(payload: dict) -> list[Tested]:
    """The declared claims from a run's payload (``raw`` and ``args``, as glad.json stores them: args as strings).
    Floor check per ipc: random real images beat noise by more than the smallest effect (the evaluation can tell
    a useful set from a useless one). Positive control (``control``, where the run measured it): feature beats
    pixel on :func:`control_accuracies`' task, built so that it must."""
    a = payload["args"]
    iterations = {"dm": int(a["dm_iterations"]), "dc": int(a["dc_iterations"])}
    epochs = int(a["eval_epochs"])
    acc: dict[tuple, dict[int, float]] = {}
    for r in payload["raw"]:
        if r["epochs"] == epochs and r["iteration"] in (0, iterations.get(r["loss"])):
            acc.setdefault((r["ipc"], r["loss"], r["set"]), {})[r["seed"]] = r["cross_arch"]
    scale = {"data": f"Fashion-MNIST, {a['per_class']} per class; CVAE generator", "model": "ConvNet distillation, "
             "evaluated on MLP / ConvNet-BN / ResNet", "device": "cpu"}
    out = []
    control = payload.get("control")
    controls = () if control is None else (positive_control(
        [f - p for f, p in zip(control["feature (image layer)"], control["pixel ← generator"])], name=CONTROL_NAME),)
    for (ipc, loss), claim in CLAIMS.items():
        feature, pixel = acc.get((ipc, loss, "feature (F_l, w)")), acc.get((ipc, loss, "pixel ← generator"))
        if not feature or not pixel:
            continue
        seeds = sorted(set(feature) & set(pixel))
        real, noise = acc[ipc, "—", "random real"], acc[ipc, "—", "noise"]
        both = sorted(set(real) & set(noise))
        floor = separation_check([noise[s] for s in both], [real[s] for s in both], claim.smallest_effect,
                                 name=f"noise vs random real images, ipc {ipc}")
        out.append(Tested(claim, [feature[s] - pixel[s] for s in seeds], (*controls, floor),
                          {**scale, "steps": f"{iterations[loss]} {loss.upper()} iterations, {epochs} eval epochs"},
                          {"feature": [feature[s] for s in seeds], "pixel": [pixel[s] for s in seeds]}))
    return out


CONTROL_NAME = "positive control: a generator whose range leaves out a train-only shortcut, feature beats pixel"
CONTROL_SEEDS = 5


class MaskedGenerator(ConditionalGenerator):
    """A generator whose range, by construction, leaves out the bottom ``masked_rows`` rows (always 0) and
    whose last feature layer is the image itself: layers 0..3 are :class:`ConditionalGenerator`'s, layer 4's
    feature F is the unmasked image and rendering from it is clamp(F, 0, 1) with the rows zeroed. Distilling
    into layer 4 is then pixel distillation that cannot write those rows, and nothing else differs."""

    def __init__(self, num_classes: int, out_shape: tuple[int, int, int], masked_rows: int, **kwargs):
        super().__init__(num_classes, out_shape, **kwargs)
        mask = torch.ones(out_shape)
        mask[:, -masked_rows:] = 0
        self.register_buffer("mask", mask)

    @property
    def num_layers(self) -> int:
        return len(self.blocks) + 2

    def features(self, w: torch.Tensor, layer: int) -> torch.Tensor:
        if layer == self.num_layers - 1:
            return super().render_from(super().features(w, 0), w, 0)
        return super().features(w, layer)

    def render_from(self, feat: torch.Tensor, w: torch.Tensor, layer: int) -> torch.Tensor:
        if layer == self.num_layers - 1:
            return feat.clamp(0, 1) * self.mask
        return super().render_from(feat, w, layer) * self.mask


def control_task(seed: int, *, classes: int = 4, side: int = 16, masked_rows: int = 4, per_class: int = 64,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, labels, test images, labels), float (N, 1, side, side) in [0, 1]: a smooth class template
    (±0.2 on a 4 × 4 grid, upsampled) plus N(0, 0.2²) noise in the top rows, and a bright patch in the bottom
    ``masked_rows`` rows at a column block that codes the class in the train images (a shortcut) and a random
    class in the test images (so a net that learnt the shortcut is misled)."""
    g = torch.Generator().manual_seed(seed)
    top = side - masked_rows
    coarse = torch.randint(0, 2, (classes, 1, 4, 4), generator=g).float() * 2 - 1
    templates = F.interpolate(coarse, size=(top, side), mode="bilinear", align_corners=False)

    def draw(n: int, shortcut: bool) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(classes).repeat_interleave(n)
        x = torch.zeros(len(y), 1, side, side)
        x[:, :, :top] = 0.5 + 0.2 * templates[y] + 0.2 * torch.randn(len(y), 1, top, side, generator=g)
        patch = y if shortcut else torch.randint(0, classes, (len(y),), generator=g)
        width = side // classes
        for c in range(classes):
            x[patch == c, :, top:, c * width:(c + 1) * width] = 1.0
        return x.clamp(0, 1), y

    return (*draw(per_class, True), *draw(per_class, False))


def control_accuracies(seed: int, *, iterations: int = 100, ipc: int = 5, epochs: int = 100) -> dict[str, float]:
    """Cross-architecture accuracy (on the misleading-shortcut test images of :func:`control_task`) of a DM-distilled
    set, pixel ← generator vs feature (the image layer of :class:`MaskedGenerator`), from the same generator
    samples, the same learning rate (the pixel one) and the same seed. Both can write the class templates; only
    the pixel set can copy the train-only shortcut, which the evaluation nets then lean on."""
    x, y, x_test, y_test = control_task(seed)
    torch.manual_seed(seed)
    gen = MaskedGenerator(int(y.max()) + 1, tuple(x.shape[1:]), masked_rows=4, z_dim=8, w_dim=16, channels=8).eval()
    norm = {"mean": [0.5], "std": [0.25]}
    net = {**D.DISTILL_NET, **norm}
    archs = {name: {**cfg, **norm} for name, cfg in D.EVAL_ARCHITECTURES.items()}
    lr = {"pixels": D.DEFAULT_LR["dm"]["pixels"], "features": D.DEFAULT_LR["dm"]["pixels"]}
    out = {}
    for arm, param in (("pixel ← generator", D.PixelParam.from_generator(gen, ipc, seed)),
                       ("feature (image layer)", D.FeatureParam(gen, ipc, gen.num_layers - 1, seed))):
        D.distill(param, x, y, loss="dm", iterations=iterations, lr=lr, net_config=net, seed=seed)
        rows = D.evaluate_distilled(*param.snapshot(), x_test, y_test, archs=archs, epochs=epochs, seeds=[seed])
        out[arm] = D.summarize(rows)["cross_arch"]
    return out


def prepare(root: Path, per_class: int, test_per_class: int, generator_epochs: int):
    """prep + generate (seed 0) under ``root`` (reused when up to date): the shards and the generator."""
    tracking.configure(root)
    params = parse_params({
        "seed": 0, "device": "cpu",
        "prep": {"source": "fashion-mnist", "per_class": per_class, "test_per_class": test_per_class,
                 "image_format": "png", "train_order": "source"},
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


def make_param(arm: str, gen, x: torch.Tensor, y: torch.Tensor, ipc: int, seed: int, layer: int,
               noise_stats: tuple[list, list]) -> D.Parameterization:
    if arm == "pixel ← generator":
        return D.PixelParam.from_generator(gen, ipc, seed)
    if arm == "pixel ← noise":
        mean, std = noise_stats
        return D.PixelParam.from_noise(x.shape[1:], gen.num_classes, ipc, seed, mean=mean, std=std)
    if arm == "pixel ← real":
        return D.PixelParam.from_real(x, y, ipc, seed)
    if arm == "latent (z)":
        return D.LatentParam(gen, ipc, seed)
    if arm == "feature (F_l, w)":
        return D.FeatureParam(gen, ipc, layer, seed)
    raise ValueError(f"arm {arm!r} unknown; allowed: {list(ARM_START)}")


def start_set(name: str, gen, x, y, ipc: int, seed: int, noise_stats) -> tuple[torch.Tensor, torch.Tensor]:
    """The unoptimised set ``name`` (one of :data:`STARTS`): exactly what the arms starting there begin with."""
    if name == "random real":
        return D.random_real_subset(x, y, ipc, seed)
    if name == "generator samples":
        return D.generator_samples(gen, ipc, seed)
    if name == "noise":
        return make_param("pixel ← noise", gen, x, y, ipc, seed, 0, noise_stats).snapshot()
    raise ValueError(f"start set {name!r} unknown; allowed: {STARTS}")


def distill_checkpoints(arm: str, loss: str, gen, x, y, ipc: int, seed: int, iterations: int, checkpoints: list[int],
                        layer: int, noise_stats, net_config: dict) -> tuple[dict, dict]:
    """Distil ``arm`` for max(checkpoints) iterations; ({iteration: (images, labels)} at each checkpoint, info)."""
    param = make_param(arm, gen, x, y, ipc, seed, layer, noise_stats)
    sets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(row: dict) -> None:
        if row["iteration"] in checkpoints:
            sets[row["iteration"]] = param.snapshot()

    t0 = time.perf_counter()
    history = D.distill(param, x, y, loss=loss, iterations=max(checkpoints), net_config=net_config, seed=seed,
                        on_step=keep)
    seconds = time.perf_counter() - t0
    info = {"distill_s_per_iteration": seconds / max(checkpoints), "loss_first": history[0]["loss"],
            "loss": {it: history[it - 1]["loss"] for it in checkpoints}, "iterations": iterations}
    return sets, info


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.clamp(0, 1).mul(255).round().byte()


def save_grid(sets: dict[str, tuple[torch.Tensor, torch.Tensor]], path: Path, title: str) -> Path:
    """One row per set, one column per class (the first image of each class)."""
    names = list(sets)
    picks, rows = [], []
    for r, name in enumerate(names):
        images, labels = sets[name]
        first = torch.stack([torch.nonzero(labels == c).flatten()[0] for c in range(int(labels.max()) + 1)])
        picks.append(images[first])
        rows.append(torch.full((len(first),), r))
    return class_grid(_to_uint8(torch.cat(picks)), torch.cat(rows), names, path, per_class=len(picks[0]), title=title)


def ranking(accuracy: dict[str, float]) -> list[str]:
    """Arms from best to worst cross-architecture accuracy."""
    return sorted(accuracy, key=lambda arm: -accuracy[arm])


def flips(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Pairs of arms whose order differs between two checkpoints, with both gaps (after; before)."""
    out = []
    for a, b in combinations(before, 2):
        if (before[a] - before[b]) * (after[a] - after[b]) < 0:
            out.append(f"{a} vs {b} ({after[a] - after[b]:+.3f}; was {before[a] - before[b]:+.3f})")
    return out


def old_results() -> dict[tuple, dict]:
    """The old protocol's rows (results/glad_v1.json) by (ipc, loss, arm), under this protocol's arm names."""
    path = RESULTS / "glad_v1.json"
    if not path.exists():
        return {}
    names = {old: new for new, old in V1_NAMES.items()}
    return {(r["ipc"], r["loss"], names.get(r["arm"], r["arm"])): r for r in json.loads(path.read_text())["rows"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--check-seeds", type=int, default=1,
                    help="seeds (the first ones) whose runs continue to 2N for the convergence check")
    ap.add_argument("--check", nargs="+", default=["1:dm", "1:dc", "10:dm"], metavar="IPC:LOSS",
                    help="(ipc, loss) cells in the convergence check")
    ap.add_argument("--ipcs", type=int, nargs="+", default=IPCS)
    ap.add_argument("--losses", nargs="+", default=LOSSES, choices=LOSSES)
    ap.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARM_START))
    ap.add_argument("--eval-seeds", type=int, default=1, help="evaluation nets per architecture and distillation seed")
    ap.add_argument("--per-class", type=int, default=300, help="Fashion-MNIST train+val images per class")
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--generator-epochs", type=int, default=15)
    ap.add_argument("--dm-iterations", type=int, default=150)
    ap.add_argument("--dc-iterations", type=int, default=60)
    ap.add_argument("--eval-epochs", type=int, default=100)
    ap.add_argument("--layer", type=int, default=1, help="GLaD split layer (generator layers: 0..3)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep prep/generate outputs here (default: a temp dir)")
    ap.add_argument("--name", default="glad", help="results file stem (benchmarks/results/NAME.*)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 because on shared cores two threads ran these small nets ~30x slower")
    args = ap.parse_args()
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    control: dict[str, list[float]] = {}
    for seed in range(CONTROL_SEEDS):
        for arm, acc in control_accuracies(seed).items():
            control.setdefault(arm, []).append(acc)
    print(f"positive control ({CONTROL_SEEDS} seeds, cross-arch accuracy, misleading-shortcut test): {control}",
          flush=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="repflow-glad-") as tmp:
        root = args.workdir or Path(tmp)
        data, gen, quality = prepare(root, args.per_class, args.test_per_class, args.generator_epochs)
        x, y = data.load("train")
        x_test, y_test = data.load("test")
        t_data = time.perf_counter() - t_start
    net_config, archs = architectures(data)
    unit = x.float().div(255).transpose(0, 1).flatten(1)
    noise_stats = (unit.mean(1).tolist(), unit.std(1).tolist())
    print(f"data + generator: {t_data:.0f} s; {len(x)} train, {len(x_test)} test images", flush=True)
    checked = {(int(cell.split(":")[0]), cell.split(":")[1]) for cell in args.check}

    def evaluate(images, labels, seed: int, epochs: int) -> dict:
        rows = D.evaluate_distilled(images, labels, x_test, y_test, archs=archs, epochs=epochs,
                                    seeds=[seed * 100 + i for i in range(args.eval_seeds)])
        return {**D.summarize(rows), "rows": rows}

    # results[(seed, ipc, loss or "—", set name, iteration, epochs)] = summary
    results: dict[tuple, dict] = {}
    infos: dict[tuple, dict] = {}
    grids: dict[int, dict] = {ipc: {} for ipc in args.ipcs}
    pending: list[tuple[tuple, tuple[torch.Tensor, torch.Tensor]]] = []  # convergence-check (key, set), run last
    e = args.eval_epochs

    def report(seeds_done: int, status: str) -> None:
        raw = [{"seed": k[0], "ipc": k[1], "loss": k[2], "set": k[3], "iteration": k[4], "epochs": k[5], **v}
               for k, v in results.items()]
        rows, notes = tables_and_notes(args, results, infos, seeds_done, checked, archs, gen, quality, x, x_test,
                                       t_start, t_data, status)
        notes.insert(1, f"positive control ({CONTROL_NAME}; control_accuracies: 4 classes of 16 × 16 templates, "
                     f"DM 100 iterations, ipc 5, equal pixel learning rate, 100 eval epochs; {CONTROL_SEEDS} seeds): "
                     "cross-arch accuracy " + ", ".join(f"{arm} {mean_std(v)[0]:.3f} ± {mean_std(v)[1]:.3f}"
                                                        for arm, v in control.items()))
        if args.name == "glad":  # the headline run
            notes = notes + write_claims(judged({"raw": raw, "args": {k: str(v) for k, v in vars(args).items()},
                                                 "control": control}), args.name)
        write_results(args.name, "GLaD: cross-architecture accuracy of distilled Fashion-MNIST sets, same starts",
                      rows, notes,
                      extra={"raw": raw,
                             "distill_info": [{"seed": k[0], "ipc": k[1], "loss": k[2], "arm": k[3], **v}
                                              for k, v in infos.items()],
                             "generator_quality": quality, "args": {k: str(v) for k, v in vars(args).items()},
                             "control": control})

    for seed in range(args.seeds):
        for ipc in args.ipcs:
            checking_ipc = seed < args.check_seeds and any(i == ipc for i, _ in checked)
            for name in STARTS:
                t0 = time.perf_counter()
                images, labels = start_set(name, gen, x, y, ipc, seed, noise_stats)
                results[(seed, ipc, "—", name, 0, e)] = evaluate(images, labels, seed, e)
                if checking_ipc and any(ARM_START[arm] == name for arm in args.arms):
                    pending.append(((seed, ipc, "—", name, 0, 2 * e), (images, labels)))
                if seed == 0:
                    grids[ipc][name] = (images, labels)
                s = results[(seed, ipc, "—", name, 0, e)]
                print(f"seed {seed} ipc {ipc} start {name}: same {s['same_arch']:.3f} cross {s['cross_arch']:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            for loss in args.losses:
                n = args.dm_iterations if loss == "dm" else args.dc_iterations
                checking = seed < args.check_seeds and (ipc, loss) in checked
                checkpoints = [n, 2 * n] if checking else [n]
                for arm in args.arms:
                    t0 = time.perf_counter()
                    sets, info = distill_checkpoints(arm, loss, gen, x, y, ipc, seed, n, checkpoints, args.layer,
                                                     noise_stats, net_config)
                    infos[(seed, ipc, loss, arm)] = info
                    results[(seed, ipc, loss, arm, n, e)] = evaluate(*sets[n], seed, e)
                    if checking:
                        pending += [((seed, ipc, loss, arm, 2 * n, e), sets[2 * n]),
                                    ((seed, ipc, loss, arm, n, 2 * e), sets[n])]
                    if seed == 0:
                        grids[ipc][f"{loss.upper()} {arm}"] = sets[n]
                    s = results[(seed, ipc, loss, arm, n, e)]
                    start = results[(seed, ipc, "—", ARM_START[arm], 0, e)]
                    print(f"seed {seed} ipc {ipc} {loss} {arm}: same {s['same_arch']:.3f} cross {s['cross_arch']:.3f}"
                          f" (gain {s['cross_arch'] - start['cross_arch']:+.3f}); distilled "
                          f"{max(checkpoints)} iterations ({time.perf_counter() - t0:.0f} s)", flush=True)
        if seed == 0:
            RESULTS.mkdir(exist_ok=True)
            for ipc in args.ipcs:
                save_grid(grids[ipc], RESULTS / f"{args.name}_ipc{ipc}.png",
                          f"ipc {ipc}, seed 0 (first image of each class)")
        report(seed + 1, f"partial: {seed + 1} of {args.seeds} seeds, convergence check not yet evaluated")
    for i, (key, (images, labels)) in enumerate(pending):
        t0 = time.perf_counter()
        results[key] = evaluate(images, labels, key[0], key[5])
        print(f"check {i + 1}/{len(pending)} seed {key[0]} ipc {key[1]} {key[2]} {key[3]} iteration {key[4]} "
              f"epochs {key[5]}: cross {results[key]['cross_arch']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    report(args.seeds, "complete")


def tables_and_notes(args, results: dict, infos: dict, seeds_done: int, checked: set, archs: dict, gen,
                     quality: dict, x: torch.Tensor, x_test: torch.Tensor, t_start: float, t_data: float,
                     status: str) -> tuple[list[dict], list[str]]:
    """The main table (mean ± std over the first ``seeds_done`` seeds at N iterations, E epochs) and the
    notes: protocol, convergence check (whatever of it is evaluated), claim lines."""
    old = old_results()
    seeds = range(seeds_done)
    e = args.eval_epochs
    table = []
    for ipc in args.ipcs:
        for loss in ["—", *args.losses]:
            names = STARTS if loss == "—" else args.arms
            for name in names:
                n = {"—": 0, "dm": args.dm_iterations, "dc": args.dc_iterations}[loss]
                runs = [results[(s, ipc, loss, name, n, e)] for s in seeds]
                start = ARM_START.get(name, name)
                starts = [results[(s, ipc, "—", start, 0, e)] for s in seeds]
                same, cross = mean_std([r["same_arch"] for r in runs]), mean_std([r["cross_arch"] for r in runs])
                distilled = loss != "—"
                gain_same = mean_std([r["same_arch"] - b["same_arch"] for r, b in zip(runs, starts)])
                gain_cross = mean_std([r["cross_arch"] - b["cross_arch"] for r, b in zip(runs, starts)])
                nan = float("nan")
                table.append({
                    "ipc": ipc, "loss": loss, "arm": name, "start": start if distilled else "—",
                    "same_arch": same[0], "same_std": same[1], "cross_arch": cross[0], "cross_std": cross[1],
                    "gain_same": gain_same[0] if distilled else nan,
                    "gain_same_std": gain_same[1] if distilled else nan,
                    "gain_cross": gain_cross[0] if distilled else nan,
                    "gain_cross_std": gain_cross[1] if distilled else nan,
                    **{arch: mean_std([r["per_arch"][arch] for r in runs])[0] for arch in archs},
                    "v1_cross_arch": old.get((ipc, loss, name), {}).get("cross_arch", nan),
                    "distill_s": (sum(infos[(s, ipc, loss, name)]["distill_s_per_iteration"] for s in seeds)
                                  / seeds_done * n) if distilled else 0.0})

    def row(ipc: int, loss: str, name: str) -> dict:
        return next(r for r in table if (r["ipc"], r["loss"], r["arm"]) == (ipc, loss, name))

    check_rows, check_notes = [], []
    for seed in range(min(args.check_seeds, seeds_done)):
        for ipc, loss in sorted(checked):
            n = args.dm_iterations if loss == "dm" else args.dc_iterations
            points = {"at N": (n, e), "at 2N": (2 * n, e), "at N, 2E": (n, 2 * e)}
            if any((seed, ipc, loss, arm, it, ep) not in results for arm in args.arms
                   for it, ep in points.values()):
                continue
            acc = {label: {arm: results[(seed, ipc, loss, arm, it, ep)]["cross_arch"] for arm in args.arms}
                   for label, (it, ep) in points.items()}
            start_2e = {arm: results[(seed, ipc, "—", ARM_START[arm], 0, 2 * e)]["cross_arch"]
                        for arm in args.arms}
            for arm in args.arms:
                check_rows.append({"seed": seed, "ipc": ipc, "loss": loss, "iterations N": n, "arm": arm,
                                   **{label: a[arm] for label, a in acc.items()},
                                   "gain at N, 2E": acc["at N, 2E"][arm] - start_2e[arm]})
            at_n, at_2n, at_2e = acc.values()
            iteration_flips, epoch_flips = flips(at_n, at_2n), flips(at_n, at_2e)
            check_notes.append(
                f"check seed {seed} ipc {ipc} {loss.upper()}: cross-arch ranking at N: {' > '.join(ranking(at_n))}"
                f"; at 2N: {' > '.join(ranking(at_2n))}; at N with 2E epochs: {' > '.join(ranking(at_2e))}. "
                f"N → 2N: {'same ranking' if not iteration_flips else 'flipped ' + '; '.join(iteration_flips)}. "
                f"E → 2E: {'same ranking' if not epoch_flips else 'flipped ' + '; '.join(epoch_flips)}")

    with torch.no_grad():
        w0 = gen.mapping(torch.zeros(1, gen.z_dim), torch.zeros(1, dtype=torch.long))
        feature_shape = tuple(gen.features(w0, args.layer).shape[1:])
    claims = []
    for loss in args.losses:
        for ipc in args.ipcs:
            n = args.dm_iterations if loss == "dm" else args.dc_iterations
            for name in [a for a in GENERATOR_ARMS if a in args.arms]:
                lat = row(ipc, loss, name)
                parts = []
                for pixel in [a for a in PIXEL_ARMS if a in args.arms]:
                    gaps = [results[(s, ipc, loss, name, n, e)]["cross_arch"]
                            - results[(s, ipc, loss, pixel, n, e)]["cross_arch"] for s in seeds]
                    gap, spread = mean_std(gaps)
                    parts.append(f"vs {pixel} {row(ipc, loss, pixel)['cross_arch']:.3f}: {gap:+.3f} ± {spread:.3f} "
                                 f"({sum(g > 0 for g in gaps)}/{len(gaps)} seeds higher), pixel gain "
                                 f"{row(ipc, loss, pixel)['gain_cross']:+.3f}")
                claims.append(f"{loss.upper()} ipc {ipc}: {name} cross-arch {lat['cross_arch']:.3f} ± "
                              f"{lat['cross_std']:.3f}, gain over start {lat['gain_cross']:+.3f} ± "
                              f"{lat['gain_cross_std']:.3f}; paired gap " + "; ".join(parts))
    notes = [
        f"status: {status}",
        f"Fashion-MNIST: {len(x)} train images ({args.per_class} per class before the 10% val split), "
        f"{len(x_test)} test images; {seeds_done} seeds per arm (mean ± std over seeds); each seed fixes the "
        f"start set, the distillation and {args.eval_seeds} evaluation net(s) per architecture; gain = the arm's "
        f"accuracy minus its start set's, per seed, then mean ± std; v1_cross_arch = the old protocol "
        f"(glad_v1.md: pixel started from real images, here 'pixel ← real')",
        "old pixel ← real arm (glad_v1, 3 seeds, same N, E, learning rates and distillation net; it does not use "
        "the generator): " + ("; ".join(f"{loss.upper()} ipc {ipc} same {r['same_arch']:.3f} cross "
                                       f"{r['cross_arch']:.3f} ± {r['cross_std']:.3f}"
                                       for (ipc, loss, name), r in old.items() if name == "pixel ← real")
                              or "(glad_v1.json not found)")
        + ("; not rerun here (budget): its start, random real, is rerun, so compare its v1 and new rows"
           if "pixel ← real" not in args.arms else "; rerun here as the arm pixel ← real"),
        "start sets: random real; generator samples (G(z, c), seeded z; the pixel ← generator arm starts from these "
        "exact images, the latent and feature arms render them at step 0); noise = N(data mean, data std) per "
        "channel, clipped to [0, 1] (GLaD's default pix_init noise is N(0, 1) in normalised units, unclipped)",
        f"distillation: ConvNet width {D.DISTILL_NET['width']} depth {D.DISTILL_NET['depth']} instance norm, a fresh "
        f"random net every iteration; N = DM {args.dm_iterations} / DC {args.dc_iterations} iterations "
        f"(outer/inner loop 1/1, as GLaD); 32 real images per class per iteration; siamese DSA-style augmentation "
        f"(shift ±12.5%, scale ×1.2, rotation ±15°); SGD momentum 0.5, learning rates {D.DEFAULT_LR} (the pixel rate "
        f"for every pixel start)",
        f"GLaD feature arm: generator layer {args.layer}, F_l of shape {feature_shape} and the styles of layers "
        f"{args.layer + 1}..{gen.num_layers - 1}",
        "learning rates: chosen per loss and parameterisation on the validation split in the old protocol (pixel "
        "from real, 150 DM / 60 DC iterations), never on the test split; not re-tuned for the new pixel starts",
        f"evaluation: {', '.join(archs)}; E = {e} epochs (one step per epoch: the sets fit in one batch), "
        f"SGD momentum 0.9, lr 0.01 (× 0.1 after half), weight decay 5e-4, per-image augmentation; "
        f"same_arch = convnet, cross_arch = mean of the other three; the final set is evaluated (no best-so-far "
        f"selection on the test split, unlike GLaD's eval loop)",
        f"generator (VAE decoder, {args.generator_epochs} epochs max): Fréchet distance "
        f"{quality['frechet_distance']:.3f} (real vs real {quality['frechet_distance_real_vs_real']:.3f}), judge "
        f"accuracy on samples {quality['judge_acc']:.3f} (on real {quality['judge_acc_real']:.3f})",
        f"convergence check (seed(s) 0..{args.check_seeds - 1}; ipc:loss {' '.join(args.check)}): the same "
        f"distillation run continued to 2N; cross-arch accuracy of each "
        f"arm's set after N and 2N iterations (E epochs) and after N iterations with 2E epochs; 'gain at N, 2E' is "
        f"against the start set evaluated with 2E epochs\n\n"
        + (markdown_table(check_rows, floatfmt="{:.3f}") if check_rows else "(not evaluated yet)") + "\n",
        *check_notes,
        *claims,
        f"wall time {time.perf_counter() - t_start:.0f} s (data + generator {t_data:.0f} s), torch threads "
        f"{args.threads}; image grids: {args.name}_ipc*.png (seed 0)",
    ]
    return table, notes


if __name__ == "__main__":
    main()
