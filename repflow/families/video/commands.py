"""``repflow watermark embed IN OUT --message HEX`` and ``repflow watermark extract VIDEO``: a user's video of any
length and size through the registered watermarker, clip by clip (:mod:`repflow.families.video.watermark`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from repflow.family import float_between, int_between

__all__ = ["add_commands", "load_registered_watermarker"]

DEFAULT_MODEL = "repflow-video-watermarker@champion"


def load_registered_watermarker(ref: str):
    """(watermarker in eval mode, its config) of the registered version ``ref`` (rebuilt from its safetensors)."""
    from repflow.checkpoints import load_state_strict, load_tensors
    from repflow.families.video.stages.train import build_from_config
    from repflow.registration import registered_checkpoint

    registered = registered_checkpoint(ref, family="video", what="a watermarker", needs=("watermarker.safetensors",))
    path = registered.folder / "watermarker.safetensors"
    state, config = load_tensors(path)
    model = build_from_config(config)
    load_state_strict(model, state, path)
    return model.eval(), config | {"ref": registered.ref}


def _cmd_embed(args: argparse.Namespace) -> int:
    from repflow import tracking
    from repflow.families.video.watermark import check_embed, embed_video, parse_message
    from repflow.sources import SourceError

    try:
        parse_message(args.message, 4 * len(args.message))  # the syntax now; the model's length L once it loads
    except ValueError as exc:
        raise SourceError(f"--message: {exc}") from None
    check_embed(Path(args.input), Path(args.output))
    tracking.configure(args.workdir, read_only=True)
    model, config = load_registered_watermarker(args.model)
    try:
        message = parse_message(args.message, config["bits"])
    except ValueError as exc:
        raise SourceError(f"--message: {exc}") from None
    r = embed_video(model, config["size"], config["frames"], Path(args.input), Path(args.output), message,
                    crf=args.crf, strength=args.strength)
    print(f"{r['in']} → {r['out']}: {r['frames']} frames of {r['width']}×{r['height']} at {r['fps']:.3g} fps, "
          f"message {args.message} ({config['bits']} bits) with {config['ref']}, strength {r['strength']:g}: "
          f"PSNR {r['psnr']:.2f} dB before H.264 (crf {args.crf})")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from repflow import tracking
    from repflow.media.video import VideoReader
    from repflow.families.video.watermark import extract_video

    VideoReader(Path(args.input)).close()  # a missing or undecodable file is one line before the model loads
    tracking.configure(args.workdir, read_only=True)
    model, config = load_registered_watermarker(args.model)
    r = extract_video(model, config["size"], config["frames"], Path(args.input))
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if k != "bits"} | {"model": config["ref"]}))
    else:
        print(f"message {r['message']}  confidence {r['confidence']:.3f}  ({r['clips']} clips, "
              f"{r['agreement']:.1%} of clip bits agree; {config['ref']})")
    return 0


def add_commands(subparsers, cli) -> None:
    from repflow.families.video.watermark import DEFAULT_STRENGTH, STRENGTH_RANGE

    w = subparsers.add_parser("watermark", help="embed or extract a message in a video with the registered "
                                                "watermarker")
    sub = w.add_subparsers(dest="watermark_command", required=True)
    e = sub.add_parser("embed", help="watermark a video (H.264 out, audio kept, written atomically)")
    e.add_argument("input", help="video file (mp4, mkv, avi, ...)")
    e.add_argument("output", help="video to write: .mp4, .m4v, .mov or .mkv")
    e.add_argument("--message", required=True, help="hexadecimal message of at most L bits (e.g. c0ffee42)")
    e.add_argument("--crf", type=int_between(0, 51), default=18,
                   help="libx264 constant quality of the output (0-51)")
    e.add_argument("--strength", type=float_between(*STRENGTH_RANGE), default=DEFAULT_STRENGTH,
                   help=f"scale of the watermark's residual ({STRENGTH_RANGE[0]:g}-{STRENGTH_RANGE[1]:g}): lower is "
                        f"less visible (PSNR + 6 dB per halving), higher survives harsher compression")
    x = sub.add_parser("extract", help="read the message of a watermarked video")
    x.add_argument("input", help="video file")
    x.add_argument("--json", action="store_true", help="print JSON")
    for p in (e, x):
        p.add_argument("--model", default=DEFAULT_MODEL, help="NAME@ALIAS or NAME/VERSION")
        p.add_argument("--workdir", default=".", help="project folder holding mlflow.db")
    e.set_defaults(func=_cmd_embed)
    x.set_defaults(func=_cmd_extract)
