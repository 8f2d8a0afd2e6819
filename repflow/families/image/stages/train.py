"""image.train: encoder training (contrastive: SimCLR, GenRep, ACL, DynACL; generative: masked_ae;
generative-contrastive: bigan), on all images or on a coreset re-selected every ``select.every`` epochs,
resumable from its last epoch.

``method: simclr``: positives are two pixel augmentations of one image. ``method: genrep``: for a
generated anchor the second view is one of its latent-space neighbours from the generate stage
(GenRep), pixel-augmented too. ``method: acl`` / ``dynacl``: adversarial contrastive learning with a
dual-BN encoder (repflow.families.image.acl). ``method: masked_ae`` (repflow.families.image.masked_ae) / ``bigan``
(repflow.families.image.bigan):
a pretext head (decoder; generator + discriminator) trained with its own loss on the first view, real
data only. ``data`` picks real images, generated anchors, or both; ``loss: supcon`` uses class labels
(real labels / the generator's classes) as extra positives.

Data path (``train.stream``, default ``auto``): real data under a selection that keeps every image is
streamed, not loaded: each epoch reads the shards through a shuffle buffer of ``train.shuffle_buffer``
encoded samples (split by node and loader worker), so the split may be larger than memory and may live at
a URL (:class:`repflow.shards.ShardReader`). Generated views and coreset methods load the training set
into memory (see :func:`repflow.families.image.stages._training.streams` for why). The streamed order is
another seeded permutation than the in-memory one, so the two give different encoders from the same seed;
benchmarks/results/stream.md measures the difference.

Training starts from the select stage's state (its warm-up epochs and first coreset); from then on a
coreset method re-selects with the current model every ``select.every`` epochs, timed apart from the
training itself.

Output folder: ``encoder.safetensors`` + ``encoder.json`` (builder config), the projection head (a
pretext method's head instead, its config naming the method under ``"pretext"``),
``history.json`` (loss per epoch, training and selection seconds), ``coresets.parquet`` (the
images of every selection round) and ``loss.png``. While training, a progress checkpoint sits in
``.<out>.progress/``; a run killed mid-way and started with the same key continues from it.

``train.workers: N`` (N > 1) trains data-parallel on N Ray Train workers (one Prefect task still: this stage
waits for them): each global batch of ``train.batch_size`` is split over the workers, the contrastive loss
sees every worker's projections, batch norm is synchronised, and rank 0 writes the same progress checkpoint
(:func:`repflow.families.image.stages._training.data_parallel_train`), from which this stage then reads the
trained model.
"""
from __future__ import annotations

import json
import logging
import time

import mlflow
import polars as pl
import torch

from repflow.checkpoints import TrainingProgress, save_tensors
from repflow.cluster import choose_device, run_data_parallel
from repflow.families.image.contrastive import train_contrastive
from repflow.manifest import OutputError, atomic_write_text, read_manifest
from repflow.progress import RunProgress
from repflow.report import line_plot
from repflow.shards import ShardSet
from repflow.stage import StageContext, StageSummary
from repflow.families.image.stages._training import (adversary, choose_coreset, data_parallel_train,
                                                    load_training_state, new_models, training_source)

log = logging.getLogger("repflow.train")


