"""The CTR family as a user meets it: params errors naming the key, a time split with no future interaction
in training, training that resumes exactly after a crash, and one tiny run of its Prefect flow (with the
DeepCTR-Torch peer) through the registry to ``repflow recommend``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from repflow.config import ParamsError
from repflow.family import parse_params
from repflow.manifest import read_manifest
from tests.conftest import child_env, tiny_params
from tests.ctr_tiny import COLUMNS, tiny_frame, write_tiny

REPO = Path(__file__).resolve().parents[1]

TINY_CTR = {
    "prep": {"source": "table", "path": "interactions.csv", "columns": COLUMNS, "history": 5, "min_word_count": 1,
             "year_buckets": 3, "popularity_buckets": 3, "click_rate_buckets": 3},
    "train": {"dim": 4, "user_dim": 4, "attention_hidden": 4, "hidden": [8], "specific_dim": 4, "invariant_dim": 4,
              "epochs": 1, "batch_size": 32},
    "evaluate": {"peer": True},
}


def ctr_params(**sections) -> dict:
    ctr = {name: dict(values) for name, values in TINY_CTR.items()}
    for name, values in sections.items():
        ctr.setdefault(name, {}).update(values)
    return {**tiny_params(), "ctr": ctr}


@pytest.mark.parametrize("section, values, expected", [
    ("prep", {"source": "movielens", "columns": {"user": "uid", "item": "movie"}},
     r"ctr\.prep\.columns.*user.*item.*timestamp.*required"),
    ("prep", {"path": None}, r"ctr\.prep.*source 'table' needs path"),
    ("prep", {"val_fraction": 0.5, "test_fraction": 0.45}, r"ctr\.prep.*leaves under 10%"),
    ("train", {"model": "deepfm"}, r"ctr\.train\.model"),
    ("train", {"hidden": [8, 0]}, r"ctr\.train\.hidden"),
    ("register", {"criterion": "logloss"}, r"ctr\.register\.criterion = 'logloss'; allowed: \['val_auc'"),
])
def test_unusable_settings_are_params_errors_naming_the_key(section, values, expected):
    with pytest.raises(ParamsError, match=expected):
        parse_params(ctr_params(**{section: values}))


def test_training_resumes_after_a_crash_exactly_where_it_stopped(mlflow_tmp, monkeypatch):
    from safetensors.torch import load_file

    from repflow.families.ctr.stages import train as train_stage
    from repflow.stage import run_stage

    write_tiny(mlflow_tmp)
    params = parse_params(ctr_params(train={"epochs": 2, "batch_size": 64}))
    prep = run_stage("ctr.prep", params, {}, mlflow_tmp / "prep")
    meta = read_manifest(prep)["meta"]
    assert meta["cuts"]["val_from"] <= meta["cuts"]["test_from"] and sum(meta["counts"].values()) == len(tiny_frame())
    examples = pl.read_parquet(prep / "examples.parquet")
    last_train = examples.filter(pl.col("split") == "train")["timestamp"].max()
    assert last_train < meta["cuts"]["val_from"] <= examples.filter(pl.col("split") != "train")["timestamp"].min()
    whole = run_stage("ctr.train", params, {"prep": prep}, mlflow_tmp / "whole")
    real = train_stage.train_ctr

    def crash_after_first_epoch(*args, on_epoch, **kwargs):
        def save_then_crash(epoch, stats, opt):
            on_epoch(epoch, stats, opt)
            if epoch == 1:
                raise KeyboardInterrupt("killed")
        return real(*args, on_epoch=save_then_crash, **kwargs)

    monkeypatch.setattr(train_stage, "train_ctr", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_stage("ctr.train", params, {"prep": prep}, mlflow_tmp / "resumed")
    assert (mlflow_tmp / ".resumed.progress" / "model.safetensors").is_file()
    monkeypatch.setattr(train_stage, "train_ctr", real)
    resumed = run_stage("ctr.train", params, {"prep": prep}, mlflow_tmp / "resumed")
    a, b = (load_file(str(d / "model.safetensors")) for d in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((resumed / "model.json").read_text())["history"]
    assert len(history) == 2 and all(0 <= h["val_auc"] <= 1 for h in history)


@pytest.mark.slow
def test_the_ctr_flow_registers_a_model_repflow_recommend_uses(prefect_harness, ray_session, tmp_path, monkeypatch):
    import mlflow

    from repflow.families.ctr.flow import ctr_flow

    ws = tmp_path / "ws"
    ws.mkdir()
    write_tiny(ws)
    (ws / "params.yaml").write_text(yaml.safe_dump(ctr_params(), sort_keys=False))
    monkeypatch.chdir(ws)
    state = ctr_flow(params_file="params.yaml", overrides=[], workdir=str(ws), return_state=True)
    assert state.is_completed(), state
    metrics = state.result()["stages"]["evaluate"]
    for key in ("val_auc", "auc", "gauc", "logloss", "peer_val_auc", "peer_auc", "peer_gauc", "peer_logloss"):
        assert 0 <= metrics[key] <= 1 or key.endswith("logloss") and metrics[key] > 0, (key, metrics[key])
    attention = [metrics[f"attention/{m}"] for m in ("id", "title", "genres", "year", "stats")]
    assert abs(sum(attention) - 1) < 1e-4 and any(k.startswith("auc/popularity_") for k in metrics)
    evaluated = ws / "reports" / "ctr" / "evaluate"
    table = json.loads((evaluated / "summary.json").read_text())["markdown"]
    assert "| marn |" in table and "| deepctr_din (peer) |" in table
    protocol = json.loads((evaluated / "protocol.json").read_text())
    assert protocol["test_impressions"] == metrics["impressions"] and protocol["history"] == 5
    version = mlflow.MlflowClient().get_model_version_by_alias("repflow-ctr", "champion")
    assert version.tags["repflow.family"] == "ctr" and version.tags["repflow.model"] == "marn"
    assert float(version.tags["repflow.score"]) == pytest.approx(metrics["val_auc"])

    def recommend(*args):
        return subprocess.run([sys.executable, "-m", "repflow", "recommend", *args, "--workdir", str(ws)],
                              env=child_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300)

    known = recommend("u3", "--top", "5")
    assert known.returncode == 0, known.stderr[-2000:]
    lines = known.stdout.strip().splitlines()
    seen = set(tiny_frame().filter(pl.col("uid") == "u3")["movie"])
    picked = [line.split()[2] for line in lines]
    scores = [float(line.split()[1]) for line in lines]
    assert len(lines) == 5 and not seen & set(picked) and scores == sorted(scores, reverse=True)
    unknown = recommend("nobody42")
    assert unknown.returncode == 2 and "nobody42" in unknown.stderr and "Traceback" not in unknown.stderr
