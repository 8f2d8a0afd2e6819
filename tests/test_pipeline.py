"""The main flow under a real Prefect server, Ray and MLflow (sqlite), on tiny params."""
import json
import subprocess
import sys

import pytest

from repflow.shards import ShardSet
from tests.conftest import write_params

pytestmark = pytest.mark.slow


def task_states(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name.rsplit("-", 1)[0].removeprefix("image."): r.state.name for r in runs}


def subflow_task_states(flow_name: str, task_prefix: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs])))
    return [t.state.name for t in tasks if t.name.startswith(task_prefix)]


def run_flow(ws, overrides=None, stages=None):
    from repflow.families.image.flow import image_flow

    state = image_flow(params_file="params.yaml", overrides=overrides or [], workdir=str(ws), stages=stages,
                       return_state=True)
    assert state.is_completed(), state
    return state.result(), state.state_details.flow_run_id


def test_main_flow_end_to_end(prefect_harness, ray_session, tmp_path, monkeypatch):
    import mlflow

    ws = tmp_path / "ws"
    write_params(ws)
    monkeypatch.chdir(ws)

    summary, fr1 = run_flow(ws)
    evaluation = summary["stages"]["evaluate"]
    assert 0.0 <= evaluation["robust_acc_mean"] <= evaluation["clean_acc"] <= 1.0
    # the transfer grid ran as one Prefect task per (attack, fusion, ε) cell on Ray: 1 attack × 2 × 1
    assert subflow_task_states("transfer-grid", "attack-cell") == ["Completed", "Completed"]
    assert 0.0 <= summary["stages"]["transfer"]["encoder_transfer_success_svd"] <= 1.0
    assert evaluation["clean_acc"] > 0.2  # 10 classes: a trained probe on real digits beats chance
    assert ShardSet(ws / "data" / "prep").count("train") > 0
    assert (ws / "reports" / "image-run-report.md").read_text().startswith("# repflow run report")
    assert (ws / "reports" / "evaluate.metrics.json").exists() and (ws / "artifacts" / "train.metrics.json").exists()
    assert set(task_states(fr1).values()) == {"Completed"}

    runs = mlflow.search_runs(experiment_names=["repflow"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1
    stages = ("distill", "evaluate", "generate", "prep", "register", "select", "train", "transfer", "zoo")
    assert sorted(r.info.run_name for r in children) == [f"image.{s}" for s in stages]
    train_run = next(r for r in children if r.info.run_name == "image.train")
    assert train_run.data.tags["repflow.prefect_flow_run_id"] == str(fr1)
    assert train_run.data.tags["repflow.inputs.shards"] == ShardSet(ws / "data" / "prep").digest
    assert str(mlflow.MlflowClient().get_model_version_by_alias("repflow-encoder", "champion").version) == "1"
    assert mlflow.MlflowClient().get_registered_model("repflow-generator").name == "repflow-generator"
    registered = {m.name for m in mlflow.MlflowClient().search_registered_models()}
    assert registered >= {"repflow-zoo-convnet_bn_gap", "repflow-zoo-mlp"}
    assert "Fréchet distance" in (ws / "reports" / "image-run-report.md").read_text()

    # same params: every stage is a Prefect cache hit and nothing on disk is rewritten
    stamp = (ws / "artifacts" / "train" / "manifest.json").stat().st_mtime_ns
    _, fr2 = run_flow(ws)
    assert set(task_states(fr2).values()) == {"Cached"}
    assert (ws / "artifacts" / "train" / "manifest.json").stat().st_mtime_ns == stamp

    # another attack protocol: train is reused, the new version is registered but never compared with the
    # champion's score (measured under another protocol), so the alias stays
    summary3, fr3 = run_flow(ws, ["evaluate.eps=[0.5]", "evaluate.pgd_steps=5"])
    states = task_states(fr3)
    assert states["prep"] == states["generate"] == states["train"] == "Cached" and states["evaluate"] == "Completed"
    reg = json.loads((ws / "reports" / "register" / "register.json").read_text())
    assert reg["version"] == "2" and not reg["alias_moved"]
    assert "another protocol (differs in eps, steps)" in reg["alias_reason"] and reg["protocol"]["steps"] == 5
    assert str(mlflow.MlflowClient().get_model_version_by_alias("repflow-encoder", "champion").version) == "1"

    # a deleted output is rebuilt, not taken from Prefect's cache
    import shutil
    shutil.rmtree(ws / "reports" / "evaluate")
    run_flow(ws, ["evaluate.eps=[0.5]", "evaluate.pgd_steps=5"])
    assert (ws / "reports" / "evaluate" / "metrics.json").exists()

    # the on-demand compare stage (repflow compare): only it runs, on the cached prep and zoo, its arms as
    # Prefect tasks on Ray; the untrained reference and one method, one seed
    summary5, fr5 = run_flow(ws, ["compare.methods=[simclr]", "compare.seeds=[0]", "compare.epochs=1",
                                  "compare.few_label=[1]", "compare.max_test=20"], stages=["compare"])
    assert task_states(fr5) == {"prep": "Cached", "zoo": "Cached", "compare-arms": "Completed"}  # the subflow
    assert subflow_task_states("compare-arms", "compare-arm") == ["Completed", "Completed"]
    assert 0.0 <= summary5["stages"]["compare"]["simclr.linear_acc"] <= 1.0

    # the registered champion loads in a new process and embeds a batch
    code = ("import mlflow, torch; m = mlflow.pytorch.load_model('models:/repflow-encoder@champion'); "
            "print(tuple(m(torch.rand(5, 1, 28, 28)).shape))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(5, 32)"  # small_cnn width 8 → 4 * 8 features

    show = subprocess.run([sys.executable, "-m", "repflow", "models", "show", "repflow-encoder@champion",
                           "--workdir", str(ws)], capture_output=True, text=True, timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    assert "version 1  aliases: champion" in show.stdout and "robust_acc_mean" in show.stdout
    assert "input.shards" in show.stdout and "git_commit" in show.stdout and "train.epochs" in show.stdout
    # lineage: from the champion back through register, train, select, prep to the raw digits on disk
    from repflow import tracking
    steps = tracking.trace_lineage("repflow-encoder@champion")
    by_stage = {s["stage"].removeprefix("image."): s for s in steps}
    assert [s["stage"] for s in steps][:1] == ["image.register"]
    assert {"train", "evaluate", "select", "prep"} <= set(by_stage)
    assert by_stage["register"]["inputs"]["encoder"] == (by_stage["train"]["output_digest"], "image.train")
    assert by_stage["train"]["inputs"]["shards"] == (ShardSet(ws / "data" / "prep").digest, "image.prep")
    assert by_stage["prep"]["source"] == "mnist5k" and by_stage["prep"]["source_origin"].endswith("mnist_5k.csv.gz")
    for s in steps:
        assert s["git_commit"] and s["params_digest"] and s["dvc_stage"] == s["stage"].replace(".", "-")
        assert s["prefect_flow_run_id"] == str(fr1) and s["launched_by"] == "prefect"
    walk = subprocess.run([sys.executable, "-m", "repflow", "lineage", "repflow-encoder@champion",
                           "--workdir", str(ws)], capture_output=True, text=True, timeout=300)
    assert walk.returncode == 0, walk.stderr[-2000:]
    assert "← raw source mnist5k at" in walk.stdout and walk.stdout.count("dvc-stage") == len(steps)

    missing = subprocess.run([sys.executable, "-m", "repflow", "models", "show", "repflow-encoder@nope",
                              "--workdir", str(ws)], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "no alias 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    for ref in ("repflow-encoder@nope", "no-such-model@champion"):
        bad = subprocess.run([sys.executable, "-m", "repflow", "lineage", ref, "--workdir", str(ws)],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and ref.split("@")[0] in bad.stderr


def test_configure_follows_the_workspace_unless_the_user_set_a_uri(tmp_path):
    import mlflow

    from repflow import tracking

    tracking.configure(tmp_path / "a")
    tracking.configure(tmp_path / "b")  # mlflow.set_tracking_uri exported the first URI to the environment
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"


def test_stage_cache_keys_follow_params_inputs_and_the_output_folder(tmp_path):
    """Prefect's cached result is the output path: the same params in another work folder must miss."""
    from repflow.family import parse_params, resolve_stage
    from repflow.flow import stage_task
    from tests.conftest import tiny_params

    key = stage_task(resolve_stage("image.prep")).cache_key_fn
    params = parse_params(tiny_params())

    def key_for(p, out):
        return key(None, {"params": p, "inputs": {}, "out": out, "tracking_context": {}})

    a = key_for(params, tmp_path / "a" / "data" / "prep")
    assert a == key_for(params, tmp_path / "a" / "data" / "prep")
    assert a != key_for(params, tmp_path / "b" / "data" / "prep")
    assert a != key_for(parse_params(tiny_params(seed=1)), tmp_path / "a" / "data" / "prep")
