"""ACL's attack mode: adversarial views crafted in train mode (before commit 0bd2528) vs in eval mode (now).

Full-data ACL exactly as the ``full`` arm of ``benchmarks.rcs`` (small_cnn width 16, projection 32,
ε 8/255, 2 PGD steps, lr 2e-3, batch 128), through the real select → train → evaluate stages, once with
the library's :func:`repflow.families.image.acl.pgd_contrastive` (eval mode on the adv batch-norm branch, as the
official
ACL code crafts) and once with the pre-fix crafting, which this benchmark alone reproduces by patching
``repflow.families.image.acl.pgd_contrastive`` for the ``old`` arm: in train mode each PGD iterate normalises with the
perturbed batch's own statistics and updates the adv branch's running statistics. Evaluation (SLF and ALF,
clean and PGD-20 at ε 8/255 on ``--max-test`` test images) is the same for every arm; a SimCLR arm (no
adversary, same schedule) is the floor reference.

Positive control, run first (``--control-seeds``; ``--control`` runs only it): a tiny task where the two
modes must differ by construction (:func:`control_task`). Per seed a small dual-BN CNN is warmed up with ACL
on a few batches (its adv running statistics still lag the batch statistics, as early in training), then
one batch of views is crafted in each mode from the same start: (1) the eval-mode adversary is stronger
on the model as it is evaluated (eval mode, adv branch): its NT-Xent is higher than the train-mode
adversary's, which climbed the loss of each perturbed batch's own statistics; (2) only the train-mode
crafting moves the adv branch's running statistics. Both are judged by the rule over the seeds.

The mechanism check loads the seed-0 ``new`` encoder and measures how far one crafting call on one batch of
views moves the adv (and clean) branch running statistics in each mode.

    python -m benchmarks.acl_attack_mode [--seeds 5] [--per-class 150] [--epochs 10]
    python -m benchmarks.acl_attack_mode --control [--control-seeds 5]     # the positive control alone (seconds)
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from unittest import mock

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks._common import Tested, interval_text, mean_std, run_controls, write_claims, write_results  # noqa: E402
from benchmarks.rcs import arm_params, run_arm, smooth_images  # noqa: E402
from repflow import tracking  # noqa: E402
from repflow.families.image import acl  # noqa: E402
from repflow.families.image.augment import random_views  # noqa: E402
from repflow.checkpoints import load_state_strict, load_tensors  # noqa: E402
from repflow.family import parse_params  # noqa: E402
from repflow.families.image.contrastive import nt_xent_loss  # noqa: E402
from repflow.families.image.models.encoders import DualBatchNorm, ProjectionHead, SmallCNN, bn_branch  # noqa: E402
from repflow.shards import ShardSet  # noqa: E402
from repflow.verdict import Claim, Control, positive_control, separation_check  # noqa: E402

CLAIM = Claim("image.acl_attack_mode", "image", "Jiang et al. 2020, 'Robust Pre-Training by Adversarial "
              "Contrastive Learning' (NeurIPS)", "Crafting ACL's adversarial views in eval mode on the adv "
              "batch-norm branch (the official code's mode, our fix) gives a more robust encoder than crafting "
              "them in train mode.", "ALF PGD-20 accuracy", "higher", 0.01, "accuracy", ("acl",))
"""Declared before the run: new (eval-mode crafting) − old (train-mode crafting), paired by seed."""


def judged(payload: dict) -> list[Tested]:
    """The declared claim from a run's payload (``runs``, ``mechanism``, ``control`` and ``args``, as
    acl_attack_mode.json stores them). Controls: the positive control (:func:`control_task`, both effects),
    the mechanism on the trained encoder (old crafting moves the adv branch's running statistics, new does
    not) and the floor check (the task's ALF PGD-20 accuracy separates a non-adversarial SimCLR encoder from
    ACL by more than the smallest effect: it can see robustness training at all)."""
    runs, mech, a = payload["runs"], payload["mechanism"], payload["args"]
    control = control_checks(payload["control"]) if payload.get("control") else (
        Control("positive control", False, "not run"),)
    floor = (separation_check([r["alf_robust"] for r in runs["simclr"]], [r["alf_robust"] for r in runs["new"]],
                              CLAIM.smallest_effect, name="SimCLR vs ACL (new) on ALF PGD-20 accuracy")
             if runs.get("simclr") else Control("floor/ceiling", False, "floor: no non-adversarial reference run"))
    moved = {mode: mech[mode]["adv"]["batches_tracked_added"] for mode in MODES}
    mechanism = Control("mechanism: only train-mode crafting updates the adv BN statistics",
                        moved["old"] > 0 and moved["new"] == 0,
                        f"batch-norm updates per crafting call: old {moved['old']}, new {moved['new']}")
    scale = {"data": f"Fashion-MNIST, {a['per_class']} per class", "model": "small_cnn width 16, projection 32",
             "steps": f"{a['epochs']} epochs", "device": "cpu",
             "evaluation": f"ALF PGD-20 at 8/255 on {a.get('max_test', 500)} test images",
             "positive control": f"{len(payload.get('control') or [])} seeds; smooth random 1×{CONTROL['side']}² "
                                 f"images, small_cnn width {CONTROL['width']}, {CONTROL['warmup_batches']} ACL "
                                 f"warm-up steps, one batch of {CONTROL['batch']} pairs, {CONTROL['steps']} PGD steps"}
    key = "alf_robust"
    return [Tested(CLAIM, [n[key] - o[key] for n, o in zip(runs["new"], runs["old"])], (*control, mechanism, floor),
                   scale, {mode: [r[key] for r in runs[mode]] for mode in (*MODES, "simclr") if runs.get(mode)})]
from repflow.stage import run_stage  # noqa: E402
from repflow.families.image.stages._training import new_models  # noqa: E402

MODES = ("old", "new")
LIBRARY_CRAFT = acl.pgd_contrastive
METRICS = ("slf_clean", "slf_robust", "alf_clean", "alf_robust", "rd")


def pgd_contrastive_train_mode(*args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The crafting before commit 0bd2528: the library's PGD with its switch to eval mode disabled, so the
    modules stay in the caller's mode (train mode inside the training loop). Kept here only to measure
    what the fix changed."""
    with mock.patch.object(nn.Module, "eval", lambda module: module):
        return LIBRARY_CRAFT(*args, **kwargs)


