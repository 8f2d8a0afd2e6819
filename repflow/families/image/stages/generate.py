"""image.generate: train a class-conditional generator on the prep shards (or load one), judge its samples,
register it, and write GenRep multiview shards: N anchors × (1 + K) latent-space views.

Why a VAE decoder and not a GAN: on a 2-core CPU a conditional VAE trains to usable samples in about
a minute without mode collapse or a tuned discriminator, and its N(0, I) prior is the latent geometry
GenRep's Gaussian neighbourhoods assume. Its samples are blurrier than a GAN's; the Fréchet distance
and the judge's accuracy below say how far from the real data they are.

Output folder: ``generator.safetensors`` (+ ``.json``), ``judge.safetensors``, ``views-*.tar``
(members ``png``, ``cls``, ``latent.npy``, ``json`` = {anchor, view}), ``quality.json``,
``history.json``, ``samples.png`` (best epoch, one row per class), ``views.png`` (anchors and views).
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import torch
from torch import nn

from repflow.families.image.models import (ConditionalEncoder,
                                           ConditionalGenerator, GeneratorSampler, ProbedEncoder, build_encoder)
from repflow import tracking
from repflow.checkpoints import CheckpointError, load_state_strict, load_tensors, save_tensors
from repflow.cluster import choose_device
from repflow.families.image.generative import (frechet_distance,
                                               generate_images, genrep_latents, train_cvae, truncated_normal)
from repflow.manifest import atomic_write_text, read_manifest
from repflow.families.image.probes import embed
from repflow.report import class_grid, markdown_table
from repflow.shards import ShardSet, write_image_split
from repflow.stage import StageContext, StageSummary, params_for
from repflow.families.image.supervised import train_classifier

log = logging.getLogger("repflow.generate")


def load_generator(folder: Path, shape: tuple[int, ...] | None = None,
                   num_classes: int | None = None) -> tuple[ConditionalGenerator, dict]:
    """The generator of a verified generate output; checks it fits the data (shape, class count)."""
    folder = Path(folder)
    read_manifest(folder, stage="image.generate")
    state, config = load_tensors(folder / "generator.safetensors")
    if shape is not None and tuple(config["out_shape"]) != tuple(shape):
        raise CheckpointError(f"{folder}: generator makes images of shape {tuple(config['out_shape'])}, "
                              f"the data has shape {tuple(shape)}")
    if num_classes is not None and config["num_classes"] != num_classes:
        raise CheckpointError(f"{folder}: generator was trained on {config['num_classes']} classes, "
                              f"the data has {num_classes}")
    gen = ConditionalGenerator(config["num_classes"], tuple(config["out_shape"]), config["z_dim"], config["w_dim"],
                               config["channels"])
    load_state_strict(gen, state, folder / "generator.safetensors")
    return gen.eval(), config


def load_judge(folder: Path) -> ProbedEncoder:
    """The real-data classifier a verified generate output judged its samples with, in eval mode: its
    encoder's features are the space of the Fréchet distance, its argmax the judged class."""
    folder = Path(folder)
    manifest = read_manifest(folder, stage="image.generate")
    state, config = load_tensors(folder / "judge.safetensors")
    meta = manifest["meta"]
    enc = build_encoder({"name": config["encoder"], "in_channels": meta["shape"][0], "width": config["width"],
                         "mean": meta["mean"], "std": meta["std"]})
    model = ProbedEncoder(enc, nn.Linear(enc.out_dim, len(meta["classes"])))
    load_state_strict(model, state, folder / "judge.safetensors")
    return model.eval()


