"""``repflow upscale IN OUT --scale S``: a user's image of any size through the registered ×S model, tile by tile
(bounded memory, no seams: each tile sees ``--overlap`` LR pixels of context that are cropped away)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_commands", "upscale_file"]


def upscale_file(src: Path, dst: Path, scale: int, ref: str | None = None, *, tile: int = 192,
                 overlap: int = 40) -> dict:
    """Upscale ``src`` into ``dst`` (PNG, written to a temporary file, then renamed) with the registered model."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from repflow import tracking
    from repflow.checkpoints import load_state_strict, load_tensors
    from repflow.families.sr.inference import upscale_tiled
    from repflow.families.sr.stages.train import build_from_config
    from repflow.registration import registered_checkpoint
    from repflow.sources import SourceError

    ref = ref or f"repflow-sr-x{scale}@champion"
    registered = registered_checkpoint(ref, family="sr", what="a model", needs=())
    trained = int(registered.tags.get("repflow.scale", scale))
    if trained != scale:
        raise tracking.RegistryError(f"{ref} was trained for ×{trained}, not --scale {scale}; use "
                                     f"repflow-sr-x{scale}@champion (registered scales: repflow models list)")
    try:
        with Image.open(src) as im:
            image = np.array(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise SourceError(f"{src}: cannot read it as an image ({exc})") from None
    ckpt = registered.folder
    state, config = load_tensors(ckpt / f"x{scale}.safetensors")
    side = int(config.get("lr_patch", 1))
    if min(image.shape[:2]) < side:
        raise SourceError(f"{src}: {image.shape[1]}×{image.shape[0]} px is smaller than one LR training patch "
                          f"({side}×{side} px) of the ×{scale} model")
    model = build_from_config(config)
    load_state_strict(model, state, ckpt / f"x{scale}.safetensors")
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
    with torch.no_grad():
        y = upscale_tiled(model.eval(), x, scale, tile=tile, overlap=overlap).clamp(0, 1)
    out = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp.png")
    Image.fromarray(out).save(tmp, format="PNG")
    os.replace(tmp, dst)
    return {"in": str(src), "out": str(dst), "model": registered.ref, "scale": scale,
            "in_size": [image.shape[1], image.shape[0]], "out_size": [out.shape[1], out.shape[0]]}


def _cmd_upscale(args: argparse.Namespace) -> int:
    from repflow import tracking

    tracking.configure(args.workdir)
    r = upscale_file(Path(args.input), Path(args.output), args.scale, args.model, tile=args.tile, overlap=args.overlap)
    print(f"{r['in']} ({r['in_size'][0]}×{r['in_size'][1]}) → {r['out']} ({r['out_size'][0]}×{r['out_size'][1]}) "
          f"with {r['model']}")
    return 0


def add_commands(subparsers, cli) -> None:
    u = subparsers.add_parser("upscale", help="super-resolve an image with the registered SR model of --scale")
    u.add_argument("input", help="image file (png, jpg, ...)")
    u.add_argument("output", help="PNG to write (replaced atomically)")
    u.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    u.add_argument("--model", default=None, help="NAME@ALIAS or NAME/VERSION (default repflow-sr-x<scale>@champion)")
    u.add_argument("--tile", type=int, default=192, help="LR tile side (px), context included")
    u.add_argument("--overlap", type=int, default=40, help="LR context on each side of a tile's core (px)")
    u.add_argument("--workdir", default=".", help="project folder holding mlflow.db")
    u.set_defaults(func=_cmd_upscale)
