"""The super-resolution family as a user meets it: params errors, a folder with broken files, training that
resumes after a crash exactly where it stopped, and one tiny run of its Prefect flow through the registry
to ``repflow upscale`` on an image of another size, tiled without seams."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from repflow.config import ParamsError
from repflow.family import parse_params
from repflow.manifest import read_manifest
from tests.conftest import child_env, crash_after_first_epoch, tiny_params

TINY_SR = {
    "prep": {"patches": 24, "scales": [2, 4], "max_side": 96},
    "train": {"scales": [2], "channels": 4, "blocks": 1, "epochs": 2, "batch_size": 8},
    "evaluate": {"self_ensemble": False, "tile": 96, "overlap": 40},
}


def sr_params(**sections) -> dict:
    sr = {name: dict(values) for name, values in TINY_SR.items()}
    for name, values in sections.items():
        sr.setdefault(name, {}).update(values)
    return {**tiny_params(), "sr": sr}


def _photos(folder, n=4, side=60, seed=0):
    """``n`` smooth random colour images (gradients + blobs) big enough for 48-px patches."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:side, 0:side + 12] / side
    for i in range(n):
        img = np.stack([np.sin(xx * rng.uniform(2, 9) + c) * np.cos(yy * rng.uniform(2, 9)) for c in range(3)], -1)
        Image.fromarray(((img + 1) * 127.5).astype(np.uint8)).save(folder / f"photo{i}.png")
    return folder


@pytest.mark.parametrize("section, values, expected", [
    ("prep", {"hr_patch": 50}, r"sr\.prep\.hr_patch.*multiple of 12"),
    ("prep", {"scales": [5]}, r"sr\.prep\.scales.*each must be one of \[2, 3, 4\]"),
    ("train", {"scales": [3]}, r"sr\.train\.scales has \[3\], which sr\.prep\.scales \[2, 4\] does not write"),
    ("evaluate", {"tile": 64, "overlap": 40}, r"sr\.evaluate\.tile = 64 must exceed 2 × sr\.evaluate\.overlap = 80"),
    ("register", {"criterion": "lpips"}, r"sr\.register\.criterion = 'lpips'"),
])
def test_unusable_settings_are_params_errors_naming_the_key(section, values, expected):
    with pytest.raises(ParamsError, match=expected):
        parse_params(sr_params(**{section: values}))


