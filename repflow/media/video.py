"""Video files in and out through PyAV (the ``av`` wheel bundles FFmpeg, so nothing outside pip is needed).

- :func:`read_video` decodes every frame to uint8 RGB (optionally shrunk to a centre square as it goes);
  :class:`VideoReader` streams a video of any length in blocks of frames.
- :func:`write_video` (all frames at once) and :class:`VideoWriter` (block by block) encode H.264 (libx264,
  yuv420p, constant quality ``crf``) into a temporary file beside the target and rename it into place only
  once the file is complete, so a failed write never leaves a half-written file; the audio stream of another
  file can be copied in unchanged (remuxed, not re-encoded), which is how a watermarked video keeps its sound.
- :func:`h264_roundtrip` encodes frames with libx264 in memory and decodes them back: the real-compression
  distortion a watermark is evaluated under.

H.264 in yuv420p stores colour at half resolution in both directions, so both frame sides must be even;
odd sizes are an error (rather than silently padded, which would change the size a reader gets back).
RGB <-> YUV conversion is FFmpeg's (swscale, BT.601) in both directions.
"""
from __future__ import annotations

import io
import itertools
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image

from repflow.sources import SourceError

__all__ = ["Video", "VideoReader", "VideoWriter", "read_video", "square_resize", "write_video",
           "h264_roundtrip", "CRF_RANGE", "OUTPUT_FORMATS"]

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