def run(ctx: StageContext) -> StageSummary:
    params, tmp, key = ctx.params, ctx.tmp, ctx.key
    selection = ctx.inputs["selection"]
    cfg, scfg = params.train, params.select
    data = ShardSet(ctx.inputs["shards"])
    images, partners, labels = training_source(params, data, ctx.inputs.get("views"))
    streamed = not isinstance(images, torch.Tensor)
    sel_manifest = read_manifest(selection, stage="image.select")
    if sel_manifest["meta"]["images"] != len(images):
        raise OutputError(f"{selection}: selection made over {sel_manifest['meta']['images']} images, "
                          f"the training set has {len(images)}; rerun the select stage")
    if len(images) < cfg.batch_size:
        log.warning("train: batch_size %d > %d training images; using %d", cfg.batch_size, len(images), len(images))
    device = choose_device(params.device)
    encoder, head, enc_config, head_config = new_models(params, data)
    progress = TrainingProgress(ctx.progress_dir / "last.safetensors", key, {"encoder": encoder, "head": head},
                                every=cfg.checkpoint_every, epochs=cfg.epochs)
    if progress.resumed:
        meta, opt_state, extra = progress.meta, progress.optimizer_state(), progress.extra
        log.info("train: resuming from epoch %d checkpoint in %s", meta["epoch"], progress.path.parent)
    else:
        meta, opt_state, _ = load_training_state(selection / "warmup.safetensors", encoder, head)
        table = pl.read_parquet(selection / "coreset.parquet")
        extra = {"coreset": torch.tensor(table.filter(pl.col("selected"))["index"].to_list(), dtype=torch.long)}
        meta = {"epoch": meta["epoch"], "history": meta["history"],
                "rounds": [{"epoch": meta["epoch"], "size": len(extra["coreset"]), "seconds": 0.0}],
                "selection_seconds": 0.0, "train_seconds": 0.0}
    start_epoch, history, rounds = meta["epoch"], meta["history"], meta["rounds"]
    state = {"coreset": extra["coreset"], "selection_seconds": meta["selection_seconds"],
             "train_seconds": meta["train_seconds"]}
    coresets = {r["epoch"]: extra.get(f"round/{r['epoch']}") for r in rounds}

    def epoch_indices(epoch: int) -> torch.Tensor:
        due = (scfg.selection_method.subset and epoch > scfg.warmup_epochs
               and (epoch - scfg.warmup_epochs) % scfg.every == 0)
        if due and not any(r["epoch"] == epoch for r in rounds):
            coreset, seconds = choose_coreset(params, encoder, head, enc_config, head_config, images, epoch=epoch,
                                              device=device)
            state["coreset"] = coreset.indices
            state["selection_seconds"] += seconds
            rounds.append({"epoch": epoch, "size": len(coreset.indices), "seconds": seconds})
            mlflow.log_metric("selection_seconds", seconds, step=epoch)
            log.info("train: epoch %d re-selected %d images (%s) in %.1f s", epoch + 1, len(coreset.indices),
                     scfg.method, seconds)
        coresets[rounds[-1]["epoch"]] = state["coreset"]
        state["epoch_start"] = time.perf_counter()
        return state["coreset"]

    coresets[rounds[-1]["epoch"]] = state["coreset"]

    ctx.meta.update({"method": cfg.method, "data": cfg.data, "loss": cfg.loss, "images": len(images),
                     "streamed": streamed, "shuffle_buffer": cfg.shuffle_buffer if streamed else None,
                     "coreset": scfg.method, "encoder": enc_config, "out_dim": encoder.out_dim})
    mlflow.set_tag("repflow.resumed_from_epoch", str(start_epoch))
    ui_progress = RunProgress(f"train: {cfg.method} epochs (of {cfg.epochs})")
    ui_progress.update(100.0 * start_epoch / cfg.epochs)
    for h in history:
        mlflow.log_metric("loss", h["loss"], step=h["epoch"])

    def on_epoch(epoch: int, stats: dict, opt) -> None:
        state["train_seconds"] += time.perf_counter() - state["epoch_start"]
        history.append(stats)
        mlflow.log_metric("loss", stats["loss"], step=epoch)
        log.info("train: epoch %d/%d loss %.4f on %d images", epoch, cfg.epochs, stats["loss"], stats["images"])
        ui_progress.update(100.0 * epoch / cfg.epochs)
        progress.epoch_done(epoch, {"model": opt}, history=history, rounds=rounds,
                            selection_seconds=state["selection_seconds"], train_seconds=state["train_seconds"],
                            extra={"coreset": state["coreset"],
                                   **{f"round/{e}": idx for e, idx in coresets.items() if idx is not None}})
        state["epoch_start"] = time.perf_counter()

    state["epoch_start"] = time.perf_counter()

    if cfg.workers > 1 and start_epoch < cfg.epochs:
        job = {"params": params, "key": key, "progress": progress.path, "enc_config": enc_config,
               "head_config": head_config, "encoder": encoder.state_dict(), "head": head.state_dict(),
               "optimizer": opt_state, "meta": {"epoch": start_epoch, "history": history, "rounds": rounds,
                                                "selection_seconds": state["selection_seconds"],
                                                "train_seconds": state["train_seconds"]},
               "extra": {"coreset": state["coreset"]}, "images": images, "partners": partners, "labels": labels}
        run_data_parallel(data_parallel_train, job, workers=cfg.workers, device=device,
                          storage=ctx.progress_dir / "ray_train", name=f"image-train-{key[:12]}")
        trained = TrainingProgress(progress.path, key, {"encoder": encoder, "head": head})
        if not trained.resumed or trained.start != cfg.epochs:
            raise OutputError(f"{progress.path}: the data-parallel workers left no checkpoint of epoch {cfg.epochs}")
        for row in trained.history[len(history):]:
            mlflow.log_metric("loss", row["loss"], step=row["epoch"])
            log.info("train: epoch %d/%d loss %.4f on %d images (%d workers)", row["epoch"], cfg.epochs, row["loss"],
                     row["images"], cfg.workers)
        history[:] = trained.history
        state["train_seconds"] = trained.meta["train_seconds"]
        ui_progress.update(100.0)
    else:
        train_contrastive(encoder, head, images, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          weight_decay=cfg.weight_decay, temperature=cfg.temperature,
                          augment=cfg.augment.model_dump(), device=device, seed=params.seed,
                          partners=partners, labels=labels if cfg.loss == "supcon" else None,
                          adversary=adversary(params), epoch_indices=None if streamed else epoch_indices,
                          optimizer_state=opt_state, start_epoch=start_epoch,
                          use_every_image=scfg.selection_method.subset, on_epoch=on_epoch)
    encoder.cpu().eval()
    save_tensors(tmp / "encoder.safetensors", encoder.state_dict(), enc_config)
    save_tensors(tmp / "head.safetensors", head.cpu().state_dict(), head_config)
    summary = {"history": history, "final_loss": history[-1]["loss"], "rounds": rounds,
               "selection_seconds": state["selection_seconds"], "train_seconds": state["train_seconds"]}
    atomic_write_text(tmp / "history.json", json.dumps(summary, indent=1))
    pl.DataFrame({"epoch": [e for e, idx in coresets.items() if idx is not None for _ in range(len(idx))],
                  "index": [i for idx in coresets.values() if idx is not None for i in idx.tolist()]},
                 schema={"epoch": pl.Int64, "index": pl.Int64}).write_parquet(tmp / "coresets.parquet")
    coreset_note = f", {scfg.method} coreset" if scfg.selection_method.subset else ""
    loss_name = f"{cfg.method} pretext loss" if cfg.training_method.pretext is not None else cfg.loss
    line_plot([h["epoch"] for h in history], {loss_name: [h["loss"] for h in history]}, tmp / "loss.png",
              xlabel="epoch", ylabel="loss", title=f"{cfg.method} on {cfg.data} data / {cfg.encoder}{coreset_note}")
    md = (f"- encoder: {cfg.encoder}, {cfg.method} on {cfg.data} data ({loss_name}), {cfg.epochs} epochs on "
          f"{len(images)} images ({scfg.method} coreset); final loss {summary['final_loss']:.4f}, "
          f"{state['train_seconds']:.0f} s training, {state['selection_seconds']:.1f} s selection")
    return StageSummary(metrics={"final_loss": summary["final_loss"], "epochs": len(history),
                                 "train_seconds": state["train_seconds"],
                                 "selection_seconds": state["selection_seconds"]},
                        markdown=md, plots=["loss.png"])

