"""The registry's two ends, written once: every register stage's params default to its declaration's
``ModelSpec``, and every command that loads a registered model refuses a checkpoint that carries a pickle
(one line, exit 2) without ever unpickling it."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from repflow.family import families


def _register_stages():
    return [(fam, stage) for fam in families() for stage in fam.stages
            if any(spec.alias for spec in stage.registers)]


@pytest.mark.parametrize(("fam", "stage"), _register_stages(), ids=lambda v: getattr(v, "qualname", None) or v.name)
def test_every_register_stage_params_default_to_its_declared_model(fam, stage):
    section_key = stage.params[0].split(".")[-1]
    section = fam.params[section_key]
    defaults = {name: field.default for name, field in section.model_fields.items()}
    first = stage.registers[0]
    name = (f"{defaults['model_prefix']}-x<scale>" if "model_prefix" in defaults else defaults["model_name"])
    assert (name, defaults["criterion"], defaults["alias"]) == (first.name, first.metric, first.alias)
    assert {spec.alias for spec in stage.registers} == {defaults["alias"]}  # one alias param gates every model
    assert all(spec.direction in ("max", "min") and spec.metric for spec in stage.registers)


def test_every_family_with_a_register_stage_is_checked():
    assert {fam.name for fam, _ in _register_stages()} == {"image", "audio", "sr", "video", "ctr", "text", "av"}


class _Planted:
    """Unpickling this creates ``path``: the proof that a loader ran pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _plant(folder: Path, name: str, family: str, files: dict[str, bytes], tags: dict[str, str]) -> None:
    """A registered version of ``name`` whose ``checkpoint/`` holds ``files``, tagged as ``family``'s."""
    import mlflow

    folder.mkdir()
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), artifact_path="checkpoint")
    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/checkpoint", run_id=run.info.run_id,
                                          tags={"repflow.family": family, **(tags or {})})
    client.set_registered_model_alias(name, "champion", version.version)


# command argv (model ref last), family, the checkpoint's file stem, extra tags of the version, how the pickle
# hides: as a .pt file beside the config, or named like the safetensors file the command reads
COMMANDS = {
    "embed-audio": (["embed-audio", "{wav}", "--model"], "audio", "encoder", {"repflow.sample_rate": "16000"},
                    "pickle file"),
    "upscale": (["upscale", "{png}", "{out}", "--scale", "2", "--model"], "sr", "x2", {"repflow.scale": "2"},
                "pickle named .safetensors"),
    "watermark": (["watermark", "extract", "{mp4}", "--model"], "video", "watermarker", {}, "pickle file"),
    "recommend": (["recommend", "1", "--model"], "ctr", "model", {}, "pickle named .safetensors"),
    "define": (["define", "word", "--model"], "text", "forward", {}, "pickle file"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_refuse_a_pickled_checkpoint_without_unpickling_it(command, mlflow_tmp, capsys):
    from repflow.cli import main

    argv, family, stem, tags, disguise = COMMANDS[command]
    marker = mlflow_tmp / "unpickled"
    payload = pickle.dumps(_Planted(marker))
    files = ({f"{stem}.pt": payload, f"{stem}.json": b"{}"} if disguise == "pickle file"
             else {f"{stem}.safetensors": payload, f"{stem}.json": b"{}"})
    _plant(mlflow_tmp / "planted", f"planted-{family}", family, files, tags)
    paths = {"wav": mlflow_tmp / "in.wav", "png": mlflow_tmp / "in.png", "out": mlflow_tmp / "out.png",
             "mp4": mlflow_tmp / "in.mp4"}
    soundfile.write(paths["wav"], np.zeros(1600, dtype=np.float32), 16000)
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(paths["png"])
    from tests.test_video_io import make_video_with_audio, moving_frames

    make_video_with_audio(paths["mp4"], moving_frames())  # a real video: the command checks its input first
    args = [a.format(**paths) for a in argv] + [f"planted-{family}@champion", "--workdir", str(mlflow_tmp)]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    why = f"holds '{stem}.pt'" if disguise == "pickle file" else f"{stem}.safetensors is not a readable safetensors"
    assert f"planted-{family}@champion" in err[0] and why in err[0], err[0]
    assert not marker.exists()
    assert not paths["out"].exists()


def test_a_local_folder_is_verified_like_a_registered_checkpoint(tmp_path):
    import torch

    from repflow.checkpoints import CheckpointError, save_tensors
    from repflow.registration import registered_checkpoint

    save_tensors(tmp_path / "watermarker.safetensors", {"w": torch.zeros(2)}, {"model": "x"})
    found = registered_checkpoint(str(tmp_path), family="video", what="a watermarker",
                                  needs=("watermarker.safetensors",))
    assert found.folder == tmp_path and found.tags == {}
    with pytest.raises(CheckpointError, match="lacks probes.safetensors"):
        registered_checkpoint(str(tmp_path), family="audio", what="an audio encoder", needs=("probes.safetensors",))
    (tmp_path / "extra.pkl").write_bytes(pickle.dumps(1))
    with pytest.raises(CheckpointError, match="extra.pkl"):
        registered_checkpoint(str(tmp_path), family="video", what="a watermarker", needs=())
