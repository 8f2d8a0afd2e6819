"""``repflow compare`` (the image family's on-demand compare stage) on the tiny digits: the same starting
point for every method, the table, MLflow child runs, the budgets, and the on-demand wiring."""
from __future__ import annotations

import json

import polars as pl
import pytest
import torch

from repflow.families.image.train_methods import TRAIN_METHODS
from tests.conftest import tiny_params

COMPARE = {"methods": ["simclr", "acl"], "seeds": [0, 1], "epochs": 1, "few_label": [1, 5], "few_label_draws": 2,
           "max_test": 40}


def _params(**compare):
    from repflow.family import parse_params

    return parse_params(tiny_params(train={"adversarial": {"steps": 1}}, compare={**COMPARE, **compare}))


@pytest.fixture(scope="module")
def zoo(tiny_shards, tmp_path_factory):
    import mlflow

    from repflow import tracking
    from repflow.stage import run_stage

    root = tmp_path_factory.mktemp("compare-zoo")
    tracking.configure(root)
    out = run_stage("image.zoo", _params(), {"shards": tiny_shards}, root / "zoo")
    mlflow.set_tracking_uri("")
    return out


@pytest.mark.parametrize("method", list(TRAIN_METHODS))
def test_every_method_of_a_seed_starts_from_the_same_encoder(tiny_shards, method):
    """The fairness rule: an arm's encoder weights at step 0 depend on the seed only, not on the method (dual
    batch norm adds a second set of BN statistics, which start at the same values)."""
    from repflow.families.image.stages._training import new_models
    from repflow.families.image.stages.compare import arm_params
    from repflow.shards import ShardSet

    data = ShardSet(tiny_shards)
    p = _params()
    reference = new_models(arm_params(p, "simclr", 3), data)[0].state_dict()
    encoder = new_models(arm_params(p, method, 3), data)[0].state_dict()
    other_seed = new_models(arm_params(p, method, 4), data)[0].state_dict()
    convs = [k for k, v in reference.items() if v.ndim == 4]
    assert convs
    for k in convs:
        assert torch.equal(encoder[k], reference[k]), k
    assert not all(torch.equal(other_seed[k], reference[k]) for k in convs)


def test_compare_stage_table_child_runs_and_reference(tiny_shards, zoo, ray_session, mlflow_tmp):
    import mlflow

    from repflow.stage import run_stage

    p = _params(seeds=[0])
    out = run_stage("image.compare", p, {"shards": tiny_shards, "zoo": zoo}, mlflow_tmp / "compare")
    table = pl.read_parquet(out / "comparison.parquet")
    assert table["method"].to_list() == ["init", "simclr", "acl"] and table["seed"].to_list() == [0, 0, 0]
    init = table.filter(pl.col("method") == "init")
    assert init["epochs"].to_list() == [0.0] and init["train_cpu_seconds"].to_list() == [0.0]
    trained = table.filter(pl.col("method") != "init")
    assert (trained["epochs"] == 1.0).all() and (trained["train_cpu_seconds"] > 0).all()
    for col in ("linear_acc", "few_label_1", "few_label_5", "robust_acc", "transfer_success"):
        assert table[col].is_between(0.0, 1.0).all(), col
    assert (table["robust_acc"] <= table["linear_acc"] + 0.1).all()  # a subset of 40 vs the whole test split
    assert (table["peak_rss_mb"] > 50).all() and (table["peak_extra_mb"] >= 0).all()
    # every arm's encoder is kept; the reference is the untrained start the trained arms of its seed left
    from repflow.checkpoints import load_tensors
    from repflow.families.image.models import build_encoder

    init_state, init_config = load_tensors(out / "encoders" / "init-seed0.safetensors")
    simclr_state, _ = load_tensors(out / "encoders" / "simclr-seed0.safetensors")
    build_encoder(init_config).load_state_dict(init_state)
    conv = next(k for k, v in init_state.items() if v.ndim == 4)
    assert init_config["method"] == "init" and not torch.equal(init_state[conv], simclr_state[conv])
    # the reference's batch-norm statistics were measured on the training images, not left at 0 and 1
    means = [v for k, v in init_state.items() if k.endswith("running_mean")]
    assert means and all(m.abs().sum() > 0 for m in means)
    assert table.filter(pl.col("method") == "acl")["paradigm"].to_list() == ["contrastive"]
    summary = pl.read_parquet(out / "summary.parquet")
    assert summary["method"].to_list() == ["init", "simclr", "acl"] and (summary["seeds"] == 1).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["simclr.linear_acc"] == pytest.approx(table.filter(pl.col("method") == "simclr")["linear_acc"]
                                                         .mean())
    assert "± " in (out / "comparison.md").read_text()
    stage_run = mlflow.search_runs(filter_string="tags.`repflow.stage` = 'image.compare'", output_format="list")
    assert len(stage_run) == 1
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{stage_run[0].info.run_id}'",
                                  output_format="list")
    assert sorted(r.info.run_name for r in children) == sorted(f"compare/{m}/seed0" for m in ("init", "simclr", "acl"))
    acl0 = next(r for r in children if r.info.run_name == "compare/acl/seed0")
    assert acl0.data.metrics["linear_acc"] == pytest.approx(
        table.filter((pl.col("method") == "acl") & (pl.col("seed") == 0))["linear_acc"][0])


