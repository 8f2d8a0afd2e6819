"""The audio family as a user meets it: params errors before any work, bad audio folders, a label the probes
need but the shards lack, and one tiny run of its Prefect flow through MLflow's registry to
``repflow embed-audio`` on a wav file."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import yaml

from repflow.config import ParamsError
from repflow.family import parse_params
from repflow.manifest import OutputError, read_manifest
from repflow.sources import SourceError
from tests.conftest import child_env, tiny_params

TINY_AUDIO = {
    "prep": {"words": ["zero", "one", "two", "three"], "clips_per_word": 8, "val_fraction": 0.0,
             "test_fraction": 0.25},
    "train": {"encoder": {"channels": 8, "dim": 32, "proj_dim": 16}, "epochs": 2, "batch_size": 8,
              "method": "advneg"},
    "evaluate": {"probe_epochs": 30, "max_test": 8, "pgd_steps": 2, "eps": [0.004]},
}


def audio_params(**sections) -> dict:
    """Tiny image params (the default family's keys) plus a tiny audio section with ``sections`` merged in."""
    audio = {name: dict(values) for name, values in TINY_AUDIO.items()}
    for name, values in sections.items():
        audio.setdefault(name, {}).update(values)
    return {**tiny_params(), "audio": audio}


@pytest.mark.parametrize("section, values, expected", [
    ("features", {"f_max": 9000.0}, r"audio\.features.*f_max"),
    ("features", {"n_mels": 200, "n_fft": 256, "win_length": 256}, r"audio\.features.*n_mels"),
    ("features", {"win_length": 2048}, r"audio\.features.*win_length"),
    ("evaluate", {"tasks": ["language"]}, r"audio\.evaluate\.tasks = \['language'\]: source 'espeak' has no such "
                                          r"label; its labels: \['word', 'voice', 'accent', 'pitch_band'\]"),
    ("evaluate", {"tasks": ["word"], "attack_task": "voice"}, r"attack_task = 'voice' is not one of"),
    ("prep", {"stratify": "label"}, r"audio\.prep\.stratify = \['label'\]"),
    ("features", {"n_mels": 60}, r"n_mels = 60 must be divisible by 2\*\*audio\.train\.encoder\.blocks = 8"),
    ("train", {"negatives": {"shifts": [64]}}, r"frequency shifts \[64\].*smaller than audio\.features\.n_mels"),
    ("prep", {"words": [True, False]}, r"quote those words"),
    ("train", {"augment": {"max_freq_shift": 12.0}},
     r"audio\.train\.augment\.max_freq_shift = 12\.0 must be smaller than the smallest of "
     r"audio\.train\.negatives\.shifts \[12, 20\]"),
    ("train", {"negatives": {"shifts": [12], "k": 4}}, r"audio\.train\.negatives\.k = 4 must be at most 3"),
])
def test_unusable_settings_are_params_errors_naming_the_key(section, values, expected):
    with pytest.raises(ParamsError, match=expected):
        parse_params(audio_params(**{section: values}))


@pytest.mark.slow
def test_an_audio_folder_without_decodable_files_fails_before_anything_is_written(mlflow_tmp):
    from repflow.stage import run_stage

    for cls in ("dog", "cat"):
        (mlflow_tmp / "clips" / cls).mkdir(parents=True)
        (mlflow_tmp / "clips" / cls / "a.wav").write_bytes(b"RIFF not really audio")
    params = parse_params(audio_params(prep={"source": "audiofolder", "path": str(mlflow_tmp / "clips"),
                                             "stratify": "label"}, evaluate={"tasks": None, "attack_task": None}))
    with pytest.raises(SourceError, match=r"none of the 2 audio files under .*clips could be decoded; first error"):
        run_stage("audio.prep", params, {}, mlflow_tmp / "prep")
    assert not (mlflow_tmp / "prep").exists()


@pytest.mark.slow
def test_a_probe_task_the_shards_lack_is_an_error_naming_the_manifest(mlflow_tmp):
    """An audiofolder's shards carry only 'label'; probes asking for 'word' stop before any embedding."""
    from repflow.families.audio.stages import evaluate
    from repflow.stage import run_stage

    rate = 16000
    t = np.arange(rate // 2) / rate
    for cls, freq in (("low", 220.0), ("high", 880.0)):
        (mlflow_tmp / "clips" / cls).mkdir(parents=True)
        for i in range(4):
            soundfile.write(mlflow_tmp / "clips" / cls / f"{i}.wav", 0.3 * np.sin(2 * np.pi * freq * (1 + i / 50) * t),
                            rate)
    folder = {"source": "audiofolder", "path": str(mlflow_tmp / "clips"), "stratify": "label", "test_fraction": 0.5}
    shards = run_stage("audio.prep", parse_params(audio_params(prep=folder, evaluate={"attack_task": None})), {},
                       mlflow_tmp / "prep")
    assert read_manifest(shards)["meta"]["tasks"] == {"label": ["high", "low"]}
    asks_word = parse_params(audio_params(evaluate={"tasks": ["word"]}))  # valid for espeak, not for these shards
    with pytest.raises(OutputError, match=r"asks for \['word'\], but .*prep/manifest.json has labels \['label'\]"):
        evaluate.check(asks_word, {"shards": shards})


@pytest.mark.slow
def test_the_audio_flow_registers_an_encoder_that_embeds_a_users_file(prefect_harness, ray_session, tmp_path,
                                                                    monkeypatch):
    import mlflow

    from repflow.families.audio.flow import audio_flow

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(audio_params(), sort_keys=False))
    monkeypatch.chdir(ws)
    state = audio_flow(params_file="params.yaml", overrides=[], workdir=str(ws), return_state=True)
    assert state.is_completed(), state
    summary = state.result()
    metrics = summary["stages"]["evaluate"]
    assert set(metrics) >= {"probe_acc/word", "probe_acc/pitch_band", "probe_acc_mean", "position_sensitivity",
                            "clean_acc", "robust_acc/0.004"}
    assert 0.0 <= metrics["robust_acc/0.004"] <= 1.0
    report = (ws / "reports" / "audio-run-report.md").read_text()
    assert "| pitch_band | 3 | yes |" in report and "chosen negatives' cosine similarity" in report
    for picture in ("data/audio/prep/samples.png", "artifacts/audio/train/views.png",
                    "reports/audio/evaluate/probes.png"):
        assert (ws / picture).stat().st_size > 1000
    prep_meta = read_manifest(ws / "data" / "audio" / "prep")["meta"]
    train_config = json.loads((ws / "artifacts" / "audio" / "train" / "encoder.json").read_text())
    assert train_config["norm"] == prep_meta["norm"]  # the encoder keeps the statistics it was trained with
    champion = mlflow.MlflowClient().get_model_version_by_alias("repflow-audio-encoder", "champion")
    assert champion.tags["repflow.criterion"] == "probe_acc_mean"

    # a user's file: stereo at 44.1 kHz, so the command must mix down and resample
    wave, rate = soundfile.read(ws / "data" / "audio" / "prep" / "examples" / "two.wav", dtype="float32")
    user = tmp_path / "mine.wav"
    soundfile.write(user, np.stack([wave, wave], axis=1), rate)
    out = subprocess.run([sys.executable, "-m", "repflow", "embed-audio", str(user), "--json", "--workdir", str(ws)],
                         env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(answer["embedding"]) == 32 and answer["model"] == f"repflow-audio-encoder/{champion.version}"
    assert set(answer["predictions"]) == set(prep_meta["tasks"])
    assert answer["predictions"]["word"]["label"] in prep_meta["tasks"]["word"]
    bad = subprocess.run([sys.executable, "-m", "repflow", "embed-audio", str(ws / "params.yaml"), "--workdir",
                          str(ws)], env=child_env(), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "params.yaml: cannot decode it as audio" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_params_files_are_read_as_yaml_1_2_like_dvc_writes_them(tmp_path):
    """``dvc exp run -S`` rewrites params.yaml with YAML 1.2, which leaves yes / no unquoted: they stay words."""
    from repflow.family import load_params

    text = yaml.safe_dump(audio_params(), sort_keys=False).replace("- zero\n", "- 'yes'\n")
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("'yes'", "yes"))
    assert "- yes\n" in path.read_text()
    params = load_params(path, ["audio.prep.clips_per_word=9", "audio.evaluate.tasks=[word, pitch_band]"])
    assert params.audio.prep.words[0] == "yes"
    assert params.audio.evaluate.tasks == ["word", "pitch_band"]
