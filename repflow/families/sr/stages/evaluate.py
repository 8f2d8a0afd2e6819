"""sr.evaluate: every trained scale on the held-out whole photos, by the field's convention.

Y-PSNR and SSIM on BT.601 luma with ``scale`` border pixels shaved, outputs quantised to uint8 first; the
bicubic floor is MATLAB-style bicubic upscaling of the same LR images. The "+" rows are self-ensembles (the mean
over 8 flips / rotations). Cost: parameters, MACs at a 48×48 LR input (torch's FLOP counter), and images/s on
batches of 48×48 LR images. Whole photos run tile by tile (``tile`` LR px with ``overlap`` px of context).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from repflow.checkpoints import load_state_strict, load_tensors
from repflow.families.sr.data import load_pairs
from repflow.families.sr.imresize import imresize
from repflow.families.sr.inference import count_macs, count_params, self_ensemble, upscale_tiled
from repflow.families.sr.metrics import psnr_y, ssim_y
from repflow.families.sr.pictures import comparison_crops
from repflow.families.sr.stages.train import build_from_config
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import markdown_table
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.sr.evaluate")


def load_sr_model(folder: Path, scale: int) -> tuple[torch.nn.Module, dict]:
    """The ×``scale`` model of a verified sr.train output, in eval mode, and its config."""
    read_manifest(folder, stage="sr.train")
    path = Path(folder) / f"x{scale}.safetensors"
    state, config = load_tensors(path)
    model = build_from_config(config)
    load_state_strict(model, state, path)
    return model.eval(), config


@torch.no_grad()
def images_per_second(model, batch: int, scale: int, repeats: int = 3) -> float:
    """Throughput on batches of ``batch`` random 48×48 LR images (best of ``repeats`` timed passes)."""
    x = torch.rand(batch, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    model(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - start)
    return batch / best


def score(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> tuple[float, float]:
    """(Y-PSNR dB, SSIM) of one float (1, 3, H, W) output in [0, 1] against its uint8 HR."""
    return float(psnr_y(sr, hr[None], scale)[0]), float(ssim_y(sr, hr[None], scale)[0])


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.sr.evaluate
    train_manifest = read_manifest(ctx.inputs["models"], stage="sr.train", verify=False)
    scales = train_manifest.get("meta", {}).get("scales") or params.sr.train.scales
    metrics, rows, plots = {}, [], []
    for scale in scales:
        model, config = load_sr_model(ctx.inputs["models"], scale)
        lrs, hrs, records = load_pairs(ctx.inputs["shards"], "test", scale)
        arms: dict[str, list[tuple[float, float]]] = {"bicubic": [], config["model"]: []}
        if cfg.self_ensemble:
            arms[config["model"] + "+"] = []
        shown = None
        with torch.no_grad():
            for lr, hr in zip(lrs, hrs):
                x = lr[None].float().div(255)
                bicubic = imresize(x, scale=scale).clamp(0, 1)
                sr = upscale_tiled(model, x, scale, tile=cfg.tile, overlap=cfg.overlap).clamp(0, 1)
                arms["bicubic"].append(score(bicubic, hr, scale))
                arms[config["model"]].append(score(sr, hr, scale))
                if cfg.self_ensemble:
                    plus = self_ensemble(lambda t: upscale_tiled(model, t, scale, tile=cfg.tile, overlap=cfg.overlap),
                                         x).clamp(0, 1)
                    arms[config["model"] + "+"].append(score(plus, hr, scale))
                if shown is None:
                    shown = (lr, bicubic[0], sr[0], hr)
        macs, n_params = count_macs(model, (1, 3, 48, 48)), count_params(model)
        speed = images_per_second(model, cfg.speed_batch, scale)
        for arm, scores in arms.items():
            psnr = sum(s[0] for s in scores) / len(scores)
            ssim = sum(s[1] for s in scores) / len(scores)
            fixed = arm == "bicubic"
            copies = 8 if arm.endswith("+") else 1
            rows.append({"scale": f"×{scale}", "model": arm, "psnr_y": psnr, "ssim_y": ssim,
                         "params": 0 if fixed else n_params, "macs_48px": 0 if fixed else macs * copies,
                         "images_per_s": float("nan") if fixed else speed / copies})
            key = {"bicubic": "bicubic_", config["model"]: "", config["model"] + "+": "plus_"}[arm]
            metrics[f"{key}psnr_y/x{scale}"], metrics[f"{key}ssim_y/x{scale}"] = psnr, ssim
        metrics.update({f"params/x{scale}": n_params, f"macs/x{scale}": macs, f"images_per_s/x{scale}": speed})
        log.info("sr.evaluate: ×%d %s Y-PSNR %.2f dB (bicubic %.2f)", scale, config["model"],
                 metrics[f"psnr_y/x{scale}"], metrics[f"bicubic_psnr_y/x{scale}"])
        comparison_crops(*shown, scale, tmp / f"crops_x{scale}.png",
                         title=f"×{scale}: {records[0].get('photo', 'photo')}")
        plots.append(f"crops_x{scale}.png")
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    protocol = {"y": "bt601", "shave": "scale", "quantised": "uint8", "lr": "matlab-bicubic",
                "test_photos": read_manifest(ctx.inputs["shards"], verify=False)["meta"]["test_photos"],
                "shards": read_manifest(ctx.inputs["shards"], verify=False)["digest"], "tile": cfg.tile,
                "overlap": cfg.overlap}
    atomic_write_text(tmp / "protocol.json", json.dumps(protocol, indent=1, sort_keys=True))
    md = ("- held-out photos, Y-PSNR (dB) / SSIM on BT.601 luma with `scale` border pixels shaved; MACs at a 48×48 LR "
          "input; images/s on 48×48 LR batches\n\n" + markdown_table(rows, floatfmt="{:.4f}") + "\n\n"
          + "\n".join(f"![before/after ×{s}]({(ctx.out / f'crops_x{s}.png').resolve().as_uri()})" for s in scales))
    return StageSummary(metrics=metrics, markdown=md, plots=plots)