class VideoReader:
    """An open video file, decoded frame by frame so a video of any length streams through in bounded memory.

    ``fps``, ``has_audio``, ``width``, ``height`` describe its first video stream. A file that does not open
    as a container or has no video stream raises :class:`SourceError` naming it. Use as a context manager.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        try:
            self._container = av.open(str(self.path))
        except _DECODE_ERRORS as exc:
            raise SourceError(f"{self.path} is not a decodable video ({type(exc).__name__}: {exc})") from exc
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{self.path} is not a video: it has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.fps = _fps(self._stream)
        self.has_audio = bool(self._container.streams.audio)
        self.width, self.height = self._stream.codec_context.width, self._stream.codec_context.height

    def frames(self, *, square: int | None = None, strict: bool = False) -> Iterator[np.ndarray]:
        """Every frame in order as uint8 (H, W, 3) RGB, or (square, square, 3) when ``square`` is given
        (:func:`square_resize`). A stream that yields no frame raises :class:`SourceError`; one that breaks
        off part-way ends early, keeping the frames decoded so far, unless ``strict`` (then it raises too)."""
        count = 0
        try:
            for frame in self._container.decode(self._stream):
                count += 1
                yield (frame.to_ndarray(format="rgb24") if square is None
                       else square_resize(frame.to_image(), square))
        except _DECODE_ERRORS as exc:
            if not count or strict:
                raise SourceError(f"{self.path} is not a decodable video ({type(exc).__name__}: {exc}, after "
                                  f"{count} frames)") from exc
        if not count:
            raise SourceError(f"{self.path} is not a decodable video: its video stream has no frames")

    def chunks(self, length: int, *, square: int | None = None, strict: bool = False) -> Iterator[np.ndarray]:
        """The frames in consecutive uint8 (length, H, W, 3) blocks; the last one may be shorter."""
        block: list[np.ndarray] = []
        for frame in self.frames(square=square, strict=strict):
            block.append(frame)
            if len(block) == length:
                yield np.stack(block)
                block = []
        if block:
            yield np.stack(block)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_video(path: str | Path, *, max_frames: int | None = None, square: int | None = None) -> Video:
    """Decode the first video stream of ``path`` (at most ``max_frames`` frames, from the start) into memory.

    ``square``: cut every frame to its centre square and resize it to ``square`` x ``square``
    (:func:`square_resize`) while decoding, so a long video costs only its small frames in memory.
    Errors as :class:`VideoReader`.
    """
    for key, value in (("max_frames", max_frames), ("square", square)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key} {value!r} must be an integer >= 1 or None")
    with VideoReader(path) as reader:
        frames = list(itertools.islice(reader.frames(square=square), max_frames))
        return Video(np.stack(frames), reader.fps, reader.has_audio)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    _check_size(frames.shape[2], frames.shape[1])
    return np.ascontiguousarray(frames)


def _check_size(width: int, height: int) -> None:
    if width < 2 or height < 2 or height % 2 or width % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sides, got {width}x{height}; crop or pad the frames "
                         f"to {width + width % 2}x{height + height % 2} or {width - width % 2}x{height - height % 2}")


def _check_crf(crf: int) -> None:
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
        raise ValueError(f"crf {crf!r} must be an integer in {CRF_RANGE[0]}..{CRF_RANGE[1]} (libx264)")


def _rate(fps: float) -> Fraction:
    if not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
        raise ValueError(f"fps {fps!r} must be a number in (0, 1000]")
    return Fraction(fps).limit_denominator(1001)


def _add_h264(container: av.container.OutputContainer, width: int, height: int, rate: Fraction, crf: int,
              threads: int) -> av.video.stream.VideoStream:
    stream = container.add_stream("libx264", rate=rate, options={"crf": str(int(crf))})
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.codec_context.thread_count = threads
    return stream


def _encode(container: av.container.OutputContainer, stream: av.video.stream.VideoStream, frames: np.ndarray,
            first_pts: int) -> None:
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = first_pts + i
        container.mux(stream.encode(frame))


class VideoWriter:
    """An H.264 video being written: :meth:`write` blocks of frames as they come, and the file appears at
    ``path`` only when the ``with`` block ends without an exception.

    Frames: uint8 (T, height, width, 3) RGB, encoded with libx264 at constant quality ``crf`` (18, the default,
    is visually near-lossless) and ``fps``; the container follows the suffix (:data:`OUTPUT_FORMATS`); both
    sides must be even (yuv420p).

    ``audio_from``: a media file whose first audio stream is copied packet for packet into the output (no
    re-encoding, so the sound is bit-identical) when the writer closes; a file without audio adds none. The
    container of ``path`` must accept that audio codec (mp4 takes AAC/MP3, mkv nearly anything), else the
    write fails.

    The file is written as a hidden temporary file in the same folder and renamed onto ``path`` at the end;
    on any failure (or when the ``with`` block raises) the temporary file is removed and ``path`` is left as
    it was. Arguments are checked before the temporary file is made.
    """

    def __init__(self, path: str | Path, *, fps: float, width: int, height: int, crf: int = 18,
                 audio_from: str | Path | None = None):
        self.path = Path(path)
        _check_size(width, height)
        _check_crf(crf)
        rate = _rate(fps)
        container_format = _format_for(self.path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"folder {self.path.parent} of output video {self.path} does not exist")
        if audio_from is not None and not Path(audio_from).is_file():
            raise SourceError(f"audio_from {audio_from} does not exist")
        handle, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f"{self.path.suffix}.tmp",
                                             dir=self.path.parent)
        os.close(handle)
        self._audio: av.container.InputContainer | None = None
        try:
            self._container = av.open(self._tmp, "w", format=container_format)
            if audio_from is not None:
                self._audio = _copy_audio(self._container, Path(audio_from))
            self._stream = _add_h264(self._container, width, height, rate, crf, threads=0)
        except BaseException:
            self._discard()
            raise
        self.width, self.height, self.frames_written = width, height, 0

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 (T, height, width, 3) RGB frames."""
        frames = _check_frames(frames)
        if frames.shape[1:3] != (self.height, self.width):
            raise ValueError(f"frames of {frames.shape[2]}x{frames.shape[1]} written to a {self.width}x"
                             f"{self.height} video {self.path}")
        _encode(self._container, self._stream, frames, self.frames_written)
        self.frames_written += len(frames)

    def _finish(self) -> None:
        if not self.frames_written:
            raise ValueError(f"no frames were written to {self.path}")
        self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            _mux_audio(self._container, self._audio)
            self._audio.close()
        self._container.close()
        os.replace(self._tmp, self.path)

    def _discard(self) -> None:
        for handle in (getattr(self, "_container", None), self._audio):
            if handle is not None:
                try:
                    handle.close()
                except (av.FFmpegError, OSError):
                    pass
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise


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
    """Write uint8 (T, H, W, 3) RGB ``frames`` to ``path`` at once (see :class:`VideoWriter`: H.264 at
    constant quality ``crf``, audio copied from ``audio_from``, written to a temporary file then renamed)."""
    frames = _check_frames(frames)
    with VideoWriter(path, fps=fps, width=frames.shape[2], height=frames.shape[1], crf=crf,
                     audio_from=audio_from) as writer:
        writer.write(frames)
    return Path(path)


def _format_for(path: Path) -> str:
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"output video {path}: suffix must be one of {', '.join(OUTPUT_FORMATS)} (H.264 "
                         f"containers)")
    return OUTPUT_FORMATS[path.suffix.lower()]


def h264_roundtrip(frames: np.ndarray, crf: int) -> np.ndarray:
    """Encode uint8 (T, H, W, 3) RGB ``frames`` with libx264 at ``crf`` (default preset, yuv420p, one encoder and
    one decoder thread so the result is the same on every machine) into an in-memory mp4 and decode it back: uint8
    (T, H, W, 3). Even at a low crf the pixels change (yuv420p halves the colour resolution)."""
    frames = _check_frames(frames)
    _check_crf(crf)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = _add_h264(container, frames.shape[2], frames.shape[1], Fraction(25), crf, threads=1)
        _encode(container, stream, frames, 0)
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer, "r", format="mp4") as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "NONE", 1
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    if decoded.shape != frames.shape:
        raise RuntimeError(f"H.264 round trip gave {decoded.shape} for {frames.shape} frames")
    return decoded
