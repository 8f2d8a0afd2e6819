"""espeak-ng as an audio source: is it deterministic, how fast is it, and does its pitch parameter move F0?

The audio family labels clips by bands of espeak's pitch parameter, which is only a fair label if the
measured fundamental frequency follows it. Part 1 synthesises fixed words x accents at pitch 10 / 50 / 90 per
voice variant and reports the median F0 (:func:`repflow.families.audio.pitch.median_f0`); part 2 reads the
``espeak`` source as the family does and reports F0 per pitch band, male and female variants apart.

    python -m benchmarks.audio_espeak [--clips-per-word 10] [--timing-clips 300]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

os.environ.setdefault("REPFLOW_PROGRESS", "0")

from benchmarks._common import write_results  # noqa: E402
from repflow.media import speech  # noqa: E402
from repflow.families.audio.pitch import median_f0  # noqa: E402
from repflow.families.audio.sources import read_audio_source  # noqa: E402

WORDS = ("zero", "seven", "left", "go", "yes")
ACCENTS = ("en-us", "en-gb-scotland", "en-029")
VARIANTS = ("m1", "m3", "m7", "f1", "f3", "f5")


def deterministic() -> bool:
    """Same call twice, with other voices in between, gives the same bytes."""
    first, _ = speech.synthesize("seven", voice="en-gb-scotland+f3", rate=160, pitch=42)
    speech.synthesize("left", voice="en-us+klatt2", rate=300, pitch=90)
    again, _ = speech.synthesize("seven", voice="en-gb-scotland+f3", rate=160, pitch=42)
    return first.tobytes() == again.tobytes()


def ms_per_clip(n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        speech.synthesize(WORDS[i % len(WORDS)], voice=f"{ACCENTS[i % 3]}+{VARIANTS[i % 6]}", rate=160,
                          pitch=i % 100)
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips-per-word", type=int, default=10, help="espeak source clips per word (part 2)")
    ap.add_argument("--timing-clips", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)

    rows = []
    for variant in VARIANTS:
        for pitch in (10, 50, 90):
            f0 = [median_f0(*speech.synthesize(w, voice=f"{a}+{variant}", rate=160, pitch=pitch))
                  for a in ACCENTS for w in WORDS]
            rows.append({"part": "pitch parameter", "variant": variant, "pitch": pitch, "clips": len(f0),
                         "median_f0_hz": float(np.nanmedian(f0)), "min_f0_hz": float(np.nanmin(f0)),
                         "max_f0_hz": float(np.nanmax(f0))})

    start = time.perf_counter()
    clips = read_audio_source("espeak", sample_rate=16000, seed=0, clips_per_word=args.clips_per_word)
    source_ms = (time.perf_counter() - start) / len(clips.waveforms) * 1000
    f0 = np.array([median_f0(w, clips.sample_rate) for w in clips.waveforms])
    bands = np.array(clips.labels["pitch_band"])
    sex = np.array(["female" if v.startswith("f") else "male" for v in clips.labels["voice"]])
    for group in ("male", "female"):
        for band in ("low", "mid", "high"):
            sel = (bands == band) & (sex == group)
            rows.append({"part": "source pitch band", "variant": group, "pitch": band, "clips": int(sel.sum()),
                         "median_f0_hz": float(np.nanmedian(f0[sel])), "min_f0_hz": float(np.nanmin(f0[sel])),
                         "max_f0_hz": float(np.nanmax(f0[sel]))})

    same = deterministic()
    synth_ms = ms_per_clip(args.timing_clips)
    notes = [f"byte-identical on repeat (other voices in between): {same}",
             f"synthesize: {synth_ms:.2f} ms/clip over {args.timing_clips} clips (one torch thread; the library is "
             "loaded afresh per clip)",
             f"read_audio_source('espeak', 16 kHz): {source_ms:.2f} ms/clip over {len(clips.waveforms)} clips, "
             "resampling included",
             f"F0 unvoiced (NaN) in {int(np.isnan(f0).sum())} of {len(f0)} source clips"]
    write_results("audio_espeak", "espeak-ng: determinism, speed, F0 against the pitch parameter", rows, notes,
                  {"deterministic": same, "synthesize_ms_per_clip": synth_ms, "source_ms_per_clip": source_ms,
                   "espeak": speech.espeak_version()})


if __name__ == "__main__":
    main()
