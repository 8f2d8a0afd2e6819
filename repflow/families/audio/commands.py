"""``repflow embed-audio FILE``: the registered audio encoder's embedding of a user's file, and every probe's
prediction. Reads the file with soundfile (wav, flac, ogg, ...), mixes it to mono, resamples it to the
encoder's rate and centres it in the encoder's window, as training did."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_commands", "embed_file"]


def embed_file(path: Path, ref: str) -> dict:
    """Embedding and probe predictions of the audio file ``path`` under the registered model ``ref``."""
    import numpy as np
    import soundfile
    import torch
    import torchaudio

    from repflow.checkpoints import load_tensors
    from repflow.families.audio.features import MelSettings, fix_length
    from repflow.families.audio.stages.evaluate import load_audio_embedder
    from repflow.registration import registered_checkpoint
    from repflow.sources import SourceError

    ckpt = registered_checkpoint(ref, family="audio", what="an audio encoder",
                                 needs=("encoder.safetensors", "probes.safetensors"))
    model, enc_config = load_audio_embedder(ckpt.folder, verify=False)
    settings = MelSettings.from_dict(enc_config["features"])
    rate, samples = settings.sample_rate, settings.clip_samples
    try:
        wave, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, OSError) as exc:
        raise SourceError(f"{path}: cannot decode it as audio ({exc})") from None
    if wave.size == 0:
        raise SourceError(f"{path}: holds no samples")
    x = torch.from_numpy(np.ascontiguousarray(wave.mean(axis=1)))
    if sr != rate:
        x = torchaudio.functional.resample(x, sr, rate)
    probes, probe_config = load_tensors(ckpt.folder / "probes.safetensors")
    with torch.no_grad():
        z = model(fix_length(x.unsqueeze(0), samples))[0]
    predictions = {}
    for task, classes in probe_config["tasks"].items():
        p = torch.softmax(z @ probes[f"{task}/weight"].T + probes[f"{task}/bias"], dim=0)
        predictions[task] = {"label": classes[int(p.argmax())], "probability": round(float(p.max()), 4)}
    return {"file": str(path), "model": ckpt.ref, "sample_rate": rate,
            "seconds": round(len(x) / int(rate), 3), "embedding": [round(float(v), 5) for v in z],
            "predictions": predictions}


def _cmd_embed(args: argparse.Namespace) -> int:
    from repflow import tracking

    tracking.configure(args.workdir)
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
