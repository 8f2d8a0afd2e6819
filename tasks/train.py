"""train: contrastive encoder training, resumable from its last epoch.

``method: simclr``: positives are two pixel augmentations of one image. ``method: genrep``: for a
generated anchor the second view is one of its latent-space neighbours from the generate stage
(GenRep), pixel-augmented too. ``data`` picks real images, generated anchors, or both; ``loss:
supcon`` uses class labels (real labels / the generator's classes) as extra positives.

Output folder: ``encoder.safetensors`` + ``encoder.json`` (builder config), the projection head,
``history.json`` (loss per epoch, also DVC metrics) and ``loss.png``. While training, a progress
checkpoint sits in ``.<out>.progress/``; a run killed mid-way and started with the same key
continues from it.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import mlflow
import torch

from models import ProjectionHead, build_encoder
from repflow import tracking
from repflow.checkpoints import (CheckpointError, flatten_optimizer, load_state_strict, load_tensors, save_tensors,
                                 unflatten_optimizer)
from repflow.cluster import choose_device
from repflow.config import Params
from repflow.contrastive import train_simclr
from repflow.manifest import OutputError, atomic_write_text, staged_output
from repflow.report import line_plot
from repflow.shards import ShardSet
from repflow.stage import Workspace, current_output, export_metrics, lineage, params_for, stage_key

log = logging.getLogger("repflow.train")


def _progress_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.progress")


def _save_progress(folder: Path, key: str, epoch: int, encoder, head, opt, history) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_meta = flatten_optimizer(opt)
    tensors = {**{f"encoder/{k}": v for k, v in encoder.state_dict().items()},
               **{f"head/{k}": v for k, v in head.state_dict().items()}, **opt_tensors}
    save_tensors(folder / "last.safetensors", tensors,
                 {"stage_key": key, "epoch": epoch, "optimizer": opt_meta, "history": history})


def _load_progress(folder: Path, key: str, encoder, head):
    """(start_epoch, optimizer_state, history) from a progress checkpoint made with ``key``, else None."""
    if not (folder / "last.safetensors").is_file():
        return None
    try:
        tensors, meta = load_tensors(folder / "last.safetensors")
        if meta.get("stage_key") != key:
            log.info("train: ignoring progress checkpoint from other params or code in %s", folder)
            return None
        load_state_strict(encoder, {k[8:]: v for k, v in tensors.items() if k.startswith("encoder/")}, folder)
        load_state_strict(head, {k[5:]: v for k, v in tensors.items() if k.startswith("head/")}, folder)
        return meta["epoch"], unflatten_optimizer(tensors, meta["optimizer"]), meta["history"]
    except (CheckpointError, KeyError, ValueError) as exc:
        log.warning("train: progress checkpoint in %s unusable (%s); starting from scratch", folder, exc)
        return None


def plan(params: Params, shards: Path, views: Path | None = None) -> tuple[dict, str]:
    """(lineage, stage key): train params, the shards' digest (and the generated views' digest when the
    training data uses them), code version."""
    inputs = {"shards": Path(shards)}
    if params.train.data != "real":
        if views is None:
            raise ValueError(f"train.data={params.train.data!r} needs the generate stage's views")
        inputs["views"] = Path(views)
    lin = lineage("train", params, inputs)
    return lin, stage_key("train", lin)


def training_set(params: Params, data: ShardSet, views: Path | None):
    """(images, partners or None, labels or None) for the configured method, data and loss."""
    cfg = params.train
    parts = []
    if cfg.data in ("real", "both"):
        x, y = data.load("train")
        parts.append((x, x.unsqueeze(1), y))
    if cfg.data in ("generated", "both"):
        gen = ShardSet(views)
        if tuple(gen.shape) != tuple(data.shape) or gen.num_classes != data.num_classes:
            raise OutputError(f"{views}: generated views have shape {gen.shape} and {gen.num_classes} classes, "
                              f"the real shards {data.shape} and {data.num_classes}")
        xg, yg = gen.load("views")
        k1 = gen.meta["views"]["k"] + 1
        grouped, labels = xg.view(-1, k1, *xg.shape[1:]), yg.view(-1, k1)[:, 0]
        anchors = grouped[:, 0]
        partners = grouped[:, 1:] if cfg.method == "genrep" else anchors.unsqueeze(1)
        parts.append((anchors, partners, labels))
    if len(parts) == 2 and parts[0][1].shape[1] != parts[1][1].shape[1]:  # real images: partners = themselves
        k = parts[1][1].shape[1]
        parts[0] = (parts[0][0], parts[0][1].expand(-1, k, *parts[0][1].shape[2:]), parts[0][2])
    images = torch.cat([p[0] for p in parts])
    partners = torch.cat([p[1] for p in parts])
    labels = torch.cat([p[2] for p in parts]) if cfg.loss == "supcon" else None
    return images, (None if cfg.method == "simclr" and cfg.data == "real" else partners), labels


def run(params: Params, shards: Path, views: Path | None, out: Path) -> Path:
    out, shards = Path(out), Path(shards)
    lin, key = plan(params, shards, views)
    if current_output(out, "train", key):
        log.info("train: %s is up to date (same params, inputs and code); reusing it", out)
        return _export(out)
    cfg = params.train
    data = ShardSet(shards)
    images, partners, labels = training_set(params, data, views)
    if len(images) < cfg.batch_size:
        log.warning("train: batch_size %d > %d training images; using %d", cfg.batch_size, len(images), len(images))
    device = choose_device(params.device)
    torch.manual_seed(params.seed)
    enc_config = {"name": cfg.encoder, "in_channels": data.shape[0], "width": cfg.width,
                  "mean": data.meta["mean"], "std": data.meta["std"], "input_shape": list(data.shape)}
    encoder = build_encoder(enc_config)
    head = ProjectionHead(encoder.out_dim, cfg.proj_dim)
    progress_dir = _progress_dir(out)
    resumed = _load_progress(progress_dir, key, encoder, head)
    start_epoch, opt_state, history = resumed if resumed else (0, None, [])
    if resumed:
        log.info("train: resuming from epoch %d checkpoint in %s", start_epoch, progress_dir)

    with tracking.stage_run("train", params_for("train", params), lin), \
            staged_output(out, stage="train", stage_key=key, lineage=lin,
                          meta={"method": cfg.method, "data": cfg.data, "loss": cfg.loss, "images": len(images),
                                "encoder": enc_config, "out_dim": encoder.out_dim}) as tmp:
        mlflow.set_tag("repflow.resumed_from_epoch", str(start_epoch))
        for h in history:
            mlflow.log_metric("loss", h["loss"], step=h["epoch"])

        def on_epoch(epoch: int, stats: dict, opt) -> None:
            history.append(stats)
            mlflow.log_metric("loss", stats["loss"], step=epoch)
            log.info("train: epoch %d/%d loss %.4f", epoch, cfg.epochs, stats["loss"])
            if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
                _save_progress(progress_dir, key, epoch, encoder, head, opt, history)

        train_simclr(encoder, head, images, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                     weight_decay=cfg.weight_decay, temperature=cfg.temperature,
                     augment=cfg.augment.model_dump(), device=device, seed=params.seed,
                     partners=partners, labels=labels, optimizer_state=opt_state, start_epoch=start_epoch,
                     on_epoch=on_epoch)
        encoder.cpu().eval()
        save_tensors(tmp / "encoder.safetensors", encoder.state_dict(), enc_config)
        save_tensors(tmp / "head.safetensors", head.cpu().state_dict(),
                     {"in_dim": encoder.out_dim, "out_dim": cfg.proj_dim})
        atomic_write_text(tmp / "history.json", json.dumps({"history": history, "final_loss": history[-1]["loss"]},
                                                           indent=1))
        line_plot([h["epoch"] for h in history], {cfg.loss: [h["loss"] for h in history]}, tmp / "loss.png",
                  xlabel="epoch", ylabel="loss", title=f"{cfg.method} on {cfg.data} data / {cfg.encoder}")
        mlflow.log_artifact(str(tmp / "loss.png"))
    shutil.rmtree(progress_dir, ignore_errors=True)
    return _export(out)


def _export(out: Path) -> Path:
    summary = json.loads((out / "history.json").read_text())
    export_metrics(out, {"final_loss": summary["final_loss"], "epochs": len(summary["history"])})
    return out


def run_in(ws: Workspace, params: Params) -> Path:
    return run(params, ws.out("prep"), ws.out("generate"), ws.out("train"))
