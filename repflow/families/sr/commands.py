"""``repflow upscale IN OUT --scale S``: a user's image of any size through the registered ×S model, tile by tile
(memory: the uint8 input, one strip of output and one tile; no seams: each tile sees ``--overlap`` LR pixels of
context that are cropped away)."""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from repflow.family import int_between

if TYPE_CHECKING:
    import numpy as np

__all__ = ["add_commands", "upscale_file", "check_upscale", "MAX_OUTPUT_MEGAPIXELS"]


MAX_OUTPUT_MEGAPIXELS = 600
"""The largest output ``repflow upscale`` writes: 600 MP, 1.8 GB as uint8 RGB (a 36 MP photo at ×4 is 576 MP).
The input is held whole (at ×2 that is a 150 MP photo, 450 MB), so this bounds the command's memory."""


def check_upscale(src: Path, dst: Path, scale: int, tile: int, overlap: int) -> tuple[int, int]:
    """The (width, height) of ``src`` read from its header, after checking every argument of ``repflow upscale``
    before the model loads: ``--tile`` > 2·``--overlap``, ``dst`` a PNG in an existing folder, ``src`` an image
    whose output at ×``scale`` is at most :data:`MAX_OUTPUT_MEGAPIXELS`. Raises :class:`SourceError`."""
    from PIL import Image, UnidentifiedImageError

    from repflow.sources import SourceError

    if tile <= 2 * overlap:
        raise SourceError(f"--tile {tile} must exceed 2 × --overlap = {2 * overlap}: each tile needs a core of at "
                          f"least one pixel besides its {overlap} px of context per side")
    if dst.suffix.lower() != ".png":
        raise SourceError(f"output {dst}: upscale writes PNG; name it {dst.with_suffix('.png').name}")
    if not dst.parent.is_dir():
        raise SourceError(f"output {dst}: folder {dst.parent} does not exist")
    if not src.is_file():
        raise SourceError(f"{src}: no such file")
    try:
        with _no_pixel_limit(), Image.open(src) as im:  # reads the header only
            width, height = im.size
    except (OSError, UnidentifiedImageError) as exc:
        raise SourceError(f"{src}: cannot read it as an image ({exc})") from None
    megapixels = width * height * scale * scale / 1e6
    if megapixels > MAX_OUTPUT_MEGAPIXELS:
        raise SourceError(f"{src}: {width}×{height} px at ×{scale} is {megapixels:.0f} MP; upscale writes at most "
                          f"{MAX_OUTPUT_MEGAPIXELS} MP ({MAX_OUTPUT_MEGAPIXELS * 3 / 1000:.1f} GB of pixels): cut "
                          f"the image into parts or use a smaller --scale")
    return width, height


@contextlib.contextmanager
def _no_pixel_limit() -> Iterator[None]:
    """Pillow's decompression-bomb refusal off: :func:`check_upscale` applies this command's own limit."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _read_rgb(src: Path) -> np.ndarray:
    """uint8 (H, W, 3) pixels of ``src`` (checked by :func:`check_upscale` first)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from repflow.sources import SourceError

    try:
        with _no_pixel_limit(), Image.open(src) as im:
            im.load()
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise SourceError(f"{src}: cannot read it as an image ({exc})") from None


def upscale_file(src: Path, dst: Path, scale: int, ref: str | None = None, *, tile: int = 192,
                 overlap: int = 40) -> dict:
    """Upscale ``src`` into ``dst`` (PNG, written to a temporary file, then renamed) with the registered model.

    Memory: the uint8 input, one row strip of the uint8 output (one tile high) and one tile's floats; each
    strip is compressed into the PNG as its last tile finishes (:class:`~repflow.families.sr.png.PngRowWriter`),
    so memory does not grow with the output."""
    import numpy as np
    import torch

    from repflow import tracking
    from repflow.checkpoints import load_state_strict, load_tensors
    from repflow.families.sr.inference import upscaled_tiles
    from repflow.families.sr.png import PngRowWriter
    from repflow.families.sr.stages.train import build_from_config
    from repflow.registration import registered_checkpoint
    from repflow.sources import SourceError

    src, dst = Path(src), Path(dst)
    check_upscale(src, dst, scale, tile, overlap)
    ref = ref or f"repflow-sr-x{scale}@champion"
    registered = registered_checkpoint(ref, family="sr", what="a model", needs=())
    trained = int(registered.tags.get("repflow.scale", scale))
    if trained != scale:
        raise tracking.RegistryError(f"{ref} was trained for ×{trained}, not --scale {scale}; use "
                                     f"repflow-sr-x{scale}@champion (registered scales: repflow models list)")
    image = _read_rgb(src)
    ckpt = registered.folder
    state, config = load_tensors(ckpt / f"x{scale}.safetensors")
    side = int(config.get("lr_patch", 1))
    if min(image.shape[:2]) < side:
        raise SourceError(f"{src}: {image.shape[1]}×{image.shape[0]} px is smaller than one LR training patch "
                          f"({side}×{side} px) of the ×{scale} model")
    model = build_from_config(config)
    load_state_strict(model, state, ckpt / f"x{scale}.safetensors")
    height, width = image.shape[:2]

    def window(r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        return torch.from_numpy(image[r0:r1, c0:c1]).permute(2, 0, 1)[None].float().div(255)

    strip = np.empty((0, scale * width, 3), np.uint8)
    with PngRowWriter(dst, scale * width, scale * height) as png:
        for (r0, r1, c0, c1), core in upscaled_tiles(model.eval(), window, height, width, scale, tile=tile,
                                                     overlap=overlap):
            if c0 == 0:
                strip = np.empty((r1 - r0, scale * width, 3), np.uint8)
            strip[:, c0:c1] = core[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            if c1 == scale * width:  # the strip's last tile: its rows are done
                png.write(strip)
    return {"in": str(src), "out": str(dst), "model": registered.ref, "scale": scale,
            "in_size": [width, height], "out_size": [scale * width, scale * height]}


def _cmd_upscale(args: argparse.Namespace) -> int:
    from repflow import tracking

    check_upscale(Path(args.input), Path(args.output), args.scale, args.tile, args.overlap)
    tracking.configure(args.workdir, read_only=True)
    r = upscale_file(Path(args.input), Path(args.output), args.scale, args.model, tile=args.tile, overlap=args.overlap)
    print(f"{r['in']} ({r['in_size'][0]}×{r['in_size'][1]}) → {r['out']} ({r['out_size'][0]}×{r['out_size'][1]}) "
          f"with {r['model']}")
    return 0


def add_commands(subparsers, cli) -> None:
    u = subparsers.add_parser("upscale", help="super-resolve an image with the registered SR model of --scale")
    u.add_argument("input", help=f"image file (png, jpg, ...); its output may have at most {MAX_OUTPUT_MEGAPIXELS} MP")
    u.add_argument("output", help="PNG to write (replaced atomically)")
    u.add_argument("--scale", type=int, required=True, choices=[2, 3, 4])
    u.add_argument("--model", default=None, help="NAME@ALIAS or NAME/VERSION (default repflow-sr-x<scale>@champion)")
    u.add_argument("--tile", type=int_between(1), default=192, help="LR tile side (px), context included")
    u.add_argument("--overlap", type=int_between(0), default=40,
                   help="LR context on each side of a tile's core (px)")
    u.add_argument("--workdir", default=".", help="project folder holding mlflow.db")
    u.set_defaults(func=_cmd_upscale)
