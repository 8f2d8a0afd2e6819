"""image.distill: GLaD dataset distillation of the training split in the generate stage's generator, then a
cross-architecture evaluation of the distilled set against two baselines and against its own start.

The set (``distill.ipc`` images per class) is optimised with DM or DC (repflow.families.image.distill) as pixels, as
generator latents, or as GLaD's intermediate feature map + the styles after it. Fresh networks of each
``eval_archs`` architecture (the first is the distillation ConvNet) are trained on it with several
seeds, one Ray task per (set, architecture, seed), and tested on the real test split. The baselines
use the same budget: random real images, and the generator's samples before any optimisation. The set
the distillation started from is evaluated too (it is one of the baselines unless pixels start from
noise, then it is the set ``start``), so ``gain_*_arch`` = distilled minus start measures what the
optimisation itself added.

Output folder: ``distilled-*.tar`` shards (split ``distilled``, uint8 PNG — exactly what was
evaluated), ``distilled.png`` (one row per class), ``loss.png``, ``history.json``, ``eval.parquet``
(one row per set × architecture × seed), ``eval.md`` and ``metrics.json`` (same-architecture and
cross-architecture means per set). The MLflow run is tagged with the generator version it used.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
import polars as pl
import torch

from repflow.checkpoints import CheckpointError
from repflow.cluster import choose_device, ensure_ray, ray_resources
from repflow.config import Params
from repflow.families.image.distill import (DISTILL_PARAMS, EVAL_ARCHITECTURES, check_ipc, distill, generator_samples,
                            random_real_subset, summarize, train_and_test)
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import class_grid, line_plot, markdown_table
from repflow.shards import ShardSet, write_image_split
from repflow.stage import StageContext, StageSummary
from repflow.families.image.stages.generate import load_generator

log = logging.getLogger("repflow.families.image.distill")


def _checked_generator(params: Params, data: ShardSet, generated: Path, labels: torch.Tensor):
    """The generator, after every check that can fail on bad input (classes, shape, layer, ipc)."""
    meta = read_manifest(generated, stage="image.generate")["meta"]
    if list(meta.get("classes", [])) != list(data.classes):
        raise CheckpointError(f"{generated}: generator was trained on classes {meta.get('classes')}, "
                              f"the shards have {data.classes}")
    generator, _ = load_generator(generated, data.shape, data.num_classes)
    if "layer" in DISTILL_PARAMS[params.distill.param].options and params.distill.layer not in generator.layers:
        raise ValueError(f"distill.layer = {params.distill.layer}: the generator has no such layer; "
                         f"valid layers: {generator.layers}")
    try:
        check_ipc(labels, params.distill.ipc, data.num_classes)
    except ValueError as exc:
        raise ValueError(f"distill.ipc = {params.distill.ipc}: {exc}") from None
    return generator, meta.get("registered", "")


def eval_job(set_name: str, arch: str, seed: int, images: torch.Tensor, labels: torch.Tensor, x_test: torch.Tensor,
             y_test: torch.Tensor, epochs: int, device: str) -> dict:
    """One Ray task: a fresh ``arch`` network trained on one set, tested on the real test split."""
    if device == "cpu":
        torch.set_num_threads(1)
    acc = train_and_test(EVAL_ARCHITECTURES[arch], images, labels, x_test, y_test, seed=seed, epochs=epochs,
                         device=device)
    return {"set": set_name, "arch": arch, "seed": seed, "test_acc": acc}


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)


def check(params, inputs: dict[str, Path]) -> None:
    """Generator and distillation params against the actual shards, before anything is tracked."""
    data = ShardSet(inputs["shards"])
    _checked_generator(params, data, inputs["generator"], data.labels("train"))


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.distill
    data = ShardSet(ctx.inputs["shards"])
    x_tr, y_tr = data.load("train")
    x_te, y_te = data.load("test")
    generator, generator_version = _checked_generator(params, data, ctx.inputs["generator"], y_tr)
    device = choose_device(params.device)
    parameterisation = DISTILL_PARAMS[cfg.param]
    param = parameterisation.build(x_tr, y_tr, generator, ipc=cfg.ipc, seed=params.seed,
                                   **{key: getattr(cfg, key) for key in parameterisation.options})
    param.to(device)
    start = tuple(_to_uint8(t) if t.is_floating_point() else t for t in param.snapshot())
    name = f"{cfg.param}-{cfg.loss}"
    meta = ctx.meta
    meta.update({"classes": data.classes, "shape": list(data.shape), "mean": data.meta["mean"],
                 "std": data.meta["std"], "splits": {}, "generator": generator_version, "param": cfg.param,
                 "loss": cfg.loss, "ipc": cfg.ipc})
    mlflow.set_tag("repflow.generator_version", generator_version)
    t0 = time.perf_counter()
    history = distill(param, x_tr, y_tr, loss=cfg.loss, iterations=cfg.iterations,
                      real_per_class=cfg.real_per_class, seed=params.seed,
                      on_step=lambda row: mlflow.log_metric("distill_loss", row["loss"], step=row["iteration"]))
    distill_seconds = time.perf_counter() - t0
    images, labels = param.snapshot()
    sets = {name: (_to_uint8(images), labels.cpu())}
    if cfg.baselines:
        xr, yr = random_real_subset(x_tr, y_tr, cfg.ipc, seed=params.seed, num_classes=data.num_classes)
        xg, yg = generator_samples(generator, cfg.ipc, seed=params.seed)
        sets["random-real"] = (_to_uint8(xr), yr)
        sets["generator-samples"] = (_to_uint8(xg), yg)
    start_name = next((set_name for set_name, (x, y) in list(sets.items())[1:]
                       if torch.equal(x, start[0]) and torch.equal(y, start[1])), "start")
    sets.setdefault(start_name, start)

    ray = ensure_ray()
    job = ray.remote(eval_job).options(**ray_resources(device))
    test_refs = [ray.put(x_te), ray.put(y_te)]
    futures = [job.remote(set_name, arch, seed, ray.put(x), ray.put(y), *test_refs, cfg.eval_epochs, device.type)
               for set_name, (x, y) in sets.items() for arch in cfg.eval_archs
               for seed in range(params.seed, params.seed + cfg.eval_seeds)]
    t0 = time.perf_counter()
    rows = ray.get(futures)
    eval_seconds = time.perf_counter() - t0
    table = pl.DataFrame(rows)
    table.write_parquet(tmp / "eval.parquet")
    summary = []
    for set_name in sets:
        s = summarize([r for r in rows if r["set"] == set_name], same_arch=cfg.eval_archs[0])
        summary.append({"set": set_name, "same_arch": s["same_arch"], "cross_arch": s["cross_arch"],
                        **{f"acc_{a}": s["per_arch"][a] for a in cfg.eval_archs}})
    started = next(r for r in summary if r["set"] == start_name)
    metrics = {"distilled": name, "same_arch": summary[0]["same_arch"], "cross_arch": summary[0]["cross_arch"],
               "start_set": start_name, "gain_same_arch": summary[0]["same_arch"] - started["same_arch"],
               "gain_cross_arch": summary[0]["cross_arch"] - started["cross_arch"],
               "distill_seconds": distill_seconds, "eval_seconds": eval_seconds, "final_loss": history[-1]["loss"],
               "sets": summary}
    x_u8, y_set = sets[name]
    pixels = x_u8.permute(0, 2, 3, 1).numpy()
    meta["splits"]["distilled"] = write_image_split(tmp, "distilled", pixels[..., 0] if pixels.shape[-1] == 1
                                                    else pixels, y_set.numpy(), shard_size=max(len(y_set), 1))
    class_grid(x_u8, y_set, data.classes, tmp / "distilled.png", per_class=min(cfg.ipc, 10),
               title=f"{name}, {cfg.ipc} images per class")
    line_plot([h["iteration"] for h in history], {cfg.loss: [h["loss"] for h in history]}, tmp / "loss.png",
              xlabel="iteration", ylabel=f"{cfg.loss.upper()} loss", title=f"distillation ({name})")
    atomic_write_text(tmp / "history.json", json.dumps(history))
    atomic_write_text(tmp / "eval.md", markdown_table(summary) + "\n")
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1))
    mlflow.log_artifact(str(tmp / "eval.parquet"))
    log.info("distill: %s same-arch %.4f, cross-arch %.4f (%s)", name, metrics["same_arch"], metrics["cross_arch"],
             ", ".join(f"{r['set']} {r['cross_arch']:.4f}" for r in summary[1:]))
    md = (f"- distilled set ({name}, {cfg.ipc} images per class): cross-architecture accuracy "
          f"{metrics['cross_arch']:.3f}, same-architecture {metrics['same_arch']:.3f}; "
          + ", ".join(f"{r['set']} {r['cross_arch']:.3f}" for r in summary[1:]))
    md += f"; gain over its start ({start_name}): cross-arch {metrics['gain_cross_arch']:+.3f}"
    scalars = {k: metrics[k] for k in ("distilled", "same_arch", "cross_arch", "gain_same_arch", "gain_cross_arch",
                                       "distill_seconds", "eval_seconds")}
    return StageSummary(metrics={**scalars, **{f"cross_arch_{r['set']}": r["cross_arch"] for r in summary}},
                        markdown=md, plots=["distilled.png", "loss.png", "eval.md"])
