"""A flow killed during train resumes from its checkpoint; runs in separate work folders do not clash.

One scenario and one test that checks both (two tests could be sent to two pytest-xdist processes, each
building the scenario), because each flow run costs tens of seconds on 2 cores: run A (long training) and
run B (other params, other folder) start at once as real ``repflow run`` processes against the session's
Prefect server; a third run into A's folder is turned away; A is SIGKILLed in the middle of training while
B finishes; then A is started again. The runs stop at the train stage (``--stage image.train``: prep,
select, train; training on real data reads no generated views): the stages after it add minutes of CPU
and nothing to what is tested here (tests/test_pipeline.py runs them all).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from repflow.checkpoints import load_tensors
from repflow.manifest import read_manifest
from tests.conftest import child_env, write_params
from tests.test_pipeline import task_states

pytestmark = pytest.mark.slow

EPOCHS_A = 40
STAGE_FOLDERS = {"prep": "data/prep", "select": "data/select", "train": "artifacts/train"}


def _start(ws: Path, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "repflow", "run", "--stage", "image.train", "--workdir", str(ws)],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) while waiting for {what}:\n"
                        + (log.read_text()[-3000:] if log else ""))
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run and everything it started (its temporary servers and Ray processes too)."""
    family = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def crash_scenario(prefect_harness, tmp_path_factory):
    from prefect.settings import get_current_settings

    root = tmp_path_factory.mktemp("resume")
    ws_a, ws_b = root / "a", root / "b"
    write_params(ws_a, train={"epochs": EPOCHS_A, "checkpoint_every": 1})
    write_params(ws_b, seed=1, train={"epochs": 3})
    env = child_env(PREFECT_API_URL=str(get_current_settings().api.url))
    run_a = _start(ws_a, env, root / "a1.log")
    run_b = _start(ws_b, env, root / "b.log")

    # a second run into A's folder while A holds it: refused at once, in one line
    _wait_for(lambda: "pid" in (ws_a / ".repflow.lock").read_text() if (ws_a / ".repflow.lock").exists() else False,
              240, "run A to hold its work folder", run_a, root / "a1.log")
    intruder = subprocess.run([sys.executable, "-m", "repflow", "run", "--workdir", str(ws_a)], env=env,
                              capture_output=True, text=True, timeout=300)

    # kill A once two epochs of training are checkpointed
    progress = ws_a / "artifacts" / ".train.progress" / "last.safetensors"

    def epochs_saved() -> int:
        try:
            return load_tensors(progress)[1]["epoch"] if progress.is_file() else 0
        except Exception:  # caught mid-rename: try again
            return 0

    _wait_for(lambda: epochs_saved() >= 2, 400, "two training checkpoints in run A", run_a, root / "a1.log")
    _kill_group(run_a)
    killed_at = epochs_saved()
    assert run_b.wait(timeout=600) == 0, (root / "b.log").read_text()[-3000:]
    # the stages that finished before the kill
    stamps = {stage: (ws_a / folder / "manifest.json").stat().st_mtime_ns for stage, folder in STAGE_FOLDERS.items()
              if (ws_a / folder / "manifest.json").is_file()}
    assert not (ws_a / "artifacts" / "train" / "manifest.json").exists()

    # A again, in this process, against the same server and result storage
    from repflow.families.image.flow import image_flow

    state = image_flow(params_file="params.yaml", workdir=str(ws_a), stages=["image.train"], return_state=True)
    assert state.is_completed(), state
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["repflow-image"])))
    a_runs = sorted(r.state.name for r in runs if Path(r.parameters["workdir"]).resolve() == ws_a.resolve())
    return {"a": ws_a, "b": ws_b, "killed_at": killed_at, "stamps": stamps, "intruder": intruder, "a_runs": a_runs,
            "states": task_states(state.state_details.flow_run_id)}


def test_a_killed_run_resumes_and_runs_in_separate_folders_do_not_clash(crash_scenario):
    _killed_run_reuses_finished_stages_and_resumes_training(crash_scenario)
    _runs_in_separate_workdirs_do_not_clash(crash_scenario)


def _killed_run_reuses_finished_stages_and_resumes_training(crash_scenario):
    import mlflow

    ws, killed_at = crash_scenario["a"], crash_scenario["killed_at"]
    assert 2 <= killed_at < EPOCHS_A
    states, stamps = crash_scenario["states"], crash_scenario["stamps"]
    assert {"prep", "select"} <= set(stamps) and "train" not in stamps
    assert {stage: states[stage] for stage in stamps} == {stage: "Cached" for stage in stamps}
    assert states["train"] == "Completed"
    for stage, stamp in stamps.items():
        assert (ws / STAGE_FOLDERS[stage] / "manifest.json").stat().st_mtime_ns == stamp, f"{stage} was rewritten"

    mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
    train_runs = mlflow.search_runs(experiment_names=["repflow"], filter_string="tags.`repflow.stage` = 'image.train'",
                                    order_by=["attributes.start_time DESC"], output_format="list")
    assert train_runs[0].data.tags["repflow.resumed_from_epoch"] == str(killed_at)
    history = json.loads((ws / "artifacts" / "train" / "history.json").read_text())
    assert [h["epoch"] for h in history["history"]][-EPOCHS_A:] == list(range(1, EPOCHS_A + 1))
    assert not (ws / "artifacts" / ".train.progress").exists()

    # the killed attempt does not stay "Running" forever: the restart closed it in Prefect and MLflow
    assert crash_scenario["a_runs"] == ["Completed", "Crashed"]
    assert [r.info.status for r in train_runs] == ["FINISHED", "KILLED"]
    parents = mlflow.search_runs(experiment_names=["repflow"], filter_string="attributes.run_name = 'image'",
                                 order_by=["attributes.start_time DESC"], output_format="list")
    assert [r.info.status for r in parents] == ["FINISHED", "KILLED"]


def _runs_in_separate_workdirs_do_not_clash(crash_scenario):
    import mlflow

    ws_a, ws_b = crash_scenario["a"], crash_scenario["b"]
    intruder = crash_scenario["intruder"]
    assert intruder.returncode == 2
    assert f"--workdir {ws_a}: in use by another repflow run (pid" in intruder.stderr
    assert "Traceback" not in intruder.stderr and len(intruder.stderr.strip().splitlines()) == 1

    # each folder holds complete outputs made from its own params, and nothing half-written
    for ws, seed, epochs in ((ws_a, 0, EPOCHS_A), (ws_b, 1, 3)):
        train = read_manifest(ws / "artifacts" / "train", stage="image.train")
        assert train["meta"]["images"] > 0
        assert not list(ws.rglob(".*.tmp-*")), list(ws.rglob(".*.tmp-*"))
        mlflow.set_tracking_uri(f"sqlite:///{ws / 'mlflow.db'}")
        runs = mlflow.search_runs(experiment_names=["repflow"], filter_string="tags.`repflow.stage` = 'image.train'",
                                  output_format="list")
        assert {r.data.params["train.epochs"] for r in runs} == {str(epochs)}
        assert {r.data.params["seed"] for r in runs} == {str(seed)}
    assert (read_manifest(ws_a / "data" / "prep")["digest"] != read_manifest(ws_b / "data" / "prep")["digest"])
