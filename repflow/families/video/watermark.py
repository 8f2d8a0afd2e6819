"""Watermarking a user's video file of any length and size with a trained watermarker, clip by clip, at full
resolution.

The network works on clips of T frames at its training size S×S. A video's frames are taken T at a time
(the last, shorter group is padded by repeating its last frame, and only the real frames are written). Each
group is cut into S×S tiles at the frame's own resolution (:func:`tiles`: the frame is first padded on the
right and bottom, by repeating its edge pixels, to whole tiles). Tiles carry the message m and its
complement 1 − m in a checkerboard (:func:`tile_signs`: m where row + column is even). The network's residual
(watermarked − original) of each tile, times ``strength``, is added to the tile, the padding is cut off, and
the frames are clamped and rounded to 8 bits. Resizing the frame to S×S and
stretching one S×S residual back over it (what this module did before) leaves a blurred, blotchy mark at
25 dB; tiles keep the residual's own fine structure, so it can be several times weaker for the same bits.
``strength`` trades invisibility for robustness: PSNR rises by 20·log10(1/strength) dB as it falls.

Extraction tiles every group the same way and averages the decoder's logits over all tiles of all groups,
the complement tiles' logits negated and each tile weighted by its share of real (not padded) pixels, and
reads a bit as 1 where the mean logit is > 0. Why the checkerboard: the decoder reads a bias from the content
itself (an unmarked street video read as confidence 0.09 with one message everywhere); at a faint strength
that bias is as large as the mark's own signal, and as neighbouring tiles' biases are alike, the signed sum
cancels it (0.008 unmarked; 38 dB: 0.81-0.91 → 0.97-1.0 of the bits after CRF 23 on 16 frames of vtest).
The confidence is the mean over bits of |2·sigmoid(mean logit) − 1| (0: every bit a coin flip, 1: every bit
certain), and ``agreement`` is the share of groups whose own bits equal the final ones. Tiles sit on a
grid from the top-left corner, so a resized or cropped copy no longer lines up with it and reads worse.

The output is written through :class:`~repflow.media.video.VideoWriter`: H.264, the audio stream
copied unchanged, into a temporary file renamed into place only when complete.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repflow.families.video.models import Watermarker
from repflow.media.video import OUTPUT_FORMATS, VideoReader, VideoWriter
from repflow.progress import progress
from repflow.sources import SourceError

__all__ = ["parse_message", "format_message", "check_embed", "embed_video", "extract_video", "tiles", "untile",
           "embed_tiled", "tile_signs", "check_strength", "DEFAULT_STRENGTH", "STRENGTH_RANGE"]

DEFAULT_STRENGTH = 0.2
"""Residual scale of ``repflow watermark embed`` by default: the registered default watermarker's tiled
residual at this scale measured 38+ dB PSNR on held-out real videos with ≥ 0.95 bit accuracy after H.264 CRF
23 (``benchmarks/results/watermark_default.md``)."""
STRENGTH_RANGE = (0.01, 4.0)
"""Allowed ``strength``: below 0.01 no bit survives 8-bit rounding; above 4 the mark is a visible texture."""
TILE_BATCH = 64
"""Tiles per network call (bounds memory at any resolution: 64 clips of 3×T×S×S floats)."""


def parse_message(text: str, bits: int) -> torch.Tensor:
    """A hex string (``0x`` optional) → (1, bits) float tensor of its bits, most significant first, zero-padded
    on the left. A value needing more than ``bits`` bits is an error naming it."""
    digits = text.lower().removeprefix("0x")
    if not digits or any(c not in "0123456789abcdef" for c in digits):  # int() would take "-1", " 1", "1_0"
        raise ValueError(f"message {text!r} is not a hexadecimal number (digits 0-9 a-f only, e.g. 'c0ffee42')")
    value = int(digits, 16)
    if value.bit_length() > bits:
        raise ValueError(f"message {text!r} needs {value.bit_length()} bits; this model carries L = {bits} "
                         f"(at most {(bits + 3) // 4} hex digits, up to {hex((1 << bits) - 1)})")
    return torch.tensor([[(value >> (bits - 1 - i)) & 1 for i in range(bits)]], dtype=torch.float32)


def format_message(bits: torch.Tensor) -> str:
    """(L,) bits (0/1 or bool) → hex string of ceil(L/4) digits (the inverse of :func:`parse_message`)."""
    value = 0
    for b in bits.flatten().tolist():
        value = (value << 1) | int(b > 0.5)
    return f"{value:0{(bits.numel() + 3) // 4}x}"


def check_embed(src: str | Path, dst: str | Path) -> None:
    """Check what :func:`embed_video` will need before a model loads: ``dst`` an H.264 container
    (:data:`OUTPUT_FORMATS`) in an existing folder, ``src`` a video with even frame sides (yuv420p).
    Raises :class:`SourceError` naming the file and what is allowed."""
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in OUTPUT_FORMATS:
        raise SourceError(f"output {dst}: suffix {dst.suffix or '(none)'} is not one of {', '.join(OUTPUT_FORMATS)} "
                          f"(H.264 containers)")
    if not dst.parent.is_dir():
        raise SourceError(f"output {dst}: folder {dst.parent} does not exist")
    with VideoReader(src) as reader:
        width, height = reader.width, reader.height
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise SourceError(f"{src}: frames of {width}x{height}; H.264 output needs even sides: crop or pad it to "
                          f"{width - width % 2}x{height - height % 2} first (e.g. ffmpeg -vf crop=trunc(iw/2)*2:"
                          f"trunc(ih/2)*2)")


def _groups(reader: VideoReader, frames: int, strict: bool = False):
    """(uint8 (T, H, W, 3) group padded to T frames, number of real frames) for the whole video. A video of
    fewer than T frames is an error, found in its first group, before anything is written; ``strict``: so is
    a decode error part-way."""
    for index, chunk in enumerate(reader.chunks(frames, strict=strict)):
        real = len(chunk)
        if real < frames:
            if index == 0:
                raise SourceError(f"{reader.path} has {real} frame(s); the watermarker works on clips of T = "
                                  f"{frames} frames, so a video needs at least {frames}")
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], frames - real, axis=0)])
        yield chunk, real


def _to_clip(chunk: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) → float (1, 3, T, H, W) in [0, 1]."""
    return torch.from_numpy(chunk).permute(3, 0, 1, 2)[None].float().div(255)


