"""image.compare (on demand: ``repflow compare``): the SSL survey's paradigms side by side. Every method in
``compare.methods`` (generative, contrastive, generative-contrastive; ``repflow families`` lists them) is
trained once per seed on the same shards, from the same initial encoder, with the same budget, and every
trained encoder is probed the same way:

- clean linear probe (``evaluate``'s probe settings) on the full training split, test accuracy;
- few-label accuracy: logistic regression on k labelled training images per class (``compare.few_label``),
  mean over ``few_label_draws`` draws;
- PGD robust accuracy of encoder + probe at ``compare.pgd_eps`` (``evaluate.pgd_steps``);
- transfer-attack success: ``compare.transfer_attack`` examples crafted once on the zoo's surrogate
  (``transfer``'s steps, momentum and compile settings), the share of the images the encoder + probe had
  right that it then gets wrong;
- linear reconstruction R² of the test images (``compare.reconstruction_size``: full size by default) from
  the features (what a generative pretext should keep);
- cost: training CPU seconds and wall seconds, epochs run, and the peak resident memory of the arm's
  process while it ran (``peak_rss_mb``; the peak is reset when the arm starts) and that peak above the
  memory the process held at the start (``peak_extra_mb``: the arm's own data, models and activations).

With ``compare.reference`` each seed also gets an ``init`` arm: the untrained initial encoder every method
of that seed starts from, its batch-norm statistics measured on the training images
(:func:`repflow.probe.calibrate_batch_norm`; a trained encoder's were measured while it trained), probed
the same way: random conv features, the floor a method must beat to have learned anything.

Differences from the official setups, by design: one optimiser (Adam), batch size, augmentation and
budget for all; the learning rate is ``train.lr`` except where ``compare.lr`` gives a method its papers'
(BiGAN / ALI: 2e-4, with its head's Adam β1 = 0.5).

Arms are independent: the flow sends them through a Prefect subflow whose tasks run on Ray (one task per
arm, shown in the Prefect UI); ``repflow stage image.compare`` runs them as plain Ray tasks. Each arm is an
MLflow child run of this stage's run.

Output folder: ``comparison.parquet`` (one row per arm), ``summary.parquet`` / ``comparison.md`` (mean ± sd
over seeds per method), ``encoders/<method>-seed<seed>.safetensors`` (+ ``.json``: the builder config; any
one loads with :func:`repflow.families.image.models.build_encoder`), ``comparison.png`` and ``cost.png``,
``metrics.json``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch

from repflow import tracking
from repflow.attacks import PGD, attack_success_rate, make_attack, robust_accuracy
from repflow.checkpoints import CheckpointError, load_state_strict, load_tensors, save_tensors
from repflow.cluster import choose_device, ensure_ray, ray_resources
from repflow.config import Params
from repflow.families.image.contrastive import train_contrastive
from repflow.families.image.train_methods import TRAIN_METHODS
from repflow.families.image.stages._splits import OrderedSplit, streams_splits
from repflow.families.image.stages._training import adversary, new_models, training_source
from repflow.families.image.stages.transfer import attack_settings
from repflow.manifest import atomic_write_text, read_manifest
from repflow.memory import peak_memory_mb, reset_peak_memory
from repflow.families.image.models import ProbedEncoder, build_classifier
from repflow.families.image.probes import calibrate_batch_norm, linear_reconstruction_r2
from repflow.probe import few_label_accuracy, fit_linear_probe
from repflow.report import bar_plot, markdown_table
from repflow.shards import ShardSet
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.compare")

REFERENCE = "init"
"""The arm name of the untrained initial encoder."""

MAX_EPOCHS_UNDER_SECONDS = 10_000
"""Epoch cap of a run budgeted in seconds (the budget ends it long before)."""


def arms(params: Params) -> list[dict[str, Any]]:
    """Every (method, seed) arm, seed-major so that a seed's arms sit together in the table."""
    c = params.compare
    names = ([REFERENCE] if c.reference else []) + list(c.methods)
    return [{"method": m, "seed": s} for s in c.seeds for m in names]


