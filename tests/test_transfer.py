"""The zoo and transfer stages on the tiny digits: the grid's table and plots through the plain Ray
fan-out (the DVC path; the Prefect + RayTaskRunner path runs in test_pipeline), and bad grid params."""
from __future__ import annotations

import json

import polars as pl
import pytest

from repflow.family import parse_params
from repflow.manifest import read_manifest
from tests.conftest import tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory, ray_session):
    from repflow import tracking
    from repflow.stage import run_stage

    root = tmp_path_factory.mktemp("transfer")
    tracking.configure(root)
    p = parse_params(tiny_params(zoo={"members": ["convnet_bn_gap", "convnet", "convnet_pgd"]}))
    sel = run_stage("image.select", p, {"shards": tiny_shards}, root / "select")
    enc = run_stage("image.train", p, {"shards": tiny_shards, "selection": sel}, root / "train")
    ev = run_stage("image.evaluate", p, {"shards": tiny_shards, "encoder": enc}, root / "evaluate")
    z = run_stage("image.zoo", p, {"shards": tiny_shards}, root / "zoo")
    return p, root, enc, ev, z


def test_zoo_members_and_grid_table(tiny_shards, trained):
    from repflow.stage import run_stage

    p, root, enc, ev, z = trained
    members = json.loads((z / "zoo.json").read_text())
    assert [m["role"] for m in members] == ["surrogate", "target", "defence"]
    assert members[0]["member"] == p.zoo.surrogate == "convnet_bn_gap"
    assert all(m["registered"].startswith(f"repflow-zoo-{m['member']}/") for m in members)
    p = parse_params({**p.model_dump(mode="json"), "transfer": {**p.transfer.model_dump(), "attacks": ["mifgsm", "pgd"],
                                                                "eps": [0.05, 0.2]}})
    out = run_stage("image.transfer", p, {"shards": tiny_shards, "zoo": z, "encoder": enc, "evaluation": ev},
                    root / "transfer")
    table = pl.read_parquet(out / "grid.parquet")
    assert table.height == 2 * 2 * 2 * 4  # attacks × fusion × ε × (3 zoo members + encoder)
    assert set(table["target"]) == {"convnet_bn_gap", "convnet", "convnet_pgd", "encoder+probe"}
    assert table.filter(pl.col("white_box"))["target"].unique().to_list() == ["convnet_bn_gap"]
    big = table.filter((pl.col("eps") == 0.2) & pl.col("white_box"))
    small = table.filter((pl.col("eps") == 0.05) & pl.col("white_box"))
    assert big["success_rate"].mean() >= small["success_rate"].mean()
    assert big["success_rate"].min() > 0.5  # white box at a large ε fools the surrogate on most inputs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["svd_fusion_gain"] == pytest.approx(metrics["mean_transfer_success_svd"]
                                                       - metrics["mean_transfer_success_base"])
    assert {"heatmap.png", "success_vs_eps.png", "grid.parquet"} <= read_manifest(out)["files"].keys()


def test_unknown_split_layer_fails_before_the_grid(tiny_shards, trained):
    from repflow.stage import run_stage

    p, root, enc, ev, z = trained
    p = parse_params({**p.model_dump(mode="json"), "transfer": {**p.transfer.model_dump(), "svd_layer": "block9"}})

    def never(*args):
        raise AssertionError("the grid started")

    with pytest.raises(ValueError, match=r"svd_layer = 'block9'.*valid layers: \['block1', 'block2', 'block3'\]"):
        run_stage("image.transfer", p, {"shards": tiny_shards, "zoo": z, "encoder": enc, "evaluation": ev},
                  root / "bad", fan_out=never)
    assert not (root / "bad").exists()
