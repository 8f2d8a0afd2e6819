"""A user's own audio-visual clip: a video file with sound → an :class:`~repflow.families.av.clips.AVClip`.

Frames come from :class:`repflow.media.video.VideoReader` (PyAV), each cut to its centre square
and resized to ``size`` x ``size``; the first audio stream is decoded with PyAV, mixed to mono float by
FFmpeg's resampler and brought to ``sample_rate`` with torchaudio (the synthetic clips' resampler). The sound
is aligned to the pictures by the streams' start times (audio that starts later is preceded by silence, audio
that starts earlier loses its head) and then cut or padded with silence to exactly the T frames' length, so
``spectra`` row i is the sound of frame i at the file's own frame rate. Viseme, speaker and emotion labels
are unknown (-1).

Bad files are a :class:`~repflow.sources.SourceError` (a ValueError) naming the file: missing, not a video,
no audio stream, no decodable sound, or fewer than ``min_frames`` frames.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import torch
import torchaudio.functional as AF

from repflow.families.av.clips import (CLIP_FRAMES, FACE_SIZE, N_FFT, SAMPLE_RATE, AVClip, clip_samples,
                                       frame_spectra)
from repflow.media.video import VideoReader
from repflow.sources import SourceError

__all__ = ["read_user_clip", "SourceError"]

_DECODE_ERRORS = (av.FFmpegError, OSError, UnicodeDecodeError)


def _seconds(value: int | None, time_base) -> float:
    return float(value * time_base) if value is not None and time_base is not None else 0.0


def _decode_audio(path: Path) -> tuple[np.ndarray, int, float]:
    """Mono float32 samples of the first audio stream, their rate in Hz, and how many seconds after the first
    video stream's start the sound starts."""
    try:
        with av.open(str(path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            video_start = _seconds(video.start_time, video.time_base)
            to_mono = av.AudioResampler(format="flt", layout="mono")
            chunks, audio_start = [], None
            for frame in container.decode(audio):
                if audio_start is None:
                    audio_start = float(frame.time) if frame.time is not None else _seconds(audio.start_time,
                                                                                             audio.time_base)
                chunks.extend(f.to_ndarray().reshape(-1) for f in to_mono.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in to_mono.resample(None))
            rate = audio.codec_context.sample_rate
    except _DECODE_ERRORS as exc:
        raise SourceError(f"{path}: its audio stream does not decode ({type(exc).__name__}: {exc})") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not samples.size or not rate:
        raise SourceError(f"{path}: its audio stream holds no decodable sound")
    return samples, int(rate), (audio_start or 0.0) - video_start


def read_user_clip(path: str | Path, *, size: int = FACE_SIZE, sample_rate: int = SAMPLE_RATE,
                   min_frames: int = CLIP_FRAMES, max_frames: int | None = None, n_fft: int = N_FFT) -> AVClip:
    """The video file at ``path`` (anything FFmpeg reads: mp4, mkv, mov, avi, webm, ...) as an AVClip:
    its first ``max_frames`` frames (all when None) resized to ``size`` x ``size``, at the file's fps, and
    its sound at ``sample_rate`` Hz with ``n_fft`` spectra aligned to those frames.

    ``min_frames`` (default :data:`CLIP_FRAMES`, one training sequence): fewer decoded frames is an error.
    """
    path = Path(path)
    for key, value, low in (("size", size, 16), ("min_frames", min_frames, 1), ("n_fft", n_fft, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key} {value!r} must be an integer >= {low}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 48000:
        raise ValueError(f"sample_rate {sample_rate!r} must be an integer in 8000..48000 (Hz)")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < min_frames):
        raise ValueError(f"max_frames {max_frames!r} must be None or an integer >= min_frames ({min_frames})")
    with VideoReader(path) as reader:
        if not reader.has_audio:
            raise SourceError(f"{path} has no audio stream; an audio-visual clip needs sound with its pictures")
        frames = list(itertools.islice(reader.frames(square=size), max_frames))
        fps = reader.fps
    if len(frames) < min_frames:
        raise SourceError(f"{path} has {len(frames)} video frames, fewer than min_frames={min_frames}")
    samples, rate, delay = _decode_audio(path)
    if rate != sample_rate:
        samples = AF.resample(torch.from_numpy(samples), rate, sample_rate).numpy()
    shift = int(round(delay * sample_rate))
    samples = np.concatenate([np.zeros(shift, np.float32), samples]) if shift > 0 else samples[-shift:]
    audio = np.zeros(clip_samples(len(frames), fps, sample_rate), np.float32)
    audio[:min(len(audio), len(samples))] = samples[:len(audio)]
    return AVClip(frames=np.stack(frames), audio=audio,
                  spectra=frame_spectra(audio, sample_rate, fps, len(frames), n_fft=n_fft),
                  visemes=np.full(len(frames), -1, np.int64), fps=float(fps), sample_rate=sample_rate,
                  speaker=-1, emotion=-1, text="", name=str(path))
