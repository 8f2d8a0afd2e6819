"""Peak memory and time of the user commands on big inputs: ``repflow upscale`` at ×2 on 1-36 MP photos, and
``repflow embed-audio`` on a 10-minute 44.1 kHz file.

Each command runs as its own process (one torch thread) and its peak resident memory is the kernel's
``ru_maxrss`` of that child (``os.wait4``). The registered models are the smallest that work: the work folder
is set up once with the sr and audio stages on tiny params (``repflow stage``), then reused. ``--code DIR``
runs the commands from another checkout (for example the commit before a change: ``git archive a6bfc80 | tar
-x -C DIR``), on the same registry, so a before / after pair differs only in the command's code.

    python benchmarks/user_commands.py --label after --megapixels 1 4 16 36 --audio
    python benchmarks/user_commands.py --label before --code /tmp/old-checkout --megapixels 1 4 16 --audio

Results are merged into ``benchmarks/results/user_commands.{json,md}`` under their label.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
TINY = {
    "sr": {"prep": {"source": "folder", "patches": 24, "scales": [2], "max_side": 96},
           "train": {"scales": [2], "channels": 4, "blocks": 1, "epochs": 1, "batch_size": 8},
           "evaluate": {"self_ensemble": False, "tile": 96, "overlap": 40}},
    "audio": {"prep": {"words": ["zero", "one", "two", "three"], "clips_per_word": 8, "val_fraction": 0.0,
                       "test_fraction": 0.25},
              "train": {"encoder": {"channels": 8, "dim": 32, "proj_dim": 16}, "epochs": 1, "batch_size": 8},
              "evaluate": {"probe_epochs": 10, "max_test": 8, "pgd_steps": 1, "eps": [0.004]}},
}


def child_env(code: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "RAY_ADDRESS")}
    return env | {"PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "REPFLOW_PROGRESS": "0"}


def measured(argv: list[str], code: Path, cwd: Path) -> dict:
    """Run ``argv`` as a child; its wall time (s), peak RSS (MB) and exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=child_env(code), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(f"  exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}", flush=True)
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "exit": proc.returncode}