def tiles(clip: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, T, H, W) clip → (tiles (n, 3, T, size, size), real (n,) share of each tile's pixels that lie in
    the frame, not in the padding). The frame is padded on the right and bottom by repeating its edge pixels
    to whole tiles; tiles are in row-major order."""
    _, c, t, h, w = clip.shape
    rows, cols = -(-h // size), -(-w // size)
    frames = clip[0].transpose(0, 1)
    padded = F.pad(frames, (0, cols * size - w, 0, rows * size - h), mode="replicate")
    grid = padded.reshape(t, c, rows, size, cols, size).permute(2, 4, 1, 0, 3, 5)
    real_h = torch.clamp(h - torch.arange(rows) * size, max=size).float()
    real_w = torch.clamp(w - torch.arange(cols) * size, max=size).float()
    return grid.reshape(rows * cols, c, t, size, size), (real_h[:, None] * real_w[None]).flatten() / size ** 2


def tile_signs(height: int, width: int, size: int) -> torch.Tensor:
    """(n,) +1 / −1 per tile of :func:`tiles` (row-major): +1 where row + column is even (the tile carries the
    message), −1 where odd (its complement)."""
    rows, cols = -(-height // size), -(-width // size)
    parity = (torch.arange(rows)[:, None] + torch.arange(cols)[None]) % 2
    return (1 - 2 * parity).flatten().float()


def untile(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`tiles`: (n, 3, T, S, S) tiles → the (1, 3, T, height, width) clip (padding cut)."""
    n, c, t, size, _ = grid.shape
    rows, cols = -(-height // size), -(-width // size)
    frames = grid.reshape(rows, cols, c, t, size, size).permute(3, 2, 0, 4, 1, 5)
    return frames.reshape(t, c, rows * size, cols * size)[..., :height, :width].transpose(0, 1)[None]


@torch.no_grad()
def embed_tiled(model: Watermarker, clip: torch.Tensor, message: torch.Tensor, size: int,
                strength: float = DEFAULT_STRENGTH) -> torch.Tensor:
    """Watermark a float (1, 3, T, H, W) clip in [0, 1] at its own resolution: ``clip + strength · residual``,
    the residual computed on each ``size``×``size`` tile with the (1, L) ``message`` or its complement
    (:func:`tile_signs`); not clamped."""
    grid, _ = tiles(clip, size)
    signs = tile_signs(*clip.shape[-2:], size)
    messages = torch.where(signs[:, None] > 0, message, 1 - message)
    residual = torch.cat([model.embed(part, bits) - part
                          for part, bits in zip(grid.split(TILE_BATCH), messages.split(TILE_BATCH))])
    return clip + strength * untile(residual, *clip.shape[-2:])


@torch.no_grad()
def _tile_logits(model: Watermarker, clip: torch.Tensor, size: int) -> torch.Tensor:
    """The (L,) logits of one clip: the decoder's logits of its tiles, the complement tiles' negated, weighted
    by their real pixels."""
    grid, real = tiles(clip, size)
    logits = torch.cat([model.extract(part) for part in grid.split(TILE_BATCH)])
    weights = tile_signs(*clip.shape[-2:], size) * real
    return (logits * weights[:, None]).sum(0) / real.sum()


def check_strength(strength: float) -> None:
    """A ValueError naming ``strength`` unless it is in :data:`STRENGTH_RANGE`."""
    low, high = STRENGTH_RANGE
    if not low <= strength <= high:
        raise ValueError(f"strength {strength!r} must be in {low}..{high} (the residual's scale; default "
                         f"{DEFAULT_STRENGTH})")


@torch.no_grad()
def embed_video(model: Watermarker, size: int, frames: int, src: str | Path, dst: str | Path, message: torch.Tensor,
                *, crf: int = 18, strength: float = DEFAULT_STRENGTH) -> dict:
    """Watermark ``src`` with ``message`` (1, L) into ``dst`` (H.264 at ``crf``, audio kept) at full resolution,
    the residual scaled by ``strength``; returns a summary (frames, size, fps, strength, PSNR of the written
    frames before encoding, in dB). A decode error part-way is a :class:`SourceError` and leaves no output
    (never a truncated video)."""
    src, dst = Path(src), Path(dst)
    if message.shape != (1, model.L):
        raise ValueError(f"message must be (1, {model.L}) bits, got {tuple(message.shape)}")
    check_strength(strength)
    model.eval()
    total, squared_error, pixels = 0, 0.0, 0
    with VideoReader(src) as reader:
        with VideoWriter(dst, fps=reader.fps, width=reader.width, height=reader.height, crf=crf,
                         audio_from=src if reader.has_audio else None) as writer:
            for chunk, real in progress(_groups(reader, frames, strict=True), desc=f"watermark embed {src.name}",
                                        unit="clip"):
                marked = embed_tiled(model, _to_clip(chunk), message, size, strength).clamp(0, 1)
                out = marked[0].permute(1, 2, 3, 0).mul(255).round().to(torch.uint8)[:real]
                squared_error += (out.float() - torch.from_numpy(chunk[:real]).float()).square().sum().item()
                pixels += out.numel()
                total += real
                writer.write(out.numpy())
            fps = reader.fps
            height, width = reader.height, reader.width
    mse = max(squared_error / pixels, 1e-10)
    return {"in": str(src), "out": str(dst), "frames": total, "width": width, "height": height, "fps": fps,
            "strength": strength, "psnr": 10 * float(np.log10(255.0 ** 2 / mse))}


@torch.no_grad()
def extract_video(model: Watermarker, size: int, frames: int, src: str | Path) -> dict:
    """The message in ``src``: ``message`` (hex), ``bits`` (L,), ``confidence`` and ``agreement`` in [0, 1] and
    the number of ``clips`` read (see the module docstring)."""
    src = Path(src)
    model.eval()
    with VideoReader(src) as reader:
        per_clip = torch.stack([_tile_logits(model, _to_clip(chunk), size) for chunk, _ in
                                progress(_groups(reader, frames), desc=f"watermark extract {src.name}", unit="clip")])
    mean = per_clip.mean(dim=0)
    bits = (mean > 0).float()
    return {"message": format_message(bits), "bits": bits, "clips": len(per_clip),
            "confidence": (2 * torch.sigmoid(mean) - 1).abs().mean().item(),
            "agreement": ((per_clip > 0).float() == bits).float().mean().item()}
