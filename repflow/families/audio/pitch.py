"""Median fundamental frequency of a clip, to check pitch labels against what the audio really holds.

A normalised cross-correlation (NCCF) per frame; ``torchaudio.functional.detect_pitch_frequency`` was tried
and makes frequent octave errors on espeak voices (e.g. 138 Hz for a 262 Hz female voice).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["median_f0"]


def median_f0(wave: np.ndarray, sample_rate: int, *, fmin: float = 50.0, fmax: float = 500.0,
              frame_seconds: float = 0.03, hop_seconds: float = 0.01, min_nccf: float = 0.6) -> float:
    """Median F0 in Hz over the voiced frames of mono ``wave`` (T,), or NaN when none is voiced.

    A frame counts as voiced when its RMS is at least a tenth of the loudest frame's and its best NCCF over
    periods 1/fmax..1/fmin reaches ``min_nccf``. Its period is the shortest lag whose NCCF is within 90% of
    the best (so a multiple of the period is not taken for it), moved to the nearest NCCF peak.
    """
    x = np.asarray(wave, dtype=np.float64)
    frame, hop = int(frame_seconds * sample_rate), int(hop_seconds * sample_rate)
    lag_lo, lag_hi = int(sample_rate / fmax), int(sample_rate / fmin)
    starts = range(0, len(x) - frame - lag_hi, hop)
    if not starts:
        return float("nan")
    rms = np.array([np.sqrt(np.mean(x[s:s + frame] ** 2)) for s in starts])
    f0 = []
    for s, level in zip(starts, rms):
        if level < 0.1 * rms.max() or level == 0:
            continue
        a = x[s:s + frame]
        b = sliding_window_view(x[s + lag_lo:s + lag_hi + frame], frame)
        nccf = b @ a / np.sqrt((a @ a) * np.einsum("ij,ij->i", b, b) + 1e-12)
        best = nccf.max()
        if best < min_nccf:
            continue
        first = int(np.flatnonzero(nccf >= 0.9 * best)[0])
        peak = first + int(np.argmax(nccf[first:first + max(2, (lag_lo + first) // 4)]))
        f0.append(sample_rate / (lag_lo + peak))
    return float(np.median(f0)) if f0 else float("nan")
