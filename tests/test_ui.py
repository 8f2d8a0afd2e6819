"""End to end with real servers: ``repflow ui`` starts Prefect and MLflow, ``repflow run`` sends the tiny
pipeline up to its register stage to them, and what a person would look at is checked where they would look:
the Prefect API (flow run, task states, artifacts), the MLflow API (parent and child runs, the registered
model), and the flow-run page of the Prefect UI in headless Chromium (the screenshot is kept in
``test-artifacts/``). Generate, distill, zoo and transfer are left out (``--stage image.register``): they
add minutes of CPU and no other kind of record; tests/test_pipeline.py checks the transfer grid's subflow."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO, child_env, write_params

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts"
STAGES = [f"image.{s}" for s in ("prep", "select", "train", "evaluate", "register")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(proc: subprocess.Popen, marker: str, timeout_s: float) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"repflow ui exited ({proc.wait()}) before printing {marker!r}:\n" + "".join(lines))
        lines.append(line)
        if marker in line:
            return lines
    pytest.fail(f"repflow ui printed no {marker!r} within {timeout_s} s:\n" + "".join(lines))


def _chromium(args: list[str], url: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--window-size=1400,1000", "--virtual-time-budget=30000",
                           *args, url], capture_output=True, text=True, timeout=180)


def test_flow_run_against_real_servers_shows_in_both_uis(tmp_path):
    import mlflow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ws = tmp_path / "ws"
    write_params(ws)
    p_port, m_port = _free_port(), _free_port()
    env = child_env(PREFECT_HOME=str(tmp_path / "prefect-home"))
    ui = subprocess.Popen([sys.executable, "-m", "repflow", "ui", "--workdir", str(ws), "--prefect-port", str(p_port),
                           "--mlflow-port", str(m_port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)
    try:
        printed = "".join(_read_until(ui, "Ctrl-C stops both", 300))
        prefect_url, mlflow_url = f"http://127.0.0.1:{p_port}", f"http://127.0.0.1:{m_port}"
        assert f"export PREFECT_API_URL={prefect_url}/api" in printed
        assert f"export MLFLOW_TRACKING_URI={mlflow_url}" in printed
        family = psutil.Process(ui.pid).children(recursive=True)

        run = subprocess.run([sys.executable, "-m", "repflow", "run", "--stage", "image.register", "--workdir",
                              str(ws)], capture_output=True, text=True, timeout=900,
                             env={**env, "PREFECT_API_URL": f"{prefect_url}/api", "MLFLOW_TRACKING_URI": mlflow_url})
        assert run.returncode == 0, run.stderr[-3000:]
        family += [p for p in psutil.Process(ui.pid).children(recursive=True) if p not in family]

        # --- Prefect: the flow run, its task runs, its artifacts
        with temporary_settings({PREFECT_API_URL: f"{prefect_url}/api"}), get_client(sync_client=True) as client:
            flow_runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["repflow-image"])))
            assert len(flow_runs) == 1 and flow_runs[0].state.name == "Completed"
            fr = flow_runs[0]
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
            states = {t.name.rsplit("-", 1)[0]: t.state.name for t in tasks}
            assert {s: states.get(s) for s in STAGES} == {s: "Completed" for s in STAGES}
            assert not {"image.generate", "image.zoo", "image.distill", "image.transfer"} & set(states)
            artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
        by_key = {a.key: a for a in artifacts if a.key}
        report = by_key["image-run-report"]
        assert report.type == "markdown" and "| ε (×1/255) | robust accuracy |" in report.data
        assert "[evaluate/robust_accuracy.png](file://" in report.data
        assert f"({mlflow_url}/#/experiments/" in by_key["mlflow-run"].data  # a link artifact, stored as markdown
        progress = [a for a in artifacts if a.type == "progress"]
        assert len(progress) == 1 and float(progress[0].data) == 100.0  # train's bar, filled when it finished

        # --- MLflow: one parent run with a child per stage, the registered champion from the register child
        client = mlflow.MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
        exp = client.get_experiment_by_name("repflow")
        runs = client.search_runs([exp.experiment_id])
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1 and parents[0].data.tags["repflow.prefect_flow_run_id"] == str(fr.id)
        children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
        assert sorted(children) == sorted(STAGES)
        champion = client.get_model_version_by_alias("repflow-encoder", "champion")
        assert champion.run_id == children["image.register"].info.run_id
        assert f"/runs/{parents[0].info.run_id})" in by_key["mlflow-run"].data

        # --- the Prefect UI renders the flow-run page with the run's name (skipped without Chromium)
        if shutil.which("chromium") is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "prefect-flow-run.png"
            page = f"{prefect_url}/runs/flow-run/{fr.id}"
            dom = _chromium(["--dump-dom"], page)
            assert fr.name in dom.stdout, f"flow run name {fr.name!r} not rendered on {page}"
            _chromium([f"--screenshot={shot}"], page)
            assert shot.stat().st_size > 10_000
    finally:
        ui.send_signal(signal.SIGINT)
        try:
            code = ui.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            raise
    assert code == 0
    assert "Stopped both servers." in ui.stdout.read()
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after Ctrl-C: {[(p.pid, p.name()) for p in alive]}"
    if shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed (make test installs it as root): the UI page was not checked")
