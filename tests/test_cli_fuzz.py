"""Bad invocations of every ``repflow`` command, as a new user makes them: each must exit 2 with one error line
on stderr that names the culprit (the option, value, file or URI), print no traceback, and leave the folder it
ran in (and any mistyped ``--workdir``) exactly as it was. They run in-process through :func:`repflow.cli.main`,
in a folder that holds a valid image, audio file and videos but no registered model, so a check that comes
after loading a model shows up as a "no registered model" error instead of the culprit."""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from PIL import Image

from tests.conftest import child_env, tiny_params


def _huge_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` × ``height`` pixels but holds almost no data: what a user's giant
    photo looks like to a size check made before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _video(path: Path, width: int, height: int, frames: int = 4) -> None:
    """A tiny lossless video (FFV1 in Matroska: any frame size, odd ones included)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 20 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame.reformat(format="yuv444p")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The user's folder: an image, a WAV, an even-sized and an odd-sized video, a text file, valid params."""
    folder = tmp_path_factory.mktemp("user")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "photo.png")
    soundfile.write(folder / "clip.wav", np.zeros(16000, np.float32), 16000)
    (folder / "notes.txt").write_text("not audio, not an image\n")
    _video(folder / "even.mkv", 32, 24)
    _video(folder / "odd.mkv", 33, 25)
    _huge_png(folder / "giant.png", 30000, 20000)
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    (folder / "out").mkdir()
    return folder


@pytest.fixture(scope="module")
def closed_port():
    """A localhost port bound but not listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if not p.is_symlink()}


UPSCALE = ["upscale", "photo.png", "out/big.png", "--scale", "2"]
EMBED = ["watermark", "embed", "even.mkv", "out/marked.mp4", "--message", "c0ffee"]

# (id, argv, culprit named in the error line, environment). "{port}" is a closed localhost port.
CASES = [
    ("ui-port-too-big", ["ui", "--prefect-port", "70000"], "70000", {}),
    ("ui-mlflow-port-negative", ["ui", "--mlflow-port", "-1"], "-1", {}),
    ("ui-same-ports", ["ui", "--prefect-port", "5000", "--mlflow-port", "5000"], "5000", {}),
    ("ui-typo-workdir", ["ui", "--workdir", "typo"], "typo", {}),
    ("upscale-tile-below-overlap", [*UPSCALE, "--tile", "60", "--overlap", "40"], "--tile", {}),
    ("upscale-overlap-negative", [*UPSCALE, "--overlap", "-3"], "--overlap", {}),
    ("upscale-tile-zero", [*UPSCALE, "--tile", "0"], "--tile", {}),
    ("upscale-missing-input", ["upscale", "nothing.png", "out/big.png", "--scale", "2"], "nothing.png", {}),
    ("upscale-not-an-image", ["upscale", "notes.txt", "out/big.png", "--scale", "2"], "notes.txt", {}),
    ("upscale-jpeg-output", ["upscale", "photo.png", "out/big.jpg", "--scale", "2"], "big.jpg", {}),
    ("upscale-missing-output-folder", ["upscale", "photo.png", "nowhere/big.png", "--scale", "2"], "nowhere", {}),
    ("upscale-giant-image", ["upscale", "giant.png", "out/big.png", "--scale", "2"], "30000×20000", {}),
    ("upscale-typo-workdir", [*UPSCALE, "--workdir", "typo"], "typo", {}),
    ("watermark-avi-output", ["watermark", "embed", "even.mkv", "out/marked.avi", "--message", "c0"], ".avi", {}),
    ("watermark-crf-range", [*EMBED, "--crf", "60"], "--crf", {}),
    ("watermark-strength-range", [*EMBED, "--strength", "5"], "--strength", {}),
    ("watermark-missing-output-folder", ["watermark", "embed", "even.mkv", "nowhere/m.mp4", "--message", "c0"],
     "nowhere", {}),
    ("watermark-odd-frame-size", ["watermark", "embed", "odd.mkv", "out/marked.mp4", "--message", "c0"], "33x25", {}),
    ("watermark-negative-message", ["watermark", "embed", "even.mkv", "out/m.mp4", "--message=-1"], "--message", {}),
    ("watermark-non-hex-message", ["watermark", "embed", "even.mkv", "out/m.mp4", "--message", "zz"], "zz", {}),
    ("watermark-missing-input", ["watermark", "embed", "gone.mp4", "out/m.mp4", "--message", "c0"], "gone.mp4", {}),
    ("watermark-extract-not-a-video", ["watermark", "extract", "notes.txt"], "notes.txt", {}),
    ("watermark-extract-typo-workdir", ["watermark", "extract", "even.mkv", "--workdir", "typo"], "typo", {}),
    ("recommend-typo-workdir", ["recommend", "1", "--workdir", "typo"], "typo", {}),
    ("recommend-top-zero", ["recommend", "1", "--top", "0"], "'0'", {}),
    ("recommend-no-registry", ["recommend", "1"], "mlflow.db", {}),
    ("embed-audio-missing-file", ["embed-audio", "nothing.wav"], "nothing.wav", {}),
    ("embed-audio-not-audio", ["embed-audio", "notes.txt"], "notes.txt", {}),
    ("embed-audio-typo-workdir", ["embed-audio", "clip.wav", "--workdir", "typo"], "typo", {}),
    ("define-empty-word", ["define", " "], "word", {}),
    ("define-beam-zero", ["define", "dog", "--beam", "0"], "--beam", {}),
    ("define-show-above-beam", ["define", "dog", "--beam", "2", "--show", "3"], "--show", {}),
    ("generate-typo-workdir", ["generate", "a cat", "--workdir", "typo"], "typo", {}),
    ("models-typo-workdir", ["models", "list", "--workdir", "typo"], "typo", {}),
    ("models-bad-ref", ["models", "show", "a@b@c"], "a@b@c", {}),
    ("lineage-typo-workdir", ["lineage", "--workdir", "typo"], "typo", {}),
    ("models-dead-tracking-server", ["models", "list"], "http://127.0.0.1:{port}",
     {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}),
    ("recommend-dead-tracking-server", ["recommend", "1"], "http://127.0.0.1:{port}",
     {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}),
    ("stage-dead-tracking-server", ["stage", "image.prep"], "http://127.0.0.1:{port}",
     {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}),
    ("run-dead-prefect-server", ["run", "image"], "http://127.0.0.1:{port}/api",
     {"PREFECT_API_URL": "http://127.0.0.1:{port}/api"}),
    ("deployments-dead-prefect-server", ["deployments"], "http://127.0.0.1:{port}/api",
     {"PREFECT_API_URL": "http://127.0.0.1:{port}/api"}),
    ("run-unknown-family", ["run", "imagez"], "imagez", {}),
    ("run-unknown-stage", ["run", "image", "--stage", "trian"], "trian", {}),
    ("run-typo-workdir", ["run", "image", "--workdir", "typo"], "typo", {}),
    ("run-bad-override", ["run", "image", "-P", "train.epochs=-2"], "train.epochs", {}),
    ("run-override-without-equals", ["run", "image", "-P", "train.epochs"], "train.epochs", {}),
    ("stage-unknown", ["stage", "image.trian"], "trian", {}),
    ("stage-typo-workdir", ["stage", "image.prep", "--workdir", "typo"], "typo", {}),
    ("compare-zero-epochs", ["compare", "--epochs", "0"], "compare.epochs", {}),
    ("compare-unknown-method", ["compare", "--methods", "simclrr"], "simclrr", {}),
    ("serve-zero-interval", ["serve", "--interval", "0"], "--interval", {}),
    ("serve-bad-cron", ["serve", "--cron", "every day"], "every day", {}),
    ("families-readme-missing", ["families", "--write-readme", "nowhere/README.md"], "nowhere", {}),
    ("claims-missing-results", ["claims", "--results", "nowhere"], "nowhere", {}),
    ("claims-unknown-family", ["claims", "--family", "imagez"], "imagez", {}),
    ("dvc-yaml-typo-workdir", ["dvc-yaml", "--write", "--workdir", "typo"], "typo", {}),
]


@pytest.mark.parametrize("argv, culprit, env", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_invocation_is_one_line_exit_2_and_writes_nothing(argv, culprit, env, home, closed_port, capsys,
                                                                monkeypatch):
    from repflow import cli, tracking

    monkeypatch.chdir(home)
    culprit = culprit.format(port=closed_port)
    before = _listing(home)
    if env or argv[:1] == ["recommend"]:
        # what these cases check depends on the process's servers and tracking store, which earlier tests in this
        # process may have set (MLflow's global URI, Prefect's loaded settings): a fresh process sees only ``env``
        r = subprocess.run([sys.executable, "-m", "repflow", *argv], cwd=home, capture_output=True, text=True,
                           env=child_env(**{k: v.format(port=closed_port) for k, v in env.items()}), timeout=300)
        code, err = r.returncode, r.stderr
    else:
        monkeypatch.setattr(tracking, "_USER_TRACKING_URI", os.environ.get("MLFLOW_TRACKING_URI"))
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    assert len(errors) == 1 and culprit in errors[0], err[-3000:]
    assert _listing(home) == before
