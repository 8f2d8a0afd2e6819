"""sr.train: one super-resolution model per scale in ``sr.train.scales``, L1 on the prep stage's patch pairs.

Resumable like the image family's training: every ``checkpoint_every`` epochs the model, optimizer and history
go to ``.train.progress/x<scale>.safetensors`` beside the output; a killed run started again with the same
params, inputs and code continues from there (a checkpoint made under another stage key is ignored).
"""
from __future__ import annotations

import inspect
import logging

import mlflow
import torch

from repflow.checkpoints import TrainingProgress, save_tensors
from repflow.families.sr.data import load_pairs
from repflow.families.sr.models import DEFAULT_DTB_PLACEMENT, SR_MODELS, build_sr_model
from repflow.families.sr.training import train_sr
from repflow.manifest import read_manifest
from repflow.report import line_plot
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.sr.train")


def model_config(params, scale: int) -> dict:
    cfg = params.sr.train
    config = {"model": cfg.model, "scale": scale, "channels": cfg.channels, "blocks": cfg.blocks}
    return {**config, "dtb_placement": DEFAULT_DTB_PLACEMENT} if _has_dtb_placement(cfg.model) else config


def _has_dtb_placement(model: str) -> bool:
    return "dtb_placement" in inspect.signature(SR_MODELS[model].factory).parameters


def build_from_config(config: dict) -> torch.nn.Module:
    """The module a checkpoint config describes (the inverse of :func:`model_config`). A checkpoint written
    before SHSR recorded its DTB placement had DTB on the trunk, and is rebuilt so."""
    kwargs = {} if config["model"] == "bicubic" else {"channels": config["channels"], "blocks": config["blocks"]}
    if _has_dtb_placement(config["model"]):
        kwargs["dtb_placement"] = config.get("dtb_placement", "trunk")
    return build_sr_model(config["model"], config["scale"], **kwargs)


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.sr.train
    metrics, md, plots, curves = {}, [], [], {}
    ctx.meta["scales"] = cfg.scales
    for scale in cfg.scales:
        config = model_config(params, scale)
        torch.manual_seed(params.seed)
        model = build_from_config(config)
        history: list[dict] = []
        if any(p.requires_grad for p in model.parameters()):
            lrs, hrs, _ = load_pairs(ctx.inputs["shards"], "train", scale)
            progress = TrainingProgress(ctx.progress_dir / f"x{scale}.safetensors", ctx.key, {"model": model},
                                        every=cfg.checkpoint_every, epochs=cfg.epochs)
            start, history = progress.start, progress.history
            if progress.resumed:
                log.info("sr.train: ×%d resuming after epoch %d", scale, start)
            mlflow.set_tag(f"repflow.resumed_from_epoch.x{scale}", str(start))

            def on_epoch(epoch: int, stats: dict, opt, scale=scale, progress=progress) -> None:
                progress.history.append(stats)
                mlflow.log_metric(f"loss_x{scale}", stats["loss"], step=epoch)
                log.info("sr.train: ×%d epoch %d/%d L1 %.5f", scale, epoch, cfg.epochs, stats["loss"])
                progress.epoch_done(epoch, {"model": opt})

            train_sr(model, torch.stack(lrs), torch.stack(hrs), epochs=cfg.epochs, batch_size=cfg.batch_size,
                     lr=cfg.lr, lr_half_every=cfg.lr_half_every, seed=params.seed + scale, start_epoch=start,
                     optimizer_state=progress.optimizer_state(), on_epoch=on_epoch)
            curves[f"×{scale}"] = [h["loss"] for h in history]
            metrics[f"final_l1/x{scale}"] = history[-1]["loss"]
        params_count = sum(p.numel() for p in model.parameters())
        lr_patch = read_manifest(ctx.inputs["shards"], verify=False)["meta"]["hr_patch"] // scale
        save_tensors(tmp / f"x{scale}.safetensors", model.state_dict(), {**config, "params": params_count,
                                                                      "lr_patch": lr_patch, "history": history})
        metrics[f"params/x{scale}"] = params_count
        md.append(f"×{scale}: {params_count:,} parameters" + (f", final L1 {history[-1]['loss']:.5f}" if history else
                                                                " (no training: a fixed method)"))
    if curves:
        line_plot(list(range(1, cfg.epochs + 1)), curves, tmp / "loss.png", xlabel="epoch", ylabel="L1 (pixel units)",
                  title=f"sr.train {cfg.model}")
        plots.append("loss.png")
    summary = (f"- SR model **{cfg.model}** ({SR_MODELS[cfg.model].summary}), {cfg.channels} channels, {cfg.blocks} "
               f"blocks, {cfg.epochs} epochs of L1: " + "; ".join(md))
    return StageSummary(metrics=metrics, markdown=summary, plots=plots)
