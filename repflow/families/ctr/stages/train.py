"""ctr.train: a click model (``ctr.train.model``: DIN on concatenated modalities, MAN, MARN or its
single-discriminator ablation) on the prep stage's training examples (:func:`~repflow.families.ctr.training.
train_ctr`), with the validation AUC after every epoch.

Resumable: every ``checkpoint_every`` epochs the model, optimizer and history go to
``.train.progress/model.safetensors`` beside the output; a killed run started again with the same params,
inputs and code continues from there, and every epoch's batch order comes from the seed and the epoch alone,
so it ends with the weights an uninterrupted run has.
"""
from __future__ import annotations

import inspect
import logging

import mlflow
import torch

from repflow.checkpoints import TrainingProgress, load_state_strict, load_tensors, save_tensors
from repflow.families.ctr.features import FeatureTensors, examples_to_tensors, load_space
from repflow.families.ctr.metrics import auc
from repflow.families.ctr.models import CTR_MODELS, CtrModel, build_ctr_model
from repflow.families.ctr.stages.prep import load_prepared
from repflow.families.ctr.training import predict, train_ctr
from repflow.manifest import read_manifest
from repflow.report import line_plot
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.ctr.train")

_ITEM_OPTIONS = ("specific_dim", "invariant_dim")


def model_config(params) -> dict:
    """The model's name and sizes; the item representation's own sizes only where the model has them."""
    cfg = params.ctr.train
    own = inspect.signature(CTR_MODELS[cfg.model].items).parameters
    return {"model": cfg.model, "dim": cfg.dim, "user_dim": cfg.user_dim, "attention_hidden": cfg.attention_hidden,
            "hidden": list(cfg.hidden)} | {k: getattr(cfg, k) for k in _ITEM_OPTIONS if k in own}


def build_from_config(config: dict, features: FeatureTensors) -> CtrModel:
    """The model a checkpoint config describes (the inverse of :func:`model_config`) over ``features``."""
    kwargs = {k: v for k, v in config.items() if k in ("dim", "user_dim", "attention_hidden", *_ITEM_OPTIONS)}
    return build_ctr_model(config["model"], features, hidden=tuple(config["hidden"]), **kwargs)


def load_model(folder, space_folder) -> tuple[CtrModel, dict]:
    """The model of a ctr.train output (verified when it has a manifest), in eval mode, and its config;
    ``space_folder`` holds the feature space it was trained on."""
    if (folder / "manifest.json").is_file():
        read_manifest(folder, stage="ctr.train")
    path = folder / "model.safetensors"
    state, config = load_tensors(path)
    model = build_from_config(config, load_space(space_folder).tensors())
    load_state_strict(model, state, path)
    return model.eval(), config


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.ctr.train
    config = model_config(params)
    space, examples, history = load_prepared(ctx.inputs["prep"])
    train, val = (examples_to_tensors(examples, s, history) for s in ("train", "val"))
    torch.manual_seed(params.seed)
    model = build_from_config(config, space.tensors())
    progress = TrainingProgress(ctx.progress_dir / "model.safetensors", ctx.key, {"model": model},
                                every=cfg.checkpoint_every, epochs=cfg.epochs)
    start, history_log = progress.start, progress.history
    if progress.resumed:
        log.info("ctr.train: resuming after epoch %d", start)
    mlflow.set_tag("repflow.resumed_from_epoch", str(start))

    def on_epoch(epoch: int, stats: dict, opt) -> None:
        stats = {k: v for k, v in stats.items() if k != "epoch"}
        stats["val_auc"] = auc(val.label.numpy(), predict(model, val).numpy()) if len(val) else float("nan")
        model.train()
        history_log.append(stats)
        mlflow.log_metrics(stats, step=epoch)
        log.info("ctr.train: epoch %d/%d loss %.4f, val AUC %.4f, %.0f samples/s", epoch, cfg.epochs, stats["loss"],
                 stats["val_auc"], stats["samples_per_s"])
        progress.epoch_done(epoch, {"model": opt})

    train_ctr(model, train, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=params.seed,
              adv_weight=cfg.adversarial_weight, weight_decay=cfg.weight_decay, start_epoch=start,
              optimizer_state=progress.optimizer_state(), on_epoch=on_epoch)
    n_params = sum(p.numel() for p in model.parameters())
    save_tensors(tmp / "model.safetensors", model.state_dict(), {**config, "params": n_params,
                                                                 "history": history_log})
    epochs = list(range(1, len(history_log) + 1))
    line_plot(epochs, {"validation AUC": [h["val_auc"] for h in history_log]}, tmp / "val_auc.png",
              xlabel="epoch", ylabel="AUC", title=f"ctr.train {cfg.model}")
    last = history_log[-1]
    ctx.meta.update({"model": cfg.model, "params": n_params, "train_impressions": len(train)})
    md = (f"- **{cfg.model}** ({CTR_MODELS[cfg.model].summary}); {n_params:,} parameters; {len(train)} training "
          f"impressions × {cfg.epochs} epochs, batch {cfg.batch_size}; last epoch: loss {last['loss']:.4f}, "
          f"validation AUC {last['val_auc']:.4f}, {last['samples_per_s']:.0f} samples/s")
    return StageSummary(metrics={"final_loss": last["loss"], "final_val_auc": last["val_auc"], "params": n_params,
                                 "samples_per_s": last["samples_per_s"]}, markdown=md, plots=["val_auc.png"])
