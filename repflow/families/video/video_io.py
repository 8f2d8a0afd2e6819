"""Video files in and out through PyAV (the ``av`` wheel bundles FFmpeg, so nothing outside pip is needed).

- :func:`read_video` decodes every frame to uint8 RGB (optionally shrunk to a centre square as it goes).
- :func:`write_video` encodes H.264 (libx264, yuv420p, constant quality ``crf``) into a temporary file beside
  the target and renames it into place only once the file is complete, so a failed write never leaves a
  half-written file; the audio stream of another file can be copied in unchanged (remuxed, not re-encoded),
  which is how a watermarked video keeps its sound.
- :func:`h264_roundtrip` encodes frames with libx264 in memory and decodes them back: the real-compression
  distortion a watermark is evaluated under.

H.264 in yuv420p stores colour at half resolution in both directions, so both frame sides must be even;
odd sizes are an error (rather than silently padded, which would change the size a reader gets back).
RGB <-> YUV conversion is FFmpeg's (swscale, BT.601) in both directions.
"""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from repflow.sources import SourceError

__all__ = ["Video", "SourceError", "read_video", "square_resize", "write_video", "h264_roundtrip",
           "CRF_RANGE", "OUTPUT_FORMATS"]

CRF_RANGE = (0, 51)
"""libx264's constant-rate-factor range: 0 is lossless, 23 its default, 51 the coarsest."""
_DECODE_ERRORS = (av.FFmpegError, OSError, UnicodeDecodeError)
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Output suffix -> FFmpeg muxer; all of them carry H.264."""


@dataclass
class Video:
    """``frames``: uint8 (T, H, W, 3) RGB; ``fps``: frames per second (the stream's average rate);
    ``has_audio``: the file has at least one audio stream."""

    frames: np.ndarray
    fps: float
    has_audio: bool


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 25.0


def square_resize(image: Image.Image, size: int) -> np.ndarray:
    """The centre square of ``image`` resized to uint8 (size, size, 3) RGB with PIL's bicubic filter, which is
    antialiased when it shrinks."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC,
                                         box=(left, top, left + side, top + side))
    return np.asarray(square, dtype=np.uint8)


def read_video(path: str | Path, *, max_frames: int | None = None, square: int | None = None) -> Video:
    """Decode the first video stream of ``path`` (at most ``max_frames`` frames, from the start).

    ``square``: cut every frame to its centre square and resize it to ``square`` x ``square``
    (:func:`square_resize`) while decoding, so a long video costs only its small frames in memory.
    A file that does not open as a container, has no video stream, or yields no frame raises
    :class:`SourceError` naming the file; a stream that breaks off part-way keeps the frames decoded so far.
    """
    path = Path(path)
    for key, value in (("max_frames", max_frames), ("square", square)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key} {value!r} must be an integer >= 1 or None")
    if not path.is_file():
        raise SourceError(f"video file {path} does not exist")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SourceError(f"{path} is not a video: it has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps, has_audio = _fps(stream), bool(container.streams.audio)
            try:
                for frame in container.decode(stream):
                    frames.append(frame.to_ndarray(format="rgb24") if square is None
                                  else square_resize(frame.to_image(), square))
                    if max_frames is not None and len(frames) >= max_frames:
                        break
            except _DECODE_ERRORS:
                if not frames:
                    raise
    except _DECODE_ERRORS as exc:
        raise SourceError(f"{path} is not a decodable video ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise SourceError(f"{path} is not a decodable video: its video stream has no frames")
    return Video(np.stack(frames), fps, has_audio)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sides, got {width}x{height}; crop or pad the frames "
                         f"to {width + width % 2}x{height + height % 2} or {width - width % 2}x{height - height % 2}")
    return np.ascontiguousarray(frames)


def _check_crf(crf: int) -> None:
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
        raise ValueError(f"crf {crf!r} must be an integer in {CRF_RANGE[0]}..{CRF_RANGE[1]} (libx264)")


def _rate(fps: float) -> Fraction:
    if not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
        raise ValueError(f"fps {fps!r} must be a number in (0, 1000]")
    return Fraction(fps).limit_denominator(1001)


def _encode(container: av.container.OutputContainer, frames: np.ndarray, rate: Fraction, crf: int,
            threads: int) -> None:
    stream = container.add_stream("libx264", rate=rate, options={"crf": str(int(crf))})
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuv420p"
    stream.codec_context.thread_count = threads
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _copy_audio(container: av.container.OutputContainer, audio_from: Path) -> av.container.InputContainer | None:
    """Open ``audio_from`` and add a copy of its first audio stream to ``container`` (None if it has none)."""
    try:
        source = av.open(str(audio_from))
    except _DECODE_ERRORS as exc:
        raise SourceError(f"audio_from {audio_from} does not open ({type(exc).__name__}: {exc})") from exc
    if not source.streams.audio:
        source.close()
        return None
    container.add_stream_from_template(source.streams.audio[0])
    return source


def _mux_audio(container: av.container.OutputContainer, source: av.container.InputContainer) -> None:
    out_stream = next(s for s in container.streams if s.type == "audio")
    for packet in source.demux(source.streams.audio[0]):
        if packet.dts is None:
            continue
        packet.stream = out_stream
        container.mux(packet)


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 18,
                audio_from: str | Path | None = None) -> Path:
    """Write uint8 (T, H, W, 3) RGB ``frames`` to ``path`` as H.264 at ``fps`` and constant quality ``crf``
    (18, the default, is visually near-lossless). The container follows the suffix (``.mp4``, ``.mkv``, ...).

    ``audio_from``: a media file whose first audio stream is copied packet for packet into the output (no
    re-encoding, so the sound is bit-identical); a file without audio adds none. The container of ``path``
    must accept that audio codec (mp4 takes AAC/MP3, mkv nearly anything), else the write fails.

    The file is written as a hidden temporary file in the same folder and renamed onto ``path`` at the end;
    on any failure the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    frames = _check_frames(frames)
    _check_crf(crf)
    rate = _rate(fps)
    container_format = _format_for(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} of output video {path} does not exist")
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp", dir=path.parent)
    os.close(handle)
    try:
        audio = None
        with av.open(tmp_name, "w", format=container_format) as container:
            try:
                if audio_from is not None:
                    audio = _copy_audio(container, Path(audio_from))
                _encode(container, frames, rate, crf, threads=0)
                if audio is not None:
                    _mux_audio(container, audio)
            finally:
                if audio is not None:
                    audio.close()
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _format_for(path: Path) -> str:
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"output video {path}: suffix must be one of {', '.join(OUTPUT_FORMATS)} (H.264 "
                         f"containers)")
    return OUTPUT_FORMATS[path.suffix.lower()]


def h264_roundtrip(frames: np.ndarray, crf: int) -> np.ndarray:
    """Encode uint8 (T, H, W, 3) RGB ``frames`` with libx264 at ``crf`` (default preset, yuv420p, one thread so
    the result is the same on every machine) into an in-memory mp4 and decode it back: uint8 (T, H, W, 3).
    Even at a low crf the pixels change (yuv420p halves the colour resolution)."""
    frames = _check_frames(frames)
    _check_crf(crf)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        _encode(container, frames, Fraction(25), crf, threads=1)
    buffer.seek(0)
    with av.open(buffer, "r", format="mp4") as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    if decoded.shape != frames.shape:
        raise RuntimeError(f"H.264 round trip gave {decoded.shape} for {frames.shape} frames")
    return decoded