CRAFT = {"old": pgd_contrastive_train_mode, "new": LIBRARY_CRAFT}


@contextmanager
def attack_mode(mode: str) -> Iterator[None]:
    """Every ACL adversary built inside runs ``mode``'s crafting (``ACL.loss`` looks the function up in
    ``repflow.families.image.acl`` at each call)."""
    with mock.patch.object(acl, "pgd_contrastive", CRAFT[mode]):
        yield


def running_stats(modules: tuple[nn.Module, ...], branch: str) -> dict[str, torch.Tensor]:
    return {f"{i}.{name}.{stat}": getattr(getattr(m, branch), stat).clone()
            for i, mod in enumerate(modules) for name, m in mod.named_modules() if isinstance(m, DualBatchNorm)
            for stat in ("running_mean", "running_var", "num_batches_tracked")}


def stat_shift(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative L2 change of all running means (and variances) of one branch, concatenated over layers,
    and the increase of ``num_batches_tracked`` summed over layers."""
    out = {}
    for stat in ("running_mean", "running_var"):
        keys = [k for k in before if k.endswith(stat)]
        b = torch.cat([before[k] for k in keys])
        a = torch.cat([after[k] for k in keys])
        out[f"{stat}_rel_change"] = ((a - b).norm() / b.norm()).item()
    out["batches_tracked_added"] = int(sum((after[k] - before[k]).item() for k in before
                                           if k.endswith("num_batches_tracked")))
    return out


def mechanism_check(raw: dict, shards: Path, train_dir: Path) -> dict[str, dict]:
    """One crafting call per mode on one batch of training views, from the trained seed-0 encoder + head in
    train mode (as inside the loop): how far it moves each branch's running statistics."""
    p = parse_params(raw)
    data = ShardSet(shards)
    x, _ = data.load("train")
    g = torch.Generator().manual_seed(0)
    x = x[torch.randperm(len(x), generator=g)[:p.train.batch_size]].float().div(255)
    aug = p.train.augment.model_dump()
    v1, v2 = random_views(x, g, **aug), random_views(x, g, **aug)
    a = p.train.adversarial
    out = {}
    for mode in MODES:
        encoder, head, _, _ = new_models(p, data)
        for module, name in ((encoder, "encoder"), (head, "head")):
            state, _ = load_tensors(train_dir / f"{name}.safetensors")
            load_state_strict(module, state, train_dir / f"{name}.safetensors")
            module.train()
        before = {b: running_stats((encoder, head), b) for b in ("adv", "clean")}
        CRAFT[mode](encoder, head, v1, v2, eps=a.eps, alpha=a.alpha, steps=a.steps,
                    temperature=p.train.temperature, generator=torch.Generator().manual_seed(1))
        out[mode] = {b: stat_shift(before[b], running_stats((encoder, head), b)) for b in ("adv", "clean")}
        print(f"mechanism {mode}: {out[mode]}", flush=True)
    return out


CONTROL = {"images": 64, "side": 12, "width": 4, "proj_dim": 8, "batch": 16, "warmup_batches": 20, "eps": 8 / 255,
           "steps": 3}
"""The positive control's task: smooth random 1×side×side images, small_cnn ``width``, ``warmup_batches``
ACL steps (Adam 2e-3) before crafting one batch of ``batch`` view pairs with ``steps`` PGD steps at ``eps``."""


def control_task(seed: int, task: dict | None = None) -> dict[str, float]:
    """One seed of the positive control (:data:`CONTROL`, overridable by ``task``): from one warmed-up model
    in train mode (as inside the training loop) and one batch of views, each mode crafts from the same PGD
    start. Returns, per mode, the NT-Xent of its adversarial views on the model as it is evaluated (eval
    mode, adv branch; higher = the stronger attack), the relative L2 change of the adv branch's running
    means and its batch-norm updates, and the paired differences new − old (loss) and old − new (updates)."""
    c = {**CONTROL, **(task or {})}
    g = torch.Generator().manual_seed(seed)
    images = smooth_images(c["images"], c["side"], g)
    torch.manual_seed(seed)
    encoder = SmallCNN(1, c["width"], dual_bn=True)
    head = ProjectionHead(encoder.out_dim, c["proj_dim"], dual_bn=True)
    augment = {"crop_scale_min": 0.5, "flip": True, "brightness": 0.4, "contrast": 0.4}
    attack = {"eps": c["eps"], "alpha": 2.5 * c["eps"] / c["steps"], "steps": c["steps"], "temperature": 0.5}
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=2e-3)
    for _ in range(c["warmup_batches"]):
        x = images[torch.randperm(len(images), generator=g)[:c["batch"]]]
        v1, v2 = random_views(x, g, **augment), random_views(x, g, **augment)
        a1, a2 = LIBRARY_CRAFT(encoder, head, v1, v2, generator=g, **attack)
        loss = acl.acl_loss(encoder, head, v1, v2, a1, a2, temperature=0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    x = images[torch.randperm(len(images), generator=g)[:c["batch"]]]
    v1, v2 = random_views(x, g, **augment), random_views(x, g, **augment)
    out = {}
    for mode in MODES:
        enc, hd = copy.deepcopy(encoder), copy.deepcopy(head)
        before = running_stats((enc, hd), "adv")
        a1, a2 = CRAFT[mode](enc, hd, v1, v2, generator=torch.Generator().manual_seed(seed + 1), **attack)
        shift = stat_shift(before, running_stats((enc, hd), "adv"))
        encoder.eval()
        head.eval()
        with torch.no_grad(), bn_branch("adv", encoder, head):
            out[f"{mode} eval-mode loss"] = nt_xent_loss(head(encoder(a1)), head(encoder(a2)), 0.5).item()
        encoder.train()
        head.train()
        out[f"{mode} adv stats moved"] = shift["running_mean_rel_change"]
        out[f"{mode} adv BN updates"] = shift["batches_tracked_added"]
    out["loss new - old"] = out["new eval-mode loss"] - out["old eval-mode loss"]
    out["BN updates old - new"] = out["old adv BN updates"] - out["new adv BN updates"]
    return out


def run_control(seeds: int) -> list[dict]:
    return run_controls(control_task, seeds)


def control_checks(rows: list[dict]) -> tuple[Control, Control]:
    """The positive control judged by the rule (interval above 0 over the seeds), one Control per effect."""
    return (positive_control([r["loss new - old"] for r in rows],
                             name="positive control: the eval-mode adversary is stronger on the model as evaluated "
                                  "(NT-Xent, new − old)"),
            positive_control([r["BN updates old - new"] for r in rows],
                             name="positive control: only train-mode crafting updates the adv running statistics "
                                  "(batch-norm updates per crafting call, old − new)"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--control-seeds", type=int, default=5, help="seeds of the positive control, run first")
    ap.add_argument("--control", action="store_true", help="run the positive control only and print it")
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-test", type=int, default=500, help="test images of the evaluation (PGD-20, ALF, RD)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0 = torch's default; 1 keeps timings stable on a shared 2-core CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    control = run_control(args.control_seeds)
    for check in control_checks(control):
        print(check, flush=True)
    if args.control:
        return
    t_start, cpu_start = time.perf_counter(), time.process_time()
    schedule = argparse.Namespace(per_class=args.per_class, epochs=args.epochs, warmup=0, every=1, method="acl",
                                  candidate_batch=32, batch_size=128, max_test=args.max_test)

    def full_arm(seed: int) -> dict:
        """benchmarks.rcs's full-data arm (the validation size is unused without a coreset)."""
        return arm_params(schedule, seed, "full", 1.0, val_size=128)

    simclr = argparse.Namespace(**{**vars(schedule), "method": "simclr"})
    runs: dict[str, list[dict]] = {mode: [] for mode in (*MODES, "simclr")}
    with tempfile.TemporaryDirectory(prefix="repflow-acl-mode-") as tmp:
        base = Path(tmp)
        tracking.configure(base)
        shards = run_stage("image.prep", parse_params(full_arm(0)), {}, base / "prep")
        n_train = ShardSet(shards).count("train")
        for seed in range(args.seeds):
            for mode in MODES:
                t0 = time.perf_counter()
                with attack_mode(mode):
                    row = run_arm(base / f"s{seed}-{mode}", shards, full_arm(seed))
                row["wall_s"] = time.perf_counter() - t0
                runs[mode].append(row)
                print(f"seed {seed} {mode}: {row}", flush=True)
            row = run_arm(base / f"s{seed}-simclr", shards, arm_params(simclr, seed, "full", 1.0, val_size=128))
            runs["simclr"].append(row)
            print(f"seed {seed} simclr (floor reference): {row}", flush=True)
        mechanism = mechanism_check(full_arm(0), shards, base / "s0-new" / "train")
    rows = []
    for mode in (*MODES, "simclr"):
        row = {"attack mode": f"{mode} ({'train' if mode == 'old' else 'eval'} mode)" if mode in MODES
               else "simclr (no adversary: the floor reference)"}
        for key in METRICS:
            m, s = mean_std([r[key] for r in runs[mode]])
            row[key] = f"{m:.4f} ± {s:.4f}"
        row["train s"] = f"{mean_std([r['total_s'] for r in runs[mode]])[0]:.0f}"
        rows.append(row)
    diffs = {key: [n[key] - o[key] for n, o in zip(runs["new"], runs["old"])] for key in METRICS}
    diff_row = {"attack mode": "new − old (per seed)"}
    for key in METRICS:
        m, s = mean_std(diffs[key])
        diff_row[key] = f"{m:+.4f} ± {s:.4f} [{', '.join(f'{d:+.3f}' for d in diffs[key])}]"
    diff_row["train s"] = ""
    rows.append(diff_row)
    mech = [f"{mode}: adv branch running mean moved {mechanism[mode]['adv']['running_mean_rel_change']:.2%}, "
            f"running var {mechanism[mode]['adv']['running_var_rel_change']:.2%} (relative L2), "
            f"{mechanism[mode]['adv']['batches_tracked_added']} batch updates over the adv BN layers; "
            f"clean branch moved {mechanism[mode]['clean']['running_mean_rel_change']:.2%}"
            for mode in MODES]
    intervals = "; ".join(f"{k} {interval_text(diffs[k])}" for k in METRICS)
    notes = [
        f"ACL on all {n_train} Fashion-MNIST training images ({args.per_class} per class), the full arm of "
        f"benchmarks.rcs: small_cnn width 16, projection 32, ε 8/255, 2 PGD steps (α = 2.5ε/2), lr 2e-3, "
        f"batch 128, {args.epochs} epochs; {args.seeds} seeds (mean ± std), the same seed gives both arms the "
        "same initialisation, batch order, views and PGD starts.",
        "old = views crafted in train mode (pre-0bd2528: each PGD iterate normalises with the perturbed batch's "
        "own statistics and updates the adv branch's running statistics); new = eval mode on the adv branch "
        "(official ACL code). Only the crafting differs; the training loss runs in train mode in both.",
        "slf/alf = standard / adversarial linear finetuning; *_robust = PGD-20 accuracy at ε 8/255 on "
        f"{args.max_test} test images; rd = representational divergence (lower = more robust representation). "
        "The saved encoder answers with the adv branch.",
        "Mechanism check (seed-0 new encoder + head in train mode, one crafting call on 128 view pairs, "
        "i.e. 2 PGD steps on 256 images): " + "; ".join(mech) + ".",
        f"new − old per metric: {intervals}. PGD-20 accuracy on {args.max_test} images alone has a binomial std "
        f"of about {(0.5 * 0.5 / args.max_test) ** 0.5:.3f} at 0.5.",
        "Positive control (tiny task, control_task): " + "; ".join(f"{c.name}: {c.detail}"
                                                             for c in control_checks(control)) + ".",
        *write_claims(judged({"runs": runs, "mechanism": mechanism, "control": control, "args": vars(args)}),
                      "acl_attack_mode"),
        f"train s = training seconds per run (CPU, {torch.get_num_threads()} torch thread(s), on a CPU shared "
        "with other jobs: not a speed comparison); wall time of the "
        f"benchmark {(time.perf_counter() - t_start) / 60:.1f} min, CPU {(time.process_time() - cpu_start) / 60:.1f} "
        "min.",
    ]
    write_results("acl_attack_mode", "ACL: adversarial views crafted in train mode (old) vs eval mode (new)",
                  rows, notes, {"runs": runs, "per_seed_new_minus_old": diffs, "mechanism": mechanism,
                                "control": control, "args": vars(args)})


if __name__ == "__main__":
    main()