def setup(ws: Path, audio: bool) -> None:
    """The tiny registered models the commands need (made once; ``repflow stage`` with this checkout)."""
    from PIL import Image

    ws.mkdir(parents=True, exist_ok=True)
    photos = ws / "photos"
    if not photos.is_dir():
        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (72, 84, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    sys.path.insert(0, str(REPO))
    from tests.conftest import tiny_params

    params = tiny_params() | {"sr": TINY["sr"], "audio": TINY["audio"], "device": "cpu"}
    params["sr"]["prep"]["path"] = str(photos)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = [f"sr.{s}" for s in ("prep", "train", "evaluate", "register")]
    if audio:
        stages += [f"audio.{s}" for s in ("prep", "train", "evaluate", "register")]
    for stage in stages:
        print(f"setup: repflow stage {stage}", flush=True)
        subprocess.run([sys.executable, "-m", "repflow", "stage", stage, "--workdir", str(ws)], check=True,
                       env=child_env(REPO), stdout=subprocess.DEVNULL)


def photo(ws: Path, megapixels: float) -> Path:
    """A smooth colour photo of ``megapixels`` (3:2) with a little noise, made once."""
    from PIL import Image

    path = ws / f"photo-{megapixels:g}mp.png"
    if not path.is_file():
        width = int(round(math.sqrt(megapixels * 1e6 * 1.5)))
        height = int(round(megapixels * 1e6 / width))
        rows = []
        rng = np.random.default_rng(0)
        for start in range(0, height, 512):  # in strips, so making it costs little memory
            yy, xx = np.mgrid[start:min(height, start + 512), 0:width].astype(np.float32)
            strip = np.stack([np.sin(xx / (60 + 20 * c) + yy / 90) for c in range(3)], -1) * 100 + 128
            rows.append((strip + rng.normal(0, 4, strip.shape)).clip(0, 255).astype(np.uint8))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
        Image.fromarray(np.concatenate(rows)).save(tmp)
        os.replace(tmp, path)  # a second benchmark process making the same photo never reads half of it
    return path


def long_audio(ws: Path, minutes: float = 10.0, rate: int = 44100) -> Path:
    import soundfile

    path = ws / f"speech-{minutes:g}min-{rate}.flac"
    if not path.is_file():
        rng = np.random.default_rng(0)
        t = np.arange(int(minutes * 60 * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
        soundfile.write(path, (wave + rng.normal(0, 0.01, t.shape)).astype(np.float32), rate)
    return path


AUDIO_READS = {
    "whole file, dense resample (a6bfc80)": (
        "import sys, numpy as np, soundfile, torch, torchaudio\n"
        "from repflow.families.audio.features import fix_length\n"
        "wave, sr = soundfile.read(sys.argv[1], dtype='float32', always_2d=True)\n"
        "x = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wave.mean(axis=1))), sr, 16000)\n"
        "fix_length(x[None], 16000)\n"),
    "centre window (read_centre)": (
        "import sys, torch, torchaudio\nfrom pathlib import Path\n"
        "from repflow.families.audio.commands import read_centre\n"
        "read_centre(Path(sys.argv[1]), 16000, 16000)\n"),
}
"""The read and resample step of embed-audio alone (the encoder's 1 s window at 16 kHz), each in its own process
with the same imports: the command's time is mostly start-up and model loading."""


def markdown(results: dict) -> str:
    lines = ["# User commands: peak memory and time", "",
             "Each command is one process with one torch thread; peak RSS is the child's `ru_maxrss`. "
             "`before`: the code of commit a6bfc80; `after`: this branch. Models: the tiny registered sr "
             "(×2, 4 channels, 1 block; `--tile 512 --overlap 40`) and audio encoders of "
             "`benchmarks/user_commands.py`.", "",
             "## repflow upscale, ×2", "",
             "| label | input MP | output MB (uint8) | peak RSS MB | RSS / output | seconds | exit |",
             "|---|---|---|---|---|---|---|"]
    for label, runs in sorted(results.get("upscale", {}).items()):
        for mp, r in sorted(runs.items(), key=lambda kv: float(kv[0])):
            out_mb = float(mp) * 4 * 3
            lines.append(f"| {label} | {mp} | {out_mb:.0f} | {r['peak_rss_mb']:.0f} | "
                         f"{r['peak_rss_mb'] / out_mb:.1f} | {r['seconds']} | {r['exit']} |")
    lines += ["", "Growth of peak RSS per MB of output, from the smallest to the largest input of each label "
              "(the rest is the process's fixed ~1.2 GB of imports):", ""]
    for label, runs in sorted(results.get("upscale", {}).items()):
        sizes = sorted(runs, key=float)
        if len(sizes) > 1:
            small, large = runs[sizes[0]], runs[sizes[-1]]
            grown = large["peak_rss_mb"] - small["peak_rss_mb"]
            output = (float(sizes[-1]) - float(sizes[0])) * 12  # MB of uint8 RGB at ×2 per input MP
            lines.append(f"- {label}: +{grown:.0f} MB for +{output:.0f} MB of output ({sizes[0]} → {sizes[-1]} MP): "
                         f"{grown / output:.2f} MB per output MB")
    lines += ["", "Times are wall-clock on 2 CPU cores shared with other jobs (load average about 20 during the "
              "runs): compare them only loosely.",
              "", "## repflow embed-audio, 10-minute 44.1 kHz FLAC", "", "| label | peak RSS MB | seconds | exit |",
              "|---|---|---|---|"]
    for label, r in sorted(results.get("embed_audio", {}).items()):
        lines.append(f"| {label} | {r['peak_rss_mb']:.0f} | {r['seconds']} | {r['exit']} |")
    if results.get("audio_read"):
        lines += ["", "Its read and resample step alone (same file, same imports, one process each):", "",
                  "| read | peak RSS MB | seconds | exit |", "|---|---|---|---|"]
        for label, r in results["audio_read"].items():
            lines.append(f"| {label} | {r['peak_rss_mb']:.0f} | {r['seconds']} | {r['exit']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="results key, e.g. before / after")
    ap.add_argument("--code", default=str(REPO), help="checkout whose repflow runs the commands")
    ap.add_argument("--workdir", default="/tmp/repflow-bench-user", help="work folder with the tiny registry")
    ap.add_argument("--megapixels", type=float, nargs="*", default=[1, 4, 16])
    ap.add_argument("--audio", action="store_true", help="also embed-audio on a 10-minute file (run first)")
    ap.add_argument("--audio-read", action="store_true", help="the read and resample step alone, old and new")
    ap.add_argument("--tile", type=int, default=512, help="upscale --tile (LR px; --overlap 40)")
    args = ap.parse_args()
    ws, code = Path(args.workdir), Path(args.code).resolve()
    if not (ws / "mlflow.db").is_file():
        setup(ws, args.audio)
    def record(kind: str, key: str | None, value: dict) -> None:
        """Merge one result into the results files (re-read first: a before and an after run may share them)."""
        path = RESULTS / "user_commands.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        if key is None or kind == "audio_read":
            results.setdefault(kind, {})[key or args.label] = value
        else:
            results.setdefault(kind, {}).setdefault(args.label, {})[key] = value
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        (RESULTS / "user_commands.md").write_text(markdown(results))

    if args.audio:
        src = long_audio(ws)
        print(f"{args.label}: embed-audio {src.name}", flush=True)
        r = measured([sys.executable, "-m", "repflow", "embed-audio", str(src), "--workdir", str(ws)], code, ws)
        print(f"  {r}", flush=True)
        record("embed_audio", None, r)
    if args.audio_read:
        src = long_audio(ws)
        for name, code_text in AUDIO_READS.items():
            print(f"audio read: {name}", flush=True)
            r = measured([sys.executable, "-c", code_text, str(src)], REPO, ws)
            print(f"  {r}", flush=True)
            record("audio_read", name, r)
    for mp in args.megapixels:
        src = photo(ws, mp)
        out = ws / f"out-{args.label}.png"
        print(f"{args.label}: upscale {mp:g} MP ×2", flush=True)
        r = measured([sys.executable, "-m", "repflow", "upscale", str(src), str(out), "--scale", "2",
                      "--tile", str(args.tile), "--overlap", "40", "--workdir", str(ws)], code, ws)
        print(f"  {r}", flush=True)
        record("upscale", f"{mp:g}", r | {"tile": args.tile})
        out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