def test_an_arm_repeats_exactly_and_a_seconds_budget_stops_it(tiny_shards, zoo, one_thread):
    from repflow.families.image.stages.compare import prepare, run_arm

    p = _params()
    data = prepare(p, tiny_shards, zoo, None)
    timing = ("train_cpu_seconds", "train_wall_seconds", "probe_seconds", "peak_rss_mb", "peak_extra_mb")
    # three epochs, so that a budget stopped after its first batches is well under it in CPU seconds even when
    # another test process shares the cores (one epoch of this tiny arm is about 0.1 s)
    p3 = _params(epochs=3)
    first, again = (run_arm({"method": "simclr", "seed": 0}, data, p3, "cpu")["row"] for _ in range(2))
    assert {k: v for k, v in first.items() if k not in timing} == {k: v for k, v in again.items() if k not in timing}
    # a 1 ms budget: any first batch exceeds it (on a quiet machine a whole tiny epoch fit in 0.05 s and ran out)
    budgeted = run_arm({"method": "simclr", "seed": 0}, data, _params(epochs=None, seconds=0.001), "cpu")["row"]
    assert 0 < budgeted["epochs"] < 1  # stopped inside the first epoch, after at least one batch
    assert budgeted["train_cpu_seconds"] < first["train_cpu_seconds"]


@pytest.mark.slow
def test_compare_is_on_demand_and_skips_what_it_does_not_read():
    from repflow.dvc_stages import dvc_yaml
    from repflow.family import parse_params
    from repflow.family import get_family

    image = get_family("image")
    assert "compare" not in [s.name for s in image.stages_to_run()]
    assert "image-compare" not in dvc_yaml()
    without_genrep = parse_params(tiny_params(compare=COMPARE))
    with_genrep = parse_params(tiny_params(compare={**COMPARE, "methods": ["simclr", "genrep"]}))
    assert [s.name for s in image.stages_to_run(["compare"], without_genrep)] == ["prep", "zoo", "compare"]
    assert [s.name for s in image.stages_to_run(["compare"], with_genrep)] == ["prep", "generate", "zoo", "compare"]


@pytest.mark.parametrize("compare, message", [
    ({"methods": ["simclr", "nope"]}, "compare.methods"),
    ({"epochs": 2, "seconds": 10.0}, "exactly one of compare.epochs"),
    ({"epochs": None}, "exactly one of compare.epochs"),
    ({"seeds": [0, 0]}, "no repeats"),
    ({"few_label": [0, 5]}, ">= 1"),
    ({"lr": {"nope": 0.1}}, "compare.lr"),
    ({"lr": {"bigan": 0.0}}, "compare.lr"),
])
def test_bad_compare_params_name_the_key(compare, message):
    from repflow.config import ParamsError
    from repflow.family import parse_params

    with pytest.raises(ParamsError, match=message):
        parse_params(tiny_params(compare={**COMPARE, **compare}))


def test_cli_compare_turns_its_options_into_overrides(monkeypatch, tmp_path):
    from repflow import cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_run", lambda args: seen.update(vars(args)) or 0)
    assert cli.main(["compare", "--methods", "simclr", "acl", "--seeds", "0", "1", "--seconds", "30",
                     "--workdir", str(tmp_path), "-P", "train.width=8"]) == 0
    assert seen["family"] == "image" and seen["stage"] == ["compare"]
    assert seen["P"] == ["compare.methods=['simclr', 'acl']", "compare.seeds=[0, 1]", "compare.seconds=30.0",
                         "compare.epochs=null", "train.width=8"]
    from repflow.family import parse_params
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in seen["P"][:4])}
    c = parse_params(tiny_params(compare={k.split(".")[1]: v for k, v in overrides.items()})).compare
    assert (c.methods, c.seeds, c.seconds, c.epochs) == (["simclr", "acl"], [0, 1], 30.0, None)


def test_cli_compare_picks_methods_by_paradigm(monkeypatch, tmp_path):
    from repflow import cli
    from repflow.families.image.train_methods import TRAIN_METHODS

    seen = {}
    monkeypatch.setattr(cli, "cmd_run", lambda args: seen.update(vars(args)) or 0)
    assert cli.main(["compare", "--paradigm", "generative", "generative-contrastive", "--epochs", "2",
                     "--workdir", str(tmp_path)]) == 0
    picked = [n for n in TRAIN_METHODS if TRAIN_METHODS[n].paradigm in ("generative", "generative-contrastive")]
    assert {"masked_ae", "bigan"} <= set(picked) and "simclr" not in picked
    assert seen["P"] == [f"compare.methods={picked}", "compare.epochs=2", "compare.seconds=null"]


@pytest.mark.slow
def test_an_arm_trains_at_compare_lr_where_it_names_the_method():
    from repflow.families.image.stages.compare import arm_params

    p = _params(lr={"bigan": 2e-4})
    assert arm_params(p, "bigan", 0).train.lr == 2e-4
    assert arm_params(p, "simclr", 0).train.lr == p.train.lr == 0.003
    assert arm_params(p, "genrep", 0).train.data == "generated" and arm_params(p, "acl", 1).seed == 1
