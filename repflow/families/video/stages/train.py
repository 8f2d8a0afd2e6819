"""video.train: a watermarker (``video.train.model``) for L-bit messages, trained on the prep stage's clips
through a distortion layer (one of ``video.train.distortions`` per batch), with ItoV's frame loss and, when
``adversarial_weight`` > 0, HiDDeN's critic.

Resumable: every ``checkpoint_every`` epochs the networks, optimizer and history go to
``.train.progress/watermarker.safetensors`` beside the output; a killed run started again with the same
params, inputs and code continues from there (exactly, without a critic; with one, the critic's weights are
restored but its Adam state starts afresh).
"""
from __future__ import annotations

import logging

import mlflow
import torch

from repflow.checkpoints import TrainingProgress, load_state_strict, load_tensors, save_tensors
from repflow.families.video.data import load_clips
from repflow.families.video.distortions import DISTORTIONS, Combined
from repflow.families.video.models import WATERMARKERS, Critic, Watermarker, build_watermarker
from repflow.families.video.training import LossWeights, train_watermarker
from repflow.manifest import read_manifest
from repflow.report import line_plot
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.video.train")


def model_config(params) -> dict:
    cfg, prep = params.video.train, params.video.prep
    return {"model": cfg.model, "frames": prep.frames, "size": prep.size, "bits": cfg.bits, "width": cfg.width,
            "encoder_blocks": cfg.encoder_blocks, "decoder_blocks": cfg.decoder_blocks}


def build_from_config(config: dict) -> Watermarker:
    """The watermarker a checkpoint config describes (the inverse of :func:`model_config`)."""
    kwargs = {"width": config["width"], "decoder_blocks": config["decoder_blocks"],
              "encoder_blocks": config["encoder_blocks"]}
    return build_watermarker(config["model"], T=config["frames"], L=config["bits"], **kwargs)


def load_watermarker(folder) -> tuple[Watermarker, dict]:
    """The watermarker of a verified video.train output, in eval mode, and its config."""
    read_manifest(folder, stage="video.train")
    path = folder / "watermarker.safetensors"
    state, config = load_tensors(path)
    model = build_from_config(config)
    load_state_strict(model, state, path)
    return model.eval(), config


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.video.train
    config = model_config(params)
    clips, _ = load_clips(ctx.inputs["shards"], "train")
    frames, size = clips.shape[1], clips.shape[2]
    if (frames, size) != (config["frames"], config["size"]):
        raise ValueError(f"{ctx.inputs['shards']}: clips of {frames} frames at {size} px, but video.prep asks for "
                         f"{config['frames']} at {config['size']} px; rerun video.prep")
    torch.manual_seed(params.seed)
    model = build_from_config(config)
    critic = Critic(frames, width=cfg.width, stride=2) if cfg.adversarial_weight > 0 else None
    networks = {"model": model} | ({"critic": critic} if critic is not None else {})
    progress = TrainingProgress(ctx.progress_dir / "watermarker.safetensors", ctx.key, networks,
                                every=cfg.checkpoint_every, epochs=cfg.epochs)
    start, history = progress.start, progress.history
    if progress.resumed:
        log.info("video.train: resuming after epoch %d", start)
    mlflow.set_tag("repflow.resumed_from_epoch", str(start))
    distortion = Combined([DISTORTIONS[name]() for name in cfg.distortions], seed=params.seed)

    def on_epoch(epoch: int, stats: dict, opt) -> None:
        history.append(stats)
        mlflow.log_metrics({k: v for k, v in stats.items()}, step=epoch)
        log.info("video.train: epoch %d/%d loss %.4f bit accuracy %.3f PSNR %.2f dB", epoch, cfg.epochs,
                 stats["loss"], stats["bit_accuracy"], stats["psnr"])
        progress.epoch_done(epoch, {"model": opt})

    weights = LossWeights(fidelity=cfg.fidelity_weight, message=cfg.message_weight,
                          adversarial=cfg.adversarial_weight, frame=cfg.frame_weight)
    train_watermarker(model, clips, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weights=weights,
                      distortion=distortion, seed=params.seed, critic=critic,
                      frame_warmup_epochs=cfg.frame_warmup_epochs, start_epoch=start,
                      optimizer_state=progress.optimizer_state(), on_epoch=on_epoch)
    n_params = sum(p.numel() for p in model.parameters())
    save_tensors(tmp / "watermarker.safetensors", model.state_dict(), {**config, "params": n_params,
                                                                       "history": history})
    epochs = list(range(1, len(history) + 1))
    line_plot(epochs, {"bit accuracy (through the distortion)": [h["bit_accuracy"] for h in history]},
              tmp / "bit_accuracy.png", xlabel="epoch", ylabel="share of bits", title=f"video.train {cfg.model}")
    line_plot(epochs, {"PSNR of the watermarked clip": [h["psnr"] for h in history]}, tmp / "psnr.png",
              xlabel="epoch", ylabel="dB", title=f"video.train {cfg.model}")
    last = history[-1]
    ctx.meta.update({"model": cfg.model, "params": n_params, "clips": len(clips)})
    md = (f"- watermarker **{cfg.model}** ({WATERMARKERS[cfg.model].summary}); {n_params:,} parameters; "
          f"{len(clips)} clips × {cfg.epochs} epochs; distortions {', '.join(cfg.distortions)}; last epoch: bit "
          f"accuracy {last['bit_accuracy']:.3f} through the distortion, PSNR {last['psnr']:.2f} dB")
    return StageSummary(metrics={"final_bit_accuracy": last["bit_accuracy"], "final_psnr": last["psnr"],
                                 "params": n_params}, markdown=md, plots=["bit_accuracy.png", "psnr.png"])