class Judge:
    """A classifier trained on the real data: its features define the Fréchet distance, its accuracy on
    generated samples of each class says whether samples look like their class."""

    def __init__(self, model: ProbedEncoder, real_features: torch.Tensor, device: torch.device):
        self.model, self.real_features, self.device = model, real_features, device

    @torch.no_grad()
    def score(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
        feats = embed(self.model.encoder, images, device=self.device)
        pred = self.model.probe(feats.to(self.device)).argmax(1).cpu()
        per_class = [float((pred[labels == c] == c).float().mean()) for c in range(num_classes)]
        return {"frechet_distance": frechet_distance(feats, self.real_features),
                "judge_acc": float((pred == labels).float().mean()), "judge_acc_per_class": per_class}


def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.generate
    data = ShardSet(ctx.inputs["shards"])
    k_classes = data.num_classes
    x, y = data.load("train")
    x_ref, y_ref = data.load("val") if data.count("val") else data.load("test")
    checkpoint = None
    if cfg.checkpoint:  # validate before any training starts
        checkpoint = load_generator(Path(cfg.checkpoint), data.shape, k_classes)
    device = choose_device(params.device)
    torch.manual_seed(params.seed)
    meta = ctx.meta
    meta.update({"classes": data.classes, "shape": list(data.shape), "mean": data.meta["mean"],
                 "std": data.meta["std"], "splits": {},
                 "views": {"anchors": cfg.anchors, "k": cfg.views, "sigma": cfg.sigma, "mode": cfg.mode,
                           "truncation": cfg.truncation}})
    enc = build_encoder({"name": "small_cnn", "in_channels": data.shape[0], "width": 16,
                         "mean": data.meta["mean"], "std": data.meta["std"]})
    judge_model = ProbedEncoder(enc, nn.Linear(enc.out_dim, k_classes))
    train_classifier(judge_model, x, y, epochs=cfg.judge_epochs, lr=2e-3, batch_size=128, seed=params.seed,
                     device=device)
    judge = Judge(judge_model, embed(enc, x_ref, device=device), device)
    real_score = judge.score(x_ref, y_ref, k_classes)
    mlflow.log_metric("judge_real_acc", real_score["judge_acc"])
    save_tensors(tmp / "judge.safetensors", judge_model.cpu().state_dict(), {"encoder": "small_cnn", "width": 16})
    judge_model.to(device)

    g_eval = torch.Generator().manual_seed(params.seed + 1)
    z_eval = truncated_normal((cfg.quality_samples, cfg.z_dim), g_eval)
    c_eval = torch.arange(cfg.quality_samples) % k_classes
    history: list[dict] = []
    if checkpoint is not None:
        gen, gen_config = checkpoint
        log.info("generate: using the generator in %s", cfg.checkpoint)
    else:
        gen = ConditionalGenerator(k_classes, data.shape, cfg.z_dim, cfg.w_dim, cfg.channels)
        vae_enc = ConditionalEncoder(k_classes, data.shape, cfg.z_dim, cfg.channels)
        gen_config = {"num_classes": k_classes, "out_shape": list(data.shape), "z_dim": cfg.z_dim,
                      "w_dim": cfg.w_dim, "channels": cfg.channels, "classes": data.classes}
        best = {"fd": float("inf"), "epoch": 0, "state": None}

        def on_epoch(epoch: int, stats: dict) -> bool:
            q = judge.score(generate_images(gen, z_eval, c_eval, device=device), c_eval, k_classes)
            gen.train()
            history.append({**stats, "frechet_distance": q["frechet_distance"], "judge_acc": q["judge_acc"]})
            mlflow.log_metrics({"vae_loss": stats["loss"], "frechet_distance": q["frechet_distance"],
                                "judge_acc": q["judge_acc"]}, step=epoch)
            grid = _sample_grid(gen, data.classes, device, tmp / f"samples-epoch{epoch:03d}.png", epoch)
            mlflow.log_artifact(str(grid), artifact_path="samples")
            grid.unlink()
            log.info("generate: epoch %d loss %.1f Fréchet %.3f judge acc %.3f", epoch, stats["loss"],
                     q["frechet_distance"], q["judge_acc"])
            if q["frechet_distance"] < best["fd"]:
                best.update(fd=q["frechet_distance"], epoch=epoch, state=copy.deepcopy(gen.state_dict()))
                return False
            return epoch - best["epoch"] >= cfg.patience

        train_cvae(gen, vae_enc, x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, beta=cfg.beta,
                   device=device, seed=params.seed, on_epoch=on_epoch)
        gen.load_state_dict(best["state"])
        gen_config["best_epoch"] = best["epoch"]
        log.info("generate: kept epoch %d (best Fréchet distance %.3f)", best["epoch"], best["fd"])
    gen.to(device).eval()
    quality = judge.score(generate_images(gen, z_eval, c_eval, device=device), c_eval, k_classes)
    quality["judge_acc_real"] = real_score["judge_acc"]
    quality["frechet_distance_real_vs_real"] = frechet_distance(embed(enc, x[:len(x_ref)], device=device),
                                                                judge.real_features)
    mlflow.log_metrics({k: v for k, v in quality.items() if isinstance(v, float)})
    save_tensors(tmp / "generator.safetensors", gen.cpu().state_dict(), gen_config)
    _sample_grid(gen, data.classes, "cpu", tmp / "samples.png", gen_config.get("best_epoch"))

    # GenRep multiview shards: balanced classes, anchor + K views per anchor
    g_views = torch.Generator().manual_seed(params.seed + 2)
    z = genrep_latents(cfg.anchors, cfg.views, cfg.z_dim, sigma=cfg.sigma, g=g_views,
                       truncation=cfg.truncation, mode=cfg.mode)
    classes = (torch.arange(cfg.anchors) % k_classes).repeat_interleave(cfg.views + 1)
    z_flat = z.reshape(-1, cfg.z_dim)
    images = generate_images(gen, z_flat, classes)
    nhwc = images.permute(0, 2, 3, 1).numpy()
    nhwc = nhwc[..., 0] if data.shape[0] == 1 else nhwc
    extras = ({"latent.npy": z_flat[i].numpy(), "json": {"anchor": i // (cfg.views + 1), "view": i % (cfg.views + 1)}}
              for i in range(len(z_flat)))
    meta["splits"]["views"] = write_image_split(tmp, "views", np.ascontiguousarray(nhwc), classes.numpy(),
                                                shard_size=cfg.shard_size, extras=extras, show_progress=True)
    _views_grid(images.view(cfg.anchors, cfg.views + 1, *data.shape), tmp / "views.png", cfg)
    atomic_write_text(tmp / "history.json", json.dumps(history, indent=1))
    atomic_write_text(tmp / "quality.json", json.dumps(quality, indent=1))
    atomic_write_text(tmp / "quality.md", markdown_table(
        [{"class": n, "judge accuracy": a} for n, a in zip(data.classes, quality["judge_acc_per_class"])]))
    meta["generator"] = gen_config
    meta["quality"] = {k: v for k, v in quality.items() if isinstance(v, float)}
    example = torch.cat([z_eval[:2], c_eval[:2, None].float()], dim=1).numpy()
    version = tracking.register_model(
        GeneratorSampler(gen).eval(), "repflow-generator", example,
        {"repflow.frechet_distance": quality["frechet_distance"], "repflow.judge_acc": quality["judge_acc"],
         "repflow.input.shards": lin["inputs"]["shards"], "repflow.code_version": lin["code_version"],
         "repflow.git_commit": tracking.git_commit(),
         "repflow.params": json.dumps(params_for(ctx.stage, params), sort_keys=True)},
        (tmp / "generator.safetensors", tmp / "generator.json"))
    meta["registered"] = f"models:/repflow-generator/{version}"
    log.info("generate: Fréchet %.3f (real vs real %.3f), judge accuracy %.3f on samples, %.3f on real; %s",
             quality["frechet_distance"], quality["frechet_distance_real_vs_real"], quality["judge_acc"],
             quality["judge_acc_real"], meta["registered"])
    md = (f"- generator: Fréchet distance {quality['frechet_distance']:.3f} in the judge's feature space (real vs "
          f"real {quality['frechet_distance_real_vs_real']:.3f}); judge accuracy on generated samples "
          f"{quality['judge_acc']:.3f} (on real {quality['judge_acc_real']:.3f}); registered `{meta['registered']}`")
    return StageSummary(metrics=meta["quality"], markdown=md, plots=["samples.png", "views.png"])


def _sample_grid(gen: ConditionalGenerator, classes: list[str], device, path: Path, epoch) -> Path:
    per_class = 8
    g = torch.Generator().manual_seed(1234)
    z = truncated_normal((per_class * len(classes), gen.z_dim), g)
    c = torch.arange(len(classes)).repeat_interleave(per_class)
    return class_grid(generate_images(gen, z, c, device=device), c, classes, path, per_class=per_class,
                      title=f"generated samples (epoch {epoch})")


def _views_grid(views: torch.Tensor, path: Path, cfg) -> Path:
    """Rows: 8 anchors; column 0 the anchor, then its views."""
    rows = views[:8]
    flat = rows.reshape(-1, *views.shape[2:])
    labels = torch.arange(len(rows)).repeat_interleave(views.shape[1])
    return class_grid(flat, labels, [f"anchor {i}" for i in range(len(rows))], path, per_class=views.shape[1],
                      title=f"{cfg.mode} views, σ={cfg.sigma} (col 0 = anchor)")
