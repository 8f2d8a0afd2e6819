"""video.evaluate: the trained watermarker on the held-out clips (:mod:`repflow.families.video.evaluation`):
PSNR / SSIM of the saved-form watermarked clips, the per-frame PSNR spread and minimum, bit accuracy under
each distortion and under real H.264 at each CRF, parameters, MACs per clip and clips/s."""
from __future__ import annotations

import json
import logging

from repflow.families.video.data import load_clips
from repflow.families.video.evaluation import clips_per_second, evaluate_watermarker, watermark_costs
from repflow.families.video.pictures import frame_psnr_plot, watermark_strip
from repflow.families.video.stages.train import load_watermarker
from repflow.families.video.training import as_float_clips
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import markdown_table
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.video.evaluate")


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.video.evaluate
    model, config = load_watermarker(ctx.inputs["models"])
    clips, names = load_clips(ctx.inputs["shards"], "test")
    metrics, tensors = evaluate_watermarker(model, clips, distortions=cfg.distortions, crfs=cfg.h264_crfs,
                                            seed=params.seed)
    frames, size = config["frames"], config["size"]
    metrics.update(watermark_costs(model, frames, size))
    metrics["clips_per_s"] = clips_per_second(model, (cfg.speed_batch, 3, frames, size, size))
    log.info("video.evaluate: PSNR %.2f dB, bit accuracy %.3f (clean) / %.3f (mean over distortions)",
             metrics["psnr"], metrics["bit_accuracy/identity"], metrics["robust_bit_accuracy"])
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    protocol = {"test_clips": len(clips), "shards": read_manifest(ctx.inputs["shards"], verify=False)["digest"],
                "distortions": cfg.distortions, "h264_crfs": cfg.h264_crfs, "seed": params.seed,
                "frames": frames, "size": size, "bits": config["bits"]}
    atomic_write_text(tmp / "protocol.json", json.dumps(protocol, indent=1, sort_keys=True))
    watermark_strip(as_float_clips(clips[:1])[0], tensors["marked"][0], tmp / "watermark.png",
                    title=f"{config['model']}: {names[0]} (PSNR {metrics['psnr']:.1f} dB)")
    frame_psnr_plot(tensors["frame_psnr"], tmp / "frame_psnr.png",
                    title=f"per-frame PSNR, spread {metrics['frame_psnr_std']:.2f} dB")
    robustness = [{"distortion": k.split("/", 1)[1], "bit_accuracy": v} for k, v in metrics.items()
                  if k.startswith("bit_accuracy/")]
    summary = [{"model": config["model"], "psnr_db": metrics["psnr"], "ssim": metrics["ssim"],
                "frame_psnr_std_db": metrics["frame_psnr_std"], "frame_psnr_min_db": metrics["frame_psnr_min"],
                "params": metrics["params"], "macs_embed": metrics["macs_embed"],
                "macs_extract": metrics["macs_extract"], "clips_per_s": metrics["clips_per_s"]}]
    md = (f"- {len(clips)} held-out clips, {frames} frames of {size}×{size}, {config['bits']}-bit random messages; "
          "fidelity on the saved (8-bit) clips; MACs per clip\n\n" + markdown_table(summary, floatfmt="{:.3f}")
          + "\n\n" + markdown_table(robustness, floatfmt="{:.3f}") + "\n\n"
          + f"![watermark]({(ctx.out / 'watermark.png').resolve().as_uri()})\n"
          + f"![per-frame PSNR]({(ctx.out / 'frame_psnr.png').resolve().as_uri()})")
    return StageSummary(metrics=metrics, markdown=md, plots=["watermark.png", "frame_psnr.png"])
