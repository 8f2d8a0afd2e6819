"""``repflow embed-audio FILE``: the registered audio encoder's embedding of a user's file, and every probe's
prediction. Reads the file with soundfile (wav, flac, ogg, ...), mixes it to mono, resamples it to the
encoder's rate and centres it in the encoder's window, as training did (reading only that window of a long
file)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["add_commands", "embed_file", "check_audio_file", "read_centre"]


RATE_DENOMINATOR_LIMIT = 1000
"""Resampling uses the rate ratio as a fraction up/down with down <= 1000: exact for the usual rates (44.1 kHz →
16 kHz is 160/441) and within 1e-6 for odd ones (44.101 kHz), whose exact ratio would need a sinc kernel of
tens of thousands of phases."""


def check_audio_file(path: Path) -> tuple[int, int]:
    """(sample rate in Hz, frames) of the audio file ``path`` from its header; :class:`SourceError` naming it
    when it is missing, not decodable, or empty."""
    import soundfile

    from repflow.sources import SourceError

    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError, OSError) as exc:
        raise SourceError(f"{path}: cannot decode it as audio ({exc})") from None
    if info.frames <= 0:
        raise SourceError(f"{path}: holds no samples")
    return info.samplerate, info.frames


def read_centre(path: Path, rate: int, samples: int) -> tuple[torch.Tensor, float]:
    """The mono waveform of ``path`` resampled to ``rate`` Hz and cut to its centre ``samples`` (shorter when the
    file is), as :func:`~repflow.families.audio.features.fix_length` cuts the whole resampled file, and the
    file's length in seconds.

    Only the centre window plus 0.1 s of filter context per side is read and resampled, so a 10-minute file
    costs what a few seconds do. The window starts on a multiple of the ratio's denominator, so the
    resampled samples are those of the whole file's resampling (up to float rounding)."""
    import math
    from fractions import Fraction

    import numpy as np
    import soundfile
    import torch
    import torchaudio

    from repflow.sources import SourceError

    source_rate, frames = check_audio_file(path)
    ratio = Fraction(rate, source_rate).limit_denominator(RATE_DENOMINATOR_LIMIT)
    up, down = ratio.numerator, ratio.denominator
    resampled = math.ceil(frames * up / down)
    first = max(0, (resampled - samples) // 2)  # the centre window, in resampled samples
    margin = math.ceil(0.1 * source_rate / down) * down
    start = max(0, (first * down // up) // down * down - margin)
    stop = min(frames, math.ceil((first + samples) * down / up) + margin)
    try:
        block, _ = soundfile.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as exc:
        raise SourceError(f"{path}: cannot decode it as audio ({exc})") from None
    x = torch.from_numpy(np.ascontiguousarray(block.mean(axis=1)))
    if ratio != 1:
        x = torchaudio.functional.resample(x, down, up)
    offset = first - start * up // down
    return x[offset:offset + min(samples, resampled)], frames / source_rate


def embed_file(path: Path, ref: str) -> dict:
    """Embedding and probe predictions of the audio file ``path`` under the registered model ``ref``."""
    import torch

    from repflow.checkpoints import load_tensors
    from repflow.families.audio.features import MelSettings, fix_length
    from repflow.families.audio.stages.evaluate import load_audio_embedder
    from repflow.registration import registered_checkpoint

    check_audio_file(path)
    ckpt = registered_checkpoint(ref, family="audio", what="an audio encoder",
                                 needs=("encoder.safetensors", "probes.safetensors"))
    model, enc_config = load_audio_embedder(ckpt.folder, verify=False)
    settings = MelSettings.from_dict(enc_config["features"])
    rate, samples = settings.sample_rate, settings.clip_samples
    x, seconds = read_centre(path, rate, samples)
    probes, probe_config = load_tensors(ckpt.folder / "probes.safetensors")
    with torch.no_grad():
        z = model(fix_length(x.unsqueeze(0), samples))[0]
    predictions = {}
    for task, classes in probe_config["tasks"].items():
        p = torch.softmax(z @ probes[f"{task}/weight"].T + probes[f"{task}/bias"], dim=0)
        predictions[task] = {"label": classes[int(p.argmax())], "probability": round(float(p.max()), 4)}
    return {"file": str(path), "model": ckpt.ref, "sample_rate": rate,
            "seconds": round(seconds, 3), "embedding": [round(float(v), 5) for v in z],
            "predictions": predictions}


def _cmd_embed(args: argparse.Namespace) -> int:
    from repflow import tracking

    check_audio_file(Path(args.file))
    tracking.configure(args.workdir, read_only=True)
    out = embed_file(Path(args.file), args.model)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['file']} ({out['seconds']} s) → {out['model']}, {len(out['embedding'])}-d embedding:")
    print("  " + " ".join(f"{v:.3f}" for v in out["embedding"]))
    for task, p in out["predictions"].items():
        print(f"  {task:<12} {p['label']}  (p = {p['probability']:.3f})")
    return 0


def add_commands(subparsers, cli) -> None:
    e = subparsers.add_parser("embed-audio", help="embed an audio file with the registered audio encoder; print "
                                                 "the embedding and every probe's prediction")
    e.add_argument("file", help="audio file (wav, flac, ogg, ...)")
    e.add_argument("--model", default="repflow-audio-encoder@champion", help="NAME@ALIAS, NAME/VERSION or NAME")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--workdir", default=".", help="project folder holding mlflow.db")
    e.set_defaults(func=_cmd_embed)
