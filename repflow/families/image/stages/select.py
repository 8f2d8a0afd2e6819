"""image.select: warm the encoder up on all training images, then pick the first coreset (RCS, random, or full).

The schedule of RCS (Xu et al. 2023) is "``warmup_epochs`` on the full data, then train on a coreset
re-selected every F epochs". This stage is its first half: it trains the warm-up epochs with the train
stage's method (ACL, DynACL, SimCLR, ...) and selects from the warmed-up model; the train stage loads
that state and continues, re-selecting every ``select.every`` epochs. ``full`` keeps every image (the
reference arm); ``random`` draws the same number of images uniformly. Under ``full`` the training split is
streamed (``train.stream``): the warm-up reads batches, the table's labels come from a pass over the
``cls`` members and the plot's 3000 images from one more pass.

Output folder: ``coreset.parquet`` (one row per training image: index, label, selected, candidate
minibatch, pick round, gain), ``warmup.safetensors`` (encoder, head and optimizer after the warm-up),
``selection.json`` (sizes, class counts, warm-up and selection seconds), ``coreset.png`` (class
balance; selected vs unselected images in a 2-D projection of the encoder's features).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mlflow
import polars as pl
import torch

from repflow.cluster import choose_device
from repflow.families.image.contrastive import train_contrastive
from repflow.manifest import atomic_write_text
from repflow.families.image.probes import embed
from repflow.report import coreset_plot
from repflow.shards import ShardSet
from repflow.stage import StageContext, StageSummary
from repflow.families.image.stages._training import (adversary, check_schedule, choose_coreset, new_models,
                                                    save_training_state, training_source)

log = logging.getLogger("repflow.select")


def coreset_table(n: int, labels: torch.Tensor, coreset) -> pl.DataFrame:
    """One row per training image; ``candidate``/``pick_round``/``gain`` are null outside RCS."""
    selected = torch.zeros(n, dtype=torch.bool)
    selected[coreset.indices] = True
    candidate = [None] * n
    pick_round = [None] * n
    gain = [None] * n
    if coreset.batches is not None:
        for cid, idx in enumerate(coreset.batches):
            for i in idx.tolist():
                candidate[i] = cid
        for r, (cid, g) in enumerate(zip(coreset.picked.tolist(), coreset.gains.tolist())):
            for i in coreset.batches[cid].tolist():
                if selected[i]:  # the last pick may be cut to fit the budget
                    pick_round[i], gain[i] = r, g
    return pl.DataFrame({"index": list(range(n)), "label": labels.tolist(), "selected": selected.tolist(),
                         "candidate": candidate, "pick_round": pick_round, "gain": gain},
                        schema={"index": pl.Int64, "label": pl.Int64, "selected": pl.Boolean, "candidate": pl.Int64,
                                "pick_round": pl.Int64, "gain": pl.Float64})


def check(params, inputs: dict[str, Path]) -> None:
    """Selection params against the actual training set (coreset budget, validation size)."""
    images, _, _ = training_source(params, ShardSet(inputs["shards"]), inputs.get("views"))
    check_schedule(params, len(images))


def run(ctx: StageContext) -> StageSummary:
    params, tmp, key = ctx.params, ctx.tmp, ctx.key
    cfg, tcfg = params.select, params.train
    data = ShardSet(ctx.inputs["shards"])
    images, partners, labels = training_source(params, data, ctx.inputs.get("views"))
    streamed = not isinstance(images, torch.Tensor)
    device = choose_device(params.device)
    encoder, head, enc_config, head_config = new_models(params, data)
    history: list[dict] = []
    ctx.meta.update({"method": cfg.method, "images": len(images), "encoder": enc_config, "head": head_config})
    t0 = time.perf_counter()
    opt_holder = {}

    def on_epoch(epoch: int, stats: dict, opt) -> None:
        history.append(stats)
        opt_holder["opt"] = opt
        mlflow.log_metric("warmup_loss", stats["loss"], step=epoch)
        log.info("select: warm-up epoch %d/%d loss %.4f", epoch, cfg.warmup_epochs, stats["loss"])

    train_contrastive(encoder, head, images, epochs=cfg.warmup_epochs, batch_size=tcfg.batch_size, lr=tcfg.lr,
                      weight_decay=tcfg.weight_decay, temperature=tcfg.temperature,
                      augment=tcfg.augment.model_dump(), device=device, seed=params.seed, partners=partners,
                      labels=labels if tcfg.loss == "supcon" else None, adversary=adversary(params),
                      on_epoch=on_epoch)
    if streamed:
        labels = images.all_labels()
    warmup_seconds = time.perf_counter() - t0
    opt = opt_holder.get("opt") or torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()),
                                                    lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    coreset, selection_seconds = choose_coreset(params, encoder, head, enc_config, head_config, images,
                                                epoch=cfg.warmup_epochs, device=device)
    log.info("select: %s picked %d of %d images in %.1f s", cfg.method, len(coreset.indices), len(images),
             selection_seconds)
    encoder.cpu()
    head.cpu()
    save_training_state(tmp / "warmup.safetensors", encoder, head, opt,
                        {"epoch": cfg.warmup_epochs, "history": history, "encoder": enc_config, "head": head_config,
                         "stage_key": key})
    table = coreset_table(len(images), labels, coreset)
    table.write_parquet(tmp / "coreset.parquet")
    selected = torch.tensor(table["selected"].to_list())
    classes = data.classes if tcfg.data == "real" else [str(c) for c in range(data.num_classes)]
    counts = torch.bincount(labels[selected], minlength=data.num_classes).tolist()
    summary = {"method": cfg.method, "images": len(images), "selected": int(selected.sum()),
               "fraction": int(selected.sum()) / len(images), "class_counts": dict(zip(classes, counts)),
               "warmup_epochs": cfg.warmup_epochs, "warmup_seconds": warmup_seconds,
               "selection_seconds": selection_seconds,
               "gains": coreset.gains.tolist() if coreset.gains is not None else None}
    atomic_write_text(tmp / "selection.json", json.dumps(summary, indent=1))
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(params.seed))[:3000]
    shown = images.take(pick) if streamed else images[pick]
    coreset_plot(labels[pick], selected[pick], embed(encoder.eval(), shown), data.classes,
                 tmp / "coreset.png", title=f"{cfg.method} coreset: {int(selected.sum())} of {len(images)} "
                                            f"images after {cfg.warmup_epochs} warm-up epochs")
    md = (f"- coreset: {cfg.method}, {summary['selected']} of {len(images)} training images after "
          f"{cfg.warmup_epochs} warm-up epochs ({warmup_seconds:.1f} s warm-up, {selection_seconds:.1f} s selection)")
    return StageSummary(metrics={k: summary[k] for k in ("method", "images", "selected", "fraction", "warmup_epochs",
                                                         "warmup_seconds", "selection_seconds")},
                        markdown=md, plots=["coreset.png"])

