"""Watermarking a user's video file of any length and size with a trained watermarker, clip by clip.

The network works on clips of T frames at its training size S×S. A video's frames are taken T at a time
(the last, shorter group is padded by repeating its last frame, and only the real frames are written); each
group is resized to S×S (the whole frame, antialiased bilinear), the network's residual (watermarked −
original, at S×S) is resized back to the frame's size (bilinear) and added to the full-resolution frames,
which are clamped and rounded to 8 bits. This keeps the cost of a frame fixed whatever its resolution, as
image watermarkers do at high resolution (VideoSeal embeds at 256 px and upsamples its residual).
Extraction resizes every group the same way, averages the decoder's logits over all groups, and reads a bit
as 1 where the mean logit is > 0. Its confidence is the mean over bits of |2·sigmoid(mean logit) − 1|
(0: every bit a coin flip, 1: every bit certain), and ``agreement`` is the share of groups whose own bits
equal the final ones.

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

__all__ = ["parse_message", "format_message", "check_embed", "embed_video", "extract_video"]


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


def _resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize every frame of a (1, 3, T, H, W) clip to ``size`` (antialiased bilinear)."""
    n, c, t, h, w = clip.shape
    frames = clip.transpose(1, 2).reshape(n * t, c, h, w)
    frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    return frames.reshape(n, t, c, *size).transpose(1, 2)


@torch.no_grad()
def embed_video(model: Watermarker, size: int, frames: int, src: str | Path, dst: str | Path, message: torch.Tensor,
                *, crf: int = 18) -> dict:
    """Watermark ``src`` with ``message`` (1, L) into ``dst`` (H.264 at ``crf``, audio kept); returns a summary
    (frames, size, fps, PSNR of the written frames before encoding, in dB). A decode error part-way is a
    :class:`SourceError` and leaves no output (never a truncated video)."""
    src, dst = Path(src), Path(dst)
    if message.shape != (1, model.L):
        raise ValueError(f"message must be (1, {model.L}) bits, got {tuple(message.shape)}")
    model.eval()
    total, squared_error, pixels = 0, 0.0, 0
    with VideoReader(src) as reader:
        with VideoWriter(dst, fps=reader.fps, width=reader.width, height=reader.height, crf=crf,
                         audio_from=src if reader.has_audio else None) as writer:
            for chunk, real in progress(_groups(reader, frames, strict=True), desc=f"watermark embed {src.name}",
                                        unit="clip"):
                clip = _to_clip(chunk)
                small = _resize(clip, (size, size))
                residual = model.embed(small, message) - small
                marked = (clip + _resize(residual, clip.shape[-2:])).clamp(0, 1)
                out = marked[0].permute(1, 2, 3, 0).mul(255).round().to(torch.uint8)[:real]
                squared_error += (out.float() - torch.from_numpy(chunk[:real]).float()).square().sum().item()
                pixels += out.numel()
                total += real
                writer.write(out.numpy())
            fps = reader.fps
            height, width = reader.height, reader.width
    mse = max(squared_error / pixels, 1e-10)
    return {"in": str(src), "out": str(dst), "frames": total, "width": width, "height": height, "fps": fps,
            "psnr": 10 * float(np.log10(255.0 ** 2 / mse))}


@torch.no_grad()
def extract_video(model: Watermarker, size: int, frames: int, src: str | Path) -> dict:
    """The message in ``src``: ``message`` (hex), ``bits`` (L,), ``confidence`` and ``agreement`` in [0, 1] and
    the number of ``clips`` read (see the module docstring)."""
    src = Path(src)
    model.eval()
    logits = []
    with VideoReader(src) as reader:
        for chunk, _ in progress(_groups(reader, frames), desc=f"watermark extract {src.name}", unit="clip"):
            logits.append(model.extract(_resize(_to_clip(chunk), (size, size)))[0])
    per_clip = torch.stack(logits)
    mean = per_clip.mean(dim=0)
    bits = (mean > 0).float()
    return {"message": format_message(bits), "bits": bits, "clips": len(per_clip),
            "confidence": (2 * torch.sigmoid(mean) - 1).abs().mean().item(),
            "agreement": ((per_clip > 0).float() == bits).float().mean().item()}
