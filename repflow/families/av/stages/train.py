"""av.train: stage 2, the representation models of ``av.train.models`` (MDVAE, the audio-only and visual-only
dynamical VAEs, a per-frame VAE: :data:`~repflow.families.av.baselines.SEQUENCE_MODELS`) on the same latent
sequences of the training speakers, one Ray task each, each from the same seed.

Written: ``<model>.safetensors`` per model (weights, its options and its training history; rebuilt with
:func:`load_models`) and the loss curves.
"""
from __future__ import annotations

import logging
import time

import mlflow
import torch

from repflow.checkpoints import load_state_strict, load_tensors, save_tensors
from repflow.cluster import ensure_ray
from repflow.families.av.baselines import SEQUENCE_MODELS, build_sequence_model
from repflow.families.av.stages.vqvae import load_latents
from repflow.families.av.training import evaluate_sequence_model, random_batches, train_sequence_model
from repflow.manifest import read_manifest
from repflow.report import line_plot, markdown_table
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.av.train")


def model_options(name: str, w_dim: int) -> dict:
    """The sizes a model takes from params: the static latent size of the models that have a w."""
    return {"w_dim": w_dim} if SEQUENCE_MODELS[name].static_latent == "w" else {}


def train_one(name: str, options: dict, latents: dict[str, torch.Tensor], *, dims: dict[str, int], steps: int,
              batch_size: int, lr: float, kl_warmup: int, seed: int) -> tuple[dict, list[dict], float]:
    """(state dict, per-step history, CPU seconds) of one model trained on ``latents`` (a Ray task body)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = build_sequence_model(name, audio_dim=dims["audio"], visual_dim=dims["visual"], **options)
    data = {k: latents[k] for k in ("audio", "visual")}
    model.fit_standardisation(data)
    started = time.process_time()
    history = train_sequence_model(model, random_batches(data, batch_size, seed), steps=steps, lr=lr, seed=seed,
                                   kl_warmup=kl_warmup)
    return model.state_dict(), history, time.process_time() - started


def load_models(folder) -> dict:
    """{name: model in eval mode} of an av.train output (verified when it has a manifest)."""
    meta = read_manifest(folder, stage="av.train")["meta"] if (folder / "manifest.json").is_file() else None
    models = {}
    for path in sorted(folder.glob("*.safetensors")):
        state, config = load_tensors(path)
        model = build_sequence_model(config["model"], audio_dim=config["audio_dim"], visual_dim=config["visual_dim"],
                                     **config["options"])
        load_state_strict(model, state, path)
        models[config["model"]] = model.eval()
    if meta is not None and sorted(models) != sorted(meta["models"]):
        raise ValueError(f"{folder}: holds models {sorted(models)}, its manifest names {meta['models']}")
    return models


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.av.train
    train, val = (load_latents(ctx.inputs["latents"], s) for s in ("train", "val"))
    dims = {"audio": train["audio"].shape[-1], "visual": train["visual"].shape[-1]}
    ray = ensure_ray()
    job = ray.remote(train_one).options(num_cpus=1)
    ref = ray.put(train)
    options = {name: model_options(name, cfg.w_dim) for name in cfg.models}
    futures = {name: job.remote(name, options[name], ref, dims=dims, steps=cfg.steps, batch_size=cfg.batch_size,
                                lr=cfg.lr, kl_warmup=cfg.kl_warmup, seed=params.seed) for name in cfg.models}
    rows, curves = [], {}
    for name, future in futures.items():
        state, history, seconds = ray.get(future)
        model = build_sequence_model(name, audio_dim=dims["audio"], visual_dim=dims["visual"], **options[name])
        model.load_state_dict(state)
        model.eval()
        held_out = (evaluate_sequence_model(model, [{k: val[k] for k in ("audio", "visual")}], seed=params.seed)
                    if len(val["audio"]) else {})
        save_tensors(tmp / f"{name}.safetensors", state,
                     {"model": name, "audio_dim": dims["audio"], "visual_dim": dims["visual"], "options": options[name],
                      "history": history[-1], "val": held_out, "train_cpu_s": seconds})
        curves[name] = [h["loss"] for h in history]
        row = {"model": name, "static latent": SEQUENCE_MODELS[name].static_latent,
               "params": sum(p.numel() for p in model.parameters()), "train loss": history[-1]["loss"],
               "val loss": held_out.get("loss", float("nan")), "train CPU s": seconds}
        rows.append(row)
        mlflow.log_metrics({f"{name}/train_loss": history[-1]["loss"], f"{name}/train_cpu_s": seconds}
                           | ({f"{name}/val_loss": held_out["loss"]} if held_out else {}))
        log.info("av.train %s: loss %.3f (val %.3f) nats per frame, %.0f CPU s", name, history[-1]["loss"],
                 held_out.get("loss", float("nan")), seconds)
    line_plot(list(range(1, cfg.steps + 1)), curves, tmp / "loss.png", xlabel="step",
              ylabel="negative ELBO (nats per frame)", title="av.train")
    ctx.meta.update({"models": list(cfg.models), "dims": dims})
    md = (f"- {len(train['audio'])} training clips of the training speakers, {cfg.steps} steps of {cfg.batch_size} "
          f"clips, Adam {cfg.lr}, β warmed up over {cfg.kl_warmup} steps; validation on held-out speakers\n\n"
          + markdown_table(rows, floatfmt="{:.3f}"))
    metrics = {f"{r['model']}_val_loss": r["val loss"] for r in rows} | {
        f"{r['model']}_train_cpu_s": r["train CPU s"] for r in rows}
    return StageSummary(metrics=metrics, markdown=md, plots=["loss.png"])