def arm_params(params: Params, method: str, seed: int) -> Params:
    """``params`` as the train stage would see them for one arm: its method and seed, real data for every
    method but a latent-view one (GenRep trains on the generate stage's anchors and their neighbours),
    NT-Xent for the contrastive ones, no coreset, and ``compare.lr``'s learning rate where it names the
    method."""
    m = TRAIN_METHODS[method]
    train = params.train.model_copy(update={"method": method, "data": "generated" if m.latent_views else "real",
                                            "loss": m.losses[0] if m.losses else params.train.loss,
                                            "lr": params.compare.lr.get(method, params.train.lr)})
    select = params.select.model_copy(update={"method": "full"})
    return params.model_copy(update={"seed": seed, "train": train, "select": select})


def run_arm(arm: dict[str, Any], data: dict[str, Any], params: Params, device: str) -> dict[str, Any]:
    """Train one arm's encoder (none for the reference) and probe it. ``data`` holds the shard and views
    folders and the transfer examples crafted on the surrogate (:func:`prepare`). Runs in a Ray worker or
    in process; returns ``{"row": one row of the comparison table, "encoder": its state (CPU tensors),
    "config": its builder config}``."""
    if device == "cpu":
        torch.set_num_threads(1)
    method, seed = arm["method"], arm["seed"]
    c = params.compare
    resident = reset_peak_memory()
    shards = ShardSet(data["shards"])
    plain = next(n for n in TRAIN_METHODS if not TRAIN_METHODS[n].adversarial and not TRAIN_METHODS[n].latent_views)
    p = arm_params(params, plain if method == REFERENCE else method, seed)
    encoder, head, enc_config, _ = new_models(p, shards)  # seeded by the arm's seed: every method of a seed starts here
    row: dict[str, Any] = {"method": method, "seed": seed, "lr": float("nan") if method == REFERENCE else p.train.lr,
                           "paradigm": "-" if method == REFERENCE else (TRAIN_METHODS[method].paradigm or "-"),
                           "epochs": 0.0, "final_loss": float("nan"), "train_images": 0, "train_cpu_seconds": 0.0,
                           "train_wall_seconds": 0.0}
    if method != REFERENCE:
        images, partners, _ = training_source(p, shards, data.get("views"))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        history = train_contrastive(
            encoder, head, images, epochs=c.epochs or MAX_EPOCHS_UNDER_SECONDS, batch_size=p.train.batch_size,
            lr=p.train.lr, weight_decay=p.train.weight_decay, temperature=p.train.temperature,
            augment=p.train.augment.model_dump(), device=torch.device(device), seed=seed, partners=partners,
            adversary=adversary(p), max_seconds=c.seconds)
        row.update(train_cpu_seconds=time.process_time() - cpu0, train_wall_seconds=time.perf_counter() - wall0,
                   final_loss=history[-1]["loss"], train_images=len(images),
                   epochs=sum(h["steps"] for h in history) / (len(images) // min(p.train.batch_size, len(images))))
    else:
        calibrate_batch_norm(encoder, OrderedSplit(shards, "train", stream=streams_splits(params)).images(256))
    encoder.cpu().eval()
    row.update(probe_arm(encoder, shards, data, params, seed))
    row["peak_rss_mb"] = peak_memory_mb()
    row["peak_extra_mb"] = max(row["peak_rss_mb"] - resident, 0.0)
    return {"row": row, "encoder": {k: v.detach().clone() for k, v in encoder.state_dict().items()},
            "config": enc_config}


def probe_arm(encoder: torch.nn.Module, shards: ShardSet, data: dict[str, Any], params: Params,
              seed: int) -> dict[str, float]:
    """The same probes for every arm (module docstring); ``encoder`` frozen, on CPU. The splits are read in
    write order, streamed unless ``train.stream`` is ``never`` (the same numbers either way: memory holds the
    features, not the images)."""
    c, e = params.compare, params.evaluate
    t0 = time.perf_counter()
    stream = streams_splits(params)
    train, test = OrderedSplit(shards, "train", stream=stream), OrderedSplit(shards, "test", stream=stream)
    f_tr, y_tr = train.features(encoder)
    f_te, y_te = test.features(encoder)
    probe = fit_linear_probe(f_tr, y_tr, shards.num_classes, epochs=e.probe_epochs, lr=e.probe_lr,
                             batch_size=e.probe_batch_size, seed=seed)
    model = ProbedEncoder(encoder, probe).eval()
    x_att, y_att = data["x_attack"], data["y_attack"]
    pgd = PGD(model, eps=c.pgd_eps, alpha=e.pgd_step_ratio * c.pgd_eps / e.pgd_steps, steps=e.pgd_steps, seed=seed)
    success, _ = attack_success_rate(model, data["x_transfer"], x_att, y_att)
    row = {"linear_acc": test.accuracy(model),
           "robust_acc": robust_accuracy(model, pgd, x_att, y_att, desc=f"PGD ε={c.pgd_eps:.4f}"),
           "transfer_success": success,
           "reconstruction_r2": linear_reconstruction_r2(f_tr, train.images(512), f_te, test.images(512),
                                                         size=c.reconstruction_size)}
    few = few_label_accuracy(f_tr, y_tr, f_te, y_te, ks=tuple(c.few_label), draws=c.few_label_draws, seed=seed)
    row.update({f"few_label_{k}": r["mean"] for k, r in few.items()})
    row["probe_seconds"] = time.perf_counter() - t0
    return row


def prepare(params: Params, shards: Path, zoo_dir: Path, views: Path | None) -> dict[str, Any]:
    """What every arm shares, checked before any training: the folders, the attacked test subset and its
    transfer examples, crafted once on the zoo's surrogate (white box)."""
    read_manifest(zoo_dir, stage="image.zoo")
    c = params.compare
    path = zoo_dir / f"{params.zoo.surrogate}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{zoo_dir}: no surrogate {params.zoo.surrogate!r} (zoo.surrogate) in the zoo")
    state, meta = load_tensors(path)
    surrogate = build_classifier(meta["classifier"])
    load_state_strict(surrogate, state, path)
    surrogate.eval()
    x, y = OrderedSplit(ShardSet(shards), "test", stream=True).subset(c.max_test, params.seed)
    attack = make_attack(c.transfer_attack, surrogate, **attack_settings(c.transfer_attack, c.transfer_eps, params))
    x_adv = torch.cat([attack(x[i:i + 250], y[i:i + 250]) for i in range(0, len(x), 250)])
    return {"shards": Path(shards), "views": None if views is None else Path(views), "x_attack": x, "y_attack": y,
            "x_transfer": x_adv.detach()}


def ray_fan_out(cells: list[dict[str, Any]], data: dict[str, Any], params: Params, device: str) -> list[dict]:
    """Every arm as a Ray task (1 CPU, or 1 GPU when the stage uses CUDA)."""
    ray = ensure_ray()
    job = ray.remote(run_arm).options(**ray_resources(device))
    refs = [ray.put(v) for v in (data, params)]
    pending = [job.remote(arm, *refs, device) for arm in cells]
    order = {ref: i for i, ref in enumerate(pending)}
    results: list[dict[str, Any]] = [{} for _ in cells]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        results[order[done[0]]] = ray.get(done[0])
        log_arm(results[order[done[0]]]["row"], len(cells) - len(pending), len(cells))
    return results


def log_arm(row: dict[str, Any], done: int, total: int) -> None:
    """One line per finished arm: the fan-out's progress in the log (the arms' own bars stay in their workers)."""
    log.info("compare: arm %d/%d done: %s seed %d, linear %.3f, robust %.3f, %.0f CPU s training", done, total,
             row["method"], row["seed"], row["linear_acc"], row["robust_acc"], row["train_cpu_seconds"])


def summarise(table: pl.DataFrame) -> pl.DataFrame:
    """Mean and sample sd over seeds (0 for one seed) per method, in the arms' order."""
    order = list(dict.fromkeys(table["method"].to_list()))
    cols = [c for c in table.columns if c not in ("method", "seed", "paradigm") and table[c].dtype.is_numeric()]
    summary = table.group_by(["method", "paradigm"]).agg(
        [pl.len().alias("seeds")] + [pl.col(c).mean().alias(c) for c in cols]
        + [pl.col(c).std(ddof=1).fill_null(0.0).alias(f"{c}_sd") for c in cols])
    return summary.with_columns(pl.col("method").replace_strict(order, list(range(len(order))), default=0)
                                .alias("_order")).sort("_order").drop("_order")


def summary_rows(summary: pl.DataFrame) -> list[dict[str, str]]:
    """The per-method rows of ``comparison.md``: every probe as mean ± sd over seeds, the costs as means."""
    few = sorted((c for c in summary.columns if c.startswith("few_label_") and not c.endswith("_sd")),
                 key=lambda c: int(c.rsplit("_", 1)[1]))
    scores = ["linear_acc", *few, "robust_acc", "transfer_success", "reconstruction_r2"]
    costs = ["train_cpu_seconds", "epochs", "peak_extra_mb"]
    return [{"method": r["method"], "paradigm": r["paradigm"], "seeds": str(r["seeds"]),
             **{k: f"{r[k]:.3f} ± {r[k + '_sd']:.3f}" for k in scores}, **{k: f"{r[k]:.1f}" for k in costs}}
            for r in summary.to_dicts()]


def write_output(ctx: StageContext, results: list[dict[str, Any]], attacked: int) -> StageSummary:
    """The table (one row per arm), the per-method summary, every arm's encoder, plots, metrics and one MLflow
    child run per arm."""
    params, tmp = ctx.params, ctx.tmp
    c = params.compare
    rows = [r["row"] for r in results]
    (tmp / "encoders").mkdir()
    for r in results:
        save_tensors(tmp / "encoders" / f"{r['row']['method']}-seed{r['row']['seed']}.safetensors", r["encoder"],
                     {**r["config"], "method": r["row"]["method"], "seed": r["row"]["seed"]})
    table = pl.DataFrame(rows)
    summary = summarise(table)
    table.write_parquet(tmp / "comparison.parquet")
    summary.write_parquet(tmp / "summary.parquet")
    few = [f"few_label_{k}" for k in c.few_label]
    md_rows = summary_rows(summary)
    budget = f"{c.epochs} epochs" if c.epochs else f"{c.seconds:g} CPU seconds of training"
    methods = summary["method"].to_list()
    bar_plot([m for m in methods], {k: summary[k].to_list() for k in ("linear_acc", *few, "robust_acc",
                                                                       "reconstruction_r2")},
             tmp / "comparison.png", ylabel="accuracy / R²",
             errors={k: summary[f"{k}_sd"].to_list() for k in ("linear_acc", *few, "robust_acc", "reconstruction_r2")},
             title=f"{len(c.seeds)} seeds, {budget} each; robust: PGD ε={c.pgd_eps * 255:.0f}/255")
    bar_plot(methods, {"training CPU seconds": summary["train_cpu_seconds"].to_list()}, tmp / "cost.png",
             ylabel="CPU seconds", errors={"training CPU seconds": summary["train_cpu_seconds_sd"].to_list()},
             title=f"training cost per arm ({budget})")
    text = (f"# repflow compare: {budget} per arm, seeds {c.seeds}\n\n" + markdown_table(md_rows) + "\n\n"
            f"Probes: linear probe ({params.evaluate.probe_epochs} epochs) test accuracy; few-label logistic "
            f"regression on k images per class ({c.few_label_draws} draws); PGD-{params.evaluate.pgd_steps} at "
            f"ε = {c.pgd_eps:.4f} and {c.transfer_attack} from the surrogate {params.zoo.surrogate} at ε = "
            f"{c.transfer_eps:g} on {attacked} test images; R² of a ridge map from features to the test images"
            f"{'' if c.reconstruction_size is None else f' at {c.reconstruction_size}×{c.reconstruction_size}'}.\n")
    atomic_write_text(tmp / "comparison.md", text)
    metrics: dict[str, Any] = {f"{r['method']}.{k}": r[k] for r in summary.to_dicts()
                               for k in ("linear_acc", *few, "robust_acc", "transfer_success", "reconstruction_r2",
                                         "train_cpu_seconds")}
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    for r in rows:
        tracking.log_child_run(f"compare/{r['method']}/seed{r['seed']}", {"method": r["method"], "seed": r["seed"],
                                                                            "budget": budget}, r,
                               tags={"repflow.compare.paradigm": r["paradigm"]})
    ctx.meta.update({"arms": len(rows), "methods": methods, "seeds": c.seeds, "budget": budget})
    return StageSummary(metrics=metrics, markdown=markdown_table(md_rows),
                        plots=["comparison.png", "cost.png", "comparison.md"])


def run(ctx: StageContext) -> StageSummary:
    """Arms go through ``ctx.extras["fan_out"]`` when the flow passes one (a Prefect subflow whose tasks run
    on Ray), else as plain Ray tasks."""
    params = ctx.params
    data = prepare(params, ctx.inputs["shards"], ctx.inputs["zoo"], ctx.inputs.get("views"))
    device = choose_device(params.device).type
    cells = arms(params)
    log.info("compare: %d arms (%s × seeds %s)", len(cells), ", ".join(dict.fromkeys(a["method"] for a in cells)),
             params.compare.seeds)
    results = ctx.extras.get("fan_out", ray_fan_out)(cells, data, params, device)
    return write_output(ctx, results, len(data["y_attack"]))
