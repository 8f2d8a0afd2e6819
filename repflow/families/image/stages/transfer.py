"""image.transfer: how far adversarial examples crafted on the zoo's surrogate transfer to other models, with
and without SVD top-1 logit fusion (SVD-SSA, Weng et al. 2023).

One grid cell = (attack, fusion on/off, ε): the examples are crafted once on the surrogate (white box)
and scored on every target — the other zoo members and the trained encoder with its linear probe, so
the main flow reports how robust the learned representation is to transferred attacks. Success rate =
share of the inputs a target classifies correctly that it misclassifies after the attack.

The cells are independent: :func:`run` fans them out as Ray tasks; the main flow sends the same cells
through Prefect's RayTaskRunner (``transfer_grid_flow`` in repflow/families/image/flow.py) and hands the rows
to :func:`write_output`.

Output folder: ``grid.parquet`` (one row per cell × target), ``grid.md``, ``heatmap.png`` (success at
the largest ε per attack × target), ``success_vs_eps.png`` (mean transfer success per attack),
``metrics.json``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
import torch

from repflow.families.image.models import ProbedEncoder, build_classifier, build_encoder
from repflow.attacks import attack_success_rate, make_attack
from repflow.checkpoints import CheckpointError, load_state_strict, load_tensors
from repflow.families.image.train_output import load_encoder
from repflow.cluster import choose_device, ensure_ray, ray_resources
from repflow.config import Params
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import heatmap, line_plot, markdown_table
from repflow.families.image.stages._splits import OrderedSplit
from repflow.shards import ShardSet
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.transfer")

ENCODER_TARGET = "encoder+probe"


def load_models(params: Params, zoo_dir: Path, encoder_dir: Path, eval_dir: Path) -> dict[str, dict[str, Any]]:
    """Every model of the grid as {name: {"kind", "config", "state", "role"}} (plain tensors: shippable to
    Ray workers). Checks the SVD split layer against the surrogate before any attack runs."""
    read_manifest(zoo_dir, stage="image.zoo")
    read_manifest(eval_dir, stage="image.evaluate")
    models: dict[str, dict[str, Any]] = {}
    for name in params.zoo.members:
        state, meta = load_tensors(zoo_dir / f"{name}.safetensors")
        models[name] = {"kind": "classifier", "config": meta["classifier"], "state": state, "role": meta["role"]}
    surrogate = models.get(params.zoo.surrogate)
    if surrogate is None or surrogate["role"] != "surrogate":
        raise CheckpointError(f"{zoo_dir}: no surrogate {params.zoo.surrogate!r} in the zoo")
    layers = build_classifier(surrogate["config"]).layer_names[:-1]
    if params.transfer.svd_layer not in layers:
        raise ValueError(f"transfer.svd_layer = {params.transfer.svd_layer!r}: the surrogate "
                         f"{params.zoo.surrogate!r} has no such layer; valid layers: {layers}")
    encoder, enc_config = load_encoder(encoder_dir)
    probe_state, _ = load_tensors(eval_dir / "probe.safetensors")
    state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
             **{f"probe.{k}": v for k, v in probe_state.items()}}
    models[ENCODER_TARGET] = {"kind": "encoder", "config": enc_config, "state": state, "role": "target"}
    return models


def _build(name: str, entry: dict[str, Any]) -> torch.nn.Module:
    if entry["kind"] == "classifier":
        model = build_classifier(entry["config"])
    else:
        w = entry["state"]["probe.weight"]
        model = ProbedEncoder(build_encoder(entry["config"]), torch.nn.Linear(w.shape[1], w.shape[0]))
    load_state_strict(model, entry["state"], f"grid model {name}")
    return model.eval()


def grid_cells(params: Params) -> list[dict[str, Any]]:
    """The attack × fusion × ε cells, each a JSON-able dict of what :func:`attack_cell` needs."""
    t = params.transfer
    return [{"attack": a, "fusion": f, "eps": e} for a in t.attacks for f in t.fusion for e in t.eps]


def attack_settings(attack: str, eps: float, params: Params) -> dict[str, Any]:
    """The keyword params of ``make_attack(attack, ...)`` at ``eps`` under ``params.transfer`` (steps, momentum
    for the momentum attacks, SSA's spectrum copies, compile), for the grid and for ``repflow compare``."""
    t = params.transfer
    settings: dict[str, Any] = {"eps": eps, "steps": t.steps, "seed": params.seed, "compile": t.compile}
    if attack not in ("fgsm", "pgd", "pgd_l2"):
        settings["decay"] = t.momentum
    if attack == "fgsm":
        settings.pop("steps")
    if attack == "ssa":
        settings["num_spectrum"] = t.ssa_spectrum
    return settings


def attack_cell(cell: dict[str, Any], models: dict[str, dict[str, Any]], x: torch.Tensor, y: torch.Tensor,
                params: Params, device: str) -> list[dict[str, Any]]:
    """Craft ``cell``'s examples on the surrogate for float ``x`` in [0, 1] and score them on every model.
    Runs anywhere torch runs (a Ray worker, a Prefect task); returns one row per model."""
    if device == "cpu":
        torch.set_num_threads(1)
    t = params.transfer
    surrogate_name = params.zoo.surrogate
    built = {name: _build(name, entry).to(device) for name, entry in models.items()}
    attack_params = attack_settings(cell["attack"], cell["eps"], params)
    svd = ({"layer": t.svd_layer, "beta": t.svd_beta, "method": t.svd_method, "iterations": t.svd_iterations}
           if cell["fusion"] else None)
    attack = make_attack(cell["attack"], built[surrogate_name], svd=svd, **attack_params)
    t0 = time.perf_counter()
    x_adv = torch.cat([attack(x[i:i + t.batch_size].to(device), y[i:i + t.batch_size].to(device)).cpu()
                       for i in range(0, len(x), t.batch_size)])
    seconds = time.perf_counter() - t0
    rows = []
    for name, model in built.items():
        rate, n = attack_success_rate(model, x_adv, x, y, batch_size=t.batch_size, device=device)
        rows.append({**cell, "target": name, "role": models[name]["role"], "white_box": name == surrogate_name,
                     "success_rate": rate, "clean_correct": n, "craft_seconds": seconds})
    return rows


def ray_fan_out(cells: list[dict[str, Any]], models, x, y, params: Params, device: str) -> list[dict[str, Any]]:
    """Run every cell as a Ray task (1 CPU, or 1 GPU when the stage uses CUDA)."""
    ray = ensure_ray()
    job = ray.remote(attack_cell).options(**ray_resources(device))
    refs = [ray.put(v) for v in (models, x, y, params)]
    return [row for rows in ray.get([job.remote(c, *refs, device) for c in cells]) for row in rows]


def attack_inputs(params: Params, shards: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked test images (float, [0, 1]) and labels: a seeded subset of ``transfer.max_test``, read in
    one pass over the test shards that decodes only those images (the split is never held)."""
    return OrderedSplit(ShardSet(shards), "test", stream=True).subset(params.transfer.max_test, params.seed)


def write_output(ctx: StageContext, rows: list[dict[str, Any]]) -> StageSummary:
    """Table, plots and metrics of a finished grid."""
    params, tmp = ctx.params, ctx.tmp
    t = params.transfer
    table = pl.DataFrame(rows).sort(["attack", "fusion", "eps", "target"])
    transfer = table.filter(~pl.col("white_box"))
    summary = (transfer.group_by(["attack", "fusion", "eps"]).agg(pl.col("success_rate").mean().alias("mean_transfer"))
               .join(table.filter(pl.col("white_box")).select(["attack", "fusion", "eps", "success_rate"])
                     .rename({"success_rate": "white_box"}), on=["attack", "fusion", "eps"])
               .sort(["attack", "fusion", "eps"]))
    top = max(t.eps)
    metrics: dict[str, Any] = {}
    for fusion in t.fusion:
        tag = "svd" if fusion else "base"
        at_top = summary.filter((pl.col("fusion") == fusion) & (pl.col("eps") == top))
        metrics[f"mean_transfer_success_{tag}"] = float(at_top["mean_transfer"].mean())
        enc = transfer.filter((pl.col("target") == ENCODER_TARGET) & (pl.col("fusion") == fusion)
                              & (pl.col("eps") == top))
        metrics[f"encoder_transfer_success_{tag}"] = float(enc["success_rate"].mean())
    if len(t.fusion) == 2:
        metrics["svd_fusion_gain"] = metrics["mean_transfer_success_svd"] - metrics["mean_transfer_success_base"]
    metrics["eps_max"] = top
    ctx.meta.update({"cells": len(grid_cells(params)), "targets": table["target"].n_unique()})
    table.write_parquet(tmp / "grid.parquet")
    label = lambda a, f: f"{a}{'+SVD' if f else ''}"  # noqa: E731
    top_rows = table.filter(pl.col("eps") == top)
    arms = [(a, f) for a in t.attacks for f in t.fusion]
    targets = sorted(top_rows["target"].unique().to_list(), key=lambda n: (n != params.zoo.surrogate, n))
    values = [[float(top_rows.filter((pl.col("attack") == a) & (pl.col("fusion") == f) &
                                     (pl.col("target") == n))["success_rate"][0]) for n in targets] for a, f in arms]
    heatmap(values, [label(a, f) for a, f in arms], targets, tmp / "heatmap.png",
            title=f"attack success at ε = {top:g} (surrogate {params.zoo.surrogate}: white box)")
    line_plot(t.eps, {label(a, f): summary.filter((pl.col("attack") == a) & (pl.col("fusion") == f))
              ["mean_transfer"].to_list() for a, f in arms}, tmp / "success_vs_eps.png",
              xlabel="ε", ylabel="mean transfer success", title="transfer success (black-box targets)")
    atomic_write_text(tmp / "grid.md", markdown_table(summary.to_dicts()) + "\n\n"
                      + markdown_table(table.drop("craft_seconds").to_dicts()) + "\n")
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    mlflow.log_artifact(str(tmp / "grid.parquet"))
    log.info("transfer: mean transfer success at ε=%g: %s", top,
             {k: round(v, 4) for k, v in metrics.items() if k.startswith("mean_")})
    nan = float("nan")
    md = (f"- transfer attacks from the zoo's surrogate at ε = {top:g}: mean success on black-box targets "
          f"{metrics.get('mean_transfer_success_base', nan):.3f} without SVD fusion, "
          f"{metrics.get('mean_transfer_success_svd', nan):.3f} with; on this encoder + probe "
          f"{metrics.get('encoder_transfer_success_base', nan):.3f} / "
          f"{metrics.get('encoder_transfer_success_svd', nan):.3f}")
    return StageSummary(metrics=metrics, markdown=md, plots=["heatmap.png", "success_vs_eps.png", "grid.md"])


def prepare(params: Params, shards: Path, zoo_dir: Path, encoder_dir: Path, eval_dir: Path):
    """Everything a grid run needs, checked before any attack: (models, x, y, cells, device)."""
    models = load_models(params, Path(zoo_dir), Path(encoder_dir), Path(eval_dir))
    x, y = attack_inputs(params, Path(shards))
    return models, x, y, grid_cells(params), choose_device(params.device).type


def run(ctx: StageContext) -> StageSummary:
    """The grid runs through ``ctx.extras["fan_out"]`` when the flow passes one (a Prefect subflow whose
    cells are tasks on Ray), else as plain Ray tasks."""
    i = ctx.inputs
    models, x, y, cells, device = prepare(ctx.params, i["shards"], i["zoo"], i["encoder"], i["evaluation"])
    rows = ctx.extras.get("fan_out", ray_fan_out)(cells, models, x, y, ctx.params, device)
    return write_output(ctx, rows)
