"""The audio-visual family as a user meets it: params errors naming the key, a user clip without sound and a
VQ-VAE checkpoint of the wrong frame size as errors naming the file (a fitting one is used as it is), and one
tiny run of its Prefect flow through the registry."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from repflow.config import ParamsError
from repflow.family import parse_params
from repflow.manifest import read_manifest
from tests.conftest import tiny_params

TINY_AV = {
    "prep": {"speakers": 7, "clips_per_speaker": 8, "frames": 8, "val_fraction": 0.15, "test_fraction": 0.3,
             "shard_size": 16},
    "vqvae": {"face_steps": 6, "speech_steps": 6, "face_batch_size": 16, "speech_batch_size": 64},
    "train": {"steps": 6, "batch_size": 8, "kl_warmup": 2},
    "evaluate": {"ks": [1, 2], "draws": 2, "denoise_clips": 4},
    "register": {"criterion": "val_emotion_k2"},
}


def av_params(**sections) -> dict:
    av = {name: dict(values) for name, values in TINY_AV.items()}
    for name, values in sections.items():
        av.setdefault(name, {}).update(values)
    return {**tiny_params(), "av": av}


@pytest.mark.parametrize("section, values, expected", [
    ("prep", {"source": "folder"}, r"av\.prep.*source 'folder' needs path"),
    ("prep", {"speakers": 5, "test_fraction": 0.2}, r"av\.prep.*fewer than 2 test speakers"),
    ("train", {"models": ["mdvae", "vae"]}, r"av\.train\.models.*each must be one of"),
    ("register", {"model": "frame_vae", "criterion": "val_emotion_k2"}, None),
    ("train", {"models": ["dvae_audio"]}, r"av\.register\.model = 'mdvae' is not in av\.train\.models"),
    ("register", {"criterion": "val_emotion_k10"}, r"needs k = 10 in av\.evaluate\.ks \[1, 2\]"),
])
def test_unusable_settings_are_params_errors_naming_the_key(section, values, expected):
    if expected is None:
        assert parse_params(av_params(**{section: values})).av.register.model == "frame_vae"
        return
    with pytest.raises(ParamsError, match=expected):
        parse_params(av_params(**{section: values}))


@pytest.mark.slow
def test_a_user_clip_without_sound_is_an_error_naming_it(mlflow_tmp):
    from repflow.media.video import write_video
    from repflow.sources import SourceError
    from repflow.stage import run_stage

    clip = mlflow_tmp / "clips" / "anna" / "happy" / "silent.mp4"
    clip.parent.mkdir(parents=True)
    write_video(clip, np.zeros((10, 64, 64, 3), np.uint8), 25)
    params = parse_params(av_params(prep={"source": "folder", "path": str(mlflow_tmp / "clips")}))
    with pytest.raises(SourceError, match=r"silent\.mp4.*(audio|sound)"):
        run_stage("av.prep", params, {}, mlflow_tmp / "prep")


@pytest.mark.slow
def test_a_vqvae_checkpoint_must_fit_the_frames_and_a_fitting_one_is_used_unchanged(mlflow_tmp):
    from safetensors.torch import load_file

    from repflow.families.av.vqvae import FrameVQVAE, save_vqvae
    from repflow.sources import SourceError
    from repflow.stage import run_stage

    params = parse_params(av_params())
    prep = run_stage("av.prep", params, {}, mlflow_tmp / "prep")
    meta = read_manifest(prep)["meta"]
    assert set(meta["speaker_split"]["train"]).isdisjoint(meta["speaker_split"]["test"])
    small = mlflow_tmp / "small.safetensors"
    save_vqvae(FrameVQVAE(32, hidden=8, residual_hidden=4, num_codes=8), small)
    wrong = parse_params(av_params(vqvae={"face_checkpoint": str(small)}))
    with pytest.raises(SourceError, match=r"av\.vqvae\.face_checkpoint.*small\.safetensors.*\(32, 32, 3\)"):
        run_stage("av.vqvae", wrong, {"prep": prep}, mlflow_tmp / "wrong")
    torch.manual_seed(0)
    fitting = mlflow_tmp / "fitting.safetensors"
    save_vqvae(FrameVQVAE(64, hidden=8, residual_hidden=4, num_codes=8), fitting)
    used = run_stage("av.vqvae", parse_params(av_params(vqvae={"face_checkpoint": str(fitting)})), {"prep": prep},
                     mlflow_tmp / "used")
    a, b = load_file(str(fitting)), load_file(str(used / "face.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_av_flow_registers_mdvae_and_both_vqvaes(prefect_harness, ray_session, tmp_path, monkeypatch):
    import mlflow

    from repflow.families.av.flow import av_flow

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(av_params(), sort_keys=False))
    monkeypatch.chdir(ws)
    state = av_flow(params_file="params.yaml", overrides=[], workdir=str(ws), return_state=True)
    assert state.is_completed(), state
    metrics = state.result()["stages"]["evaluate"]
    for model in ("mdvae", "dvae_audio", "dvae_visual", "frame_vae"):
        for k in (1, 2):
            assert 0 <= metrics[f"{model}/emotion_k{k}"] <= 1 and 0 <= metrics[f"{model}/val_emotion_k{k}"] <= 1
        assert metrics[f"{model}/li_static_emotion"] >= 0 and metrics[f"{model}/mi_dynamic_identity"] >= 0
    assert metrics["denoise_mask/corrupted"] > 0 and "denoise_noise/mdvae" in metrics
    evaluated = ws / "reports" / "av" / "evaluate"
    assert (evaluated / "swap.png").is_file() and (evaluated / "swap.wav").stat().st_size > 1000
    registered = json.loads((ws / "reports/av/register/register.json").read_text())
    assert sorted(registered) == ["repflow-av-face-vqvae", "repflow-av-speech-vqvae", "repflow-mdvae"]
    client = mlflow.MlflowClient()
    mdvae = client.get_model_version_by_alias("repflow-mdvae", "champion")
    assert mdvae.tags["repflow.family"] == "av" and mdvae.tags["repflow.model"] == "mdvae"
    assert float(mdvae.tags["repflow.score"]) == pytest.approx(metrics["val_emotion_k2"])
    dims = read_manifest(ws / "data/av/vqvae")["meta"]
    static = mlflow.pytorch.load_model(f"models:/repflow-mdvae/{mdvae.version}")
    w = static(torch.randn(4, 8, dims["audio_dim"] + dims["visual_dim"]))
    assert w.shape == (4, 32) and torch.isfinite(w).all()
    for name in ("repflow-av-face-vqvae", "repflow-av-speech-vqvae"):
        assert client.get_model_version_by_alias(name, "champion").tags["repflow.family"] == "av"