def test_a_folder_with_broken_files_is_read_and_the_broken_ones_listed(mlflow_tmp):
    from repflow.stage import run_stage

    folder = _photos(mlflow_tmp / "photos")
    (folder / "notes.jpg").write_bytes(b"not an image")
    good = (folder / "photo0.png").read_bytes()
    (folder / "cut.png").write_bytes(good[:len(good) // 3])
    params = parse_params(sr_params(prep={"source": "folder", "path": str(folder), "test_fraction": 0.25}))
    out = run_stage("sr.prep", params, {}, mlflow_tmp / "prep")
    meta = read_manifest(out)["meta"]
    assert sorted(s["file"].rsplit("/", 1)[-1] for s in meta["skipped"]) == ["cut.png", "notes.jpg"]
    assert len(meta["train_photos"]) + len(meta["test_photos"]) == 4
    assert not set(meta["train_photos"]) & set(meta["test_photos"])  # split by photo
    assert meta["bicubic"] == "matlab-antialiased" and meta["splits"]["train"]["count"] == 24


def test_training_resumes_after_a_crash_exactly_where_it_stopped(mlflow_tmp, monkeypatch):
    from repflow.families.sr.stages import train as train_stage
    from repflow.stage import run_stage

    params = parse_params(sr_params(prep={"source": "folder", "path": str(_photos(mlflow_tmp / "photos"))},
                                    train={"epochs": 3}))
    shards = run_stage("sr.prep", params, {}, mlflow_tmp / "prep")
    whole = run_stage("sr.train", params, {"shards": shards}, mlflow_tmp / "whole")

    real = train_stage.train_sr

    monkeypatch.setattr(train_stage, "train_sr", crash_after_first_epoch(real))
    with pytest.raises(KeyboardInterrupt):
        run_stage("sr.train", params, {"shards": shards}, mlflow_tmp / "resumed")
    assert (mlflow_tmp / ".resumed.progress" / "x2.safetensors").is_file() and not (mlflow_tmp / "resumed").exists()
    monkeypatch.setattr(train_stage, "train_sr", real)
    resumed = run_stage("sr.train", params, {"shards": shards}, mlflow_tmp / "resumed")
    from safetensors.torch import load_file

    a, b = load_file(str(whole / "x2.safetensors")), load_file(str(resumed / "x2.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (mlflow_tmp / ".resumed.progress").exists()


@pytest.mark.slow
def test_the_sr_flow_registers_a_model_that_upscales_a_users_image(prefect_harness, ray_session, tmp_path, monkeypatch):
    import mlflow

    from repflow.families.sr.flow import sr_flow

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(sr_params(prep={"source": "folder", "path": str(
        _photos(tmp_path / "photos"))}, evaluate={"self_ensemble": True}), sort_keys=False))
    monkeypatch.chdir(ws)
    state = sr_flow(params_file="params.yaml", overrides=[], workdir=str(ws), return_state=True)
    assert state.is_completed(), state
    metrics = state.result()["stages"]["evaluate"]
    assert {"psnr_y/x2", "bicubic_psnr_y/x2", "plus_psnr_y/x2", "ssim_y/x2", "params/x2", "macs/x2"} <= set(metrics)
    assert metrics["macs/x2"] > 0 and 0 < metrics["ssim_y/x2"] <= 1
    assert (ws / "reports" / "sr" / "evaluate" / "crops_x2.png").stat().st_size > 1000
    assert "| ×2 | bicubic |" in (ws / "reports" / "sr-run-report.md").read_text()
    version = mlflow.MlflowClient().get_model_version_by_alias("repflow-sr-x2", "champion")
    assert version.tags["repflow.scale"] == "2"

    rng = np.random.default_rng(1)
    user = tmp_path / "user.png"
    Image.fromarray(rng.integers(0, 256, (77, 131, 3), dtype=np.uint8)).save(user)

    def upscale(*args):
        return subprocess.run([sys.executable, "-m", "repflow", "upscale", *map(str, args), "--workdir", str(ws)],
                              env=child_env(), capture_output=True, text=True, timeout=300)

    # tiled (3 × 2 tiles of 16 px cores) and in one piece: the tile borders must not show
    assert upscale(user, tmp_path / "tiled.png", "--scale", 2, "--tile", 96, "--overlap", 40).returncode == 0
    whole = upscale(user, tmp_path / "whole.png", "--scale", 2, "--tile", 400, "--overlap", 40)
    assert whole.returncode == 0, whole.stderr[-2000:]
    tiled, one = (np.asarray(Image.open(tmp_path / name), dtype=np.int16) for name in ("tiled.png", "whole.png"))
    assert tiled.shape == (154, 262, 3) and np.abs(tiled - one).max() <= 1
    assert not list(tmp_path.glob(".*.tmp*"))  # written to a temporary file, then renamed

    # without context the borders do show: the comparison above can fail
    assert upscale(user, tmp_path / "seams.png", "--scale", 2, "--tile", 24, "--overlap", 0).returncode == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "seams.png"), dtype=np.int16) - one).max() > 1
    unknown_scale = upscale(user, tmp_path / "x.png", "--scale", 4)
    assert unknown_scale.returncode == 2 and "no registered model 'repflow-sr-x4'" in unknown_scale.stderr
    Image.fromarray(rng.integers(0, 256, (10, 30, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    small = upscale(tmp_path / "small.png", tmp_path / "x.png", "--scale", 2)
    assert small.returncode == 2 and "smaller than one LR training patch (24×24 px)" in small.stderr
    (tmp_path / "broken.png").write_bytes(user.read_bytes()[:300])
    broken = upscale(tmp_path / "broken.png", tmp_path / "x.png", "--scale", 2)
    assert broken.returncode == 2 and "cannot read it as an image" in broken.stderr
    assert "Traceback" not in small.stderr + broken.stderr + unknown_scale.stderr


def test_checkpoint_configs_rebuild_the_dtb_placement_they_were_trained_with():
    """A checkpoint records SHSR's DTB placement; one written before it did (no key) was trained on the trunk and
    must be rebuilt so, or its weights would load into a network that computes something else."""
    from repflow.families.sr.models import DEFAULT_DTB_PLACEMENT, SHSRBlock
    from repflow.families.sr.stages.train import build_from_config, model_config

    params = parse_params({"sr": {"train": {"channels": 4, "blocks": 1}}})
    config = model_config(params, 2)
    assert config["dtb_placement"] == DEFAULT_DTB_PLACEMENT

    def placements(cfg):
        return {m.placement for m in build_from_config(cfg).modules() if isinstance(m, SHSRBlock)}

    assert placements(config) == {DEFAULT_DTB_PLACEMENT}
    assert placements({k: v for k, v in config.items() if k != "dtb_placement"}) == {"trunk"}
    edsr = model_config(parse_params({"sr": {"train": {"model": "edsr", "channels": 4, "blocks": 1}}}), 2)
    assert "dtb_placement" not in edsr and build_from_config(edsr).config["arch"] == "edsr"
