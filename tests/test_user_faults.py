"""Faults a user's machine brings: runs a killed process left RUNNING, a work folder whose name holds a quote,
planted symbolic links where repflow writes its lock and server logs, a peer package that calls the network at
import, and the servers ``repflow ui`` starts being reachable from other sites."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, child_env


def test_runs_left_running_in_a_folder_are_closed_as_killed_even_with_a_quote_in_its_name(tmp_path, monkeypatch):
    import mlflow

    from repflow import tracking

    ws = tmp_path / "bob's runs"
    ws.mkdir()
    other = tmp_path / "other"
    tracking.configure(ws)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(tracking.EXPERIMENT).experiment_id
    parent = client.create_run(exp, tags={"repflow.workdir": str(ws)}).info.run_id
    child = client.create_run(exp, tags={"mlflow.parentRunId": parent,
                                         "repflow.output": str(ws / "data" / "x")}).info.run_id
    stage = client.create_run(exp, tags={"repflow.output": str(ws / "data" / "prepared")}).info.run_id
    elsewhere = client.create_run(exp, tags={"repflow.output": str(other / "data")}).info.run_id
    mine = client.create_run(exp, tags={"repflow.workdir": str(ws)}).info.run_id
    closed = tracking.close_orphaned_runs(ws, keep=mine)
    assert set(closed) == {parent, child, stage}
    status = {r: client.get_run(r).info.status for r in (parent, child, stage, elsewhere, mine)}
    assert status == {parent: "KILLED", child: "KILLED", stage: "KILLED", elsewhere: "RUNNING", mine: "RUNNING"}


def test_a_planted_symlink_is_never_followed_for_the_lock_or_a_server_log(tmp_path):
    from repflow.servers import Server, ServerError
    from repflow.stage import Workspace, WorkspaceError

    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(target, ws / ".repflow.lock")
    with pytest.raises(WorkspaceError, match="symbolic link"):
        with Workspace.at(ws).lock():
            pass
    (ws / "logs").mkdir()
    os.symlink(target, ws / "logs" / "server.log")
    server = Server("Test server", "http://127.0.0.1:1", "http://127.0.0.1:1/health", [sys.executable, "-c", "0"],
                    ws / "logs" / "server.log")
    with pytest.raises(ServerError, match="symbolic link"):
        server.start(dict(os.environ))
    assert target.read_text() == "keep me\n" and server.proc is None


def test_a_busy_folder_is_found_without_writing_and_a_free_one_is_left_alone(tmp_path):
    """``repflow run`` asks ``check_free`` before any server: a folder another process holds is refused naming
    the holder; a free folder, or one that does not exist yet, is not created or written."""
    from repflow.stage import Workspace, WorkspaceBusy

    missing = Workspace.at(tmp_path / "new")
    missing.check_free()
    assert not (tmp_path / "new").exists()
    ws = tmp_path / "ws"
    ws.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; fh = open(sys.argv[1], 'w'); fcntl.flock(fh, fcntl.LOCK_EX); "
        "fh.write('pid 4242 on elsewhere'); fh.flush(); print('held', flush=True); time.sleep(60)"),
        str(ws / ".repflow.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceBusy, match=r"--workdir .*/ws: in use by another repflow run \(pid 4242 on "
                                                r"elsewhere\); wait for it or use another --workdir"):
            Workspace.at(ws).check_free()
    finally:
        holder.kill()
        holder.wait()
    before = (ws / ".repflow.lock").stat().st_mtime_ns
    Workspace.at(ws).check_free()
    assert (ws / ".repflow.lock").read_text() == "pid 4242 on elsewhere"
    assert (ws / ".repflow.lock").stat().st_mtime_ns == before
    with Workspace.at(ws).lock():  # and the run's own lock takes it afterwards
        Workspace.at(ws).check_free()  # re-entered in the holding process: not busy


def test_the_ui_servers_accept_only_local_origins_and_hosts(tmp_path, monkeypatch):
    from repflow import servers

    started = {}

    def record(self, env):
        started[self.name] = (list(self.argv), dict(env))

    monkeypatch.setattr(servers.Server, "start", record)
    monkeypatch.setattr(servers.Server, "healthy", lambda self: True)
    monkeypatch.setattr(servers, "_check_port_free", lambda *args: None)
    servers.start_ui(tmp_path, prefect_port=4321, mlflow_port=5432)
    _, prefect_env = started["Prefect server"]
    assert prefect_env["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert set(prefect_env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"].split(",")) == {
        "http://127.0.0.1:4321", "http://localhost:4321"}
    argv, _ = started["MLflow server"]
    hosts = argv[argv.index("--allowed-hosts") + 1].split(",")
    assert "127.0.0.1:5432" in hosts and not any("*" in h or h.startswith(("10.", "192.168")) for h in hosts)
    assert argv[argv.index("--cors-allowed-origins") + 1].split(",") == ["http://127.0.0.1:5432",
                                                                         "http://localhost:5432"]


NO_NETWORK = r"""
import json, socket, sys, threading, time
tried = []
real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo
LOCAL = ("127.", "::1", "localhost", "/")
def connect(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if not str(host).startswith(LOCAL):
        tried.append(f"connect {host}")
        raise ConnectionRefusedError(f"outbound connection to {host} refused by the test")
    return real_connect(self, address)
def getaddrinfo(host, *args, **kwargs):
    if host and not str(host).startswith(LOCAL):
        tried.append(f"resolve {host}")
        raise socket.gaierror(f"name resolution of {host} refused by the test")
    return real_getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo

from pathlib import Path
from repflow.families.ctr.features import build_examples, build_feature_space, examples_to_tensors, time_split
from repflow.families.ctr.peer import train_peer_din
from repflow.families.ctr.tables import read_interaction_table
from tests.ctr_tiny import COLUMNS, write_tiny
tables = read_interaction_table(write_tiny(Path(sys.argv[1])), COLUMNS)
split, _ = time_split(tables.interactions)
space = build_feature_space(split, tables.items, min_word_count=1)
examples = build_examples(split, space, history_len=5)
train, test = (examples_to_tensors(examples, s, 5) for s in ("train", "test"))
train_peer_din(train, test, space.tensors(), epochs=1, batch_size=64, dim=4, dnn_hidden_units=(8,),
               att_hidden_size=(8,))
for t in threading.enumerate():
    if t is not threading.current_thread() and not t.daemon:
        t.join(timeout=30)
print(json.dumps(tried))
"""


def test_the_ctr_peer_makes_no_network_call(tmp_path):
    """DeepCTR-Torch's import starts a thread asking PyPI for a newer version; with outbound connections
    refused, training and scoring the peer (what ctr.evaluate runs) must not have tried any."""
    pytest.importorskip("deepctr_torch")
    result = subprocess.run([sys.executable, "-c", NO_NETWORK, str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env=child_env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.integration
def test_a_user_error_inside_a_flow_is_one_line_without_tracebacks(prefect_harness, ray_session, tmp_path, capfd):
    """Prefect logs a failed task and its failed flow each with a full traceback; for a bad input file the
    one error line is all the user should see."""
    import yaml

    from repflow import cli
    from tests.conftest import tiny_params

    ws = tmp_path / "ws"
    ws.mkdir()
    table = tmp_path / "clicks.csv"
    table.write_text("u,i,t,r\n" + "".join(f"{k},{k % 3},{1000 + k},lots\n" for k in range(20)))
    ctr = {"prep": {"source": "table", "path": str(table),
                    "columns": {"user": "u", "item": "i", "timestamp": "t", "rating": "r"}}}
    (ws / "params.yaml").write_text(yaml.safe_dump(tiny_params() | {"ctr": ctr}, sort_keys=False))
    assert cli.main(["run", "ctr", "--workdir", str(ws)]) == 2
    captured = capfd.readouterr()
    both = captured.out + captured.err
    assert "Traceback" not in both
    errors = [line for line in captured.err.splitlines() if line.startswith("repflow: error:")]
    assert len(errors) == 1 and str(table) in errors[0] and "'r' (rating) not a number" in errors[0]


def test_taking_the_workspace_sweeps_what_killed_runs_left(tmp_path):
    from repflow.stage import Workspace

    ws = tmp_path / "ws"
    stale = [ws / ".params.yaml.tmp-0a1b2c3d", ws / "reports" / ".x.md.tmp-deadbeef",
             ws / "artifacts" / ".train.progress" / ".checkpoint.safetensors.tmp",
             ws / "data" / ".video.abc123.mp4.tmp"]
    stale_dirs = [ws / "data" / ".prep.tmp-12345678", ws / "data" / ".prep.old-87654321"]
    kept = [ws / "params.yaml", ws / "reports" / "notes.tmp.md", ws / ".venv" / ".x.tmp",
            ws / "artifacts" / ".train.progress" / "checkpoint.safetensors"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    for folder in stale_dirs:
        (folder / "part").mkdir(parents=True)
    with Workspace.at(ws).lock():
        pass
    assert not any(p.exists() for p in stale + stale_dirs)
    assert all(p.exists() for p in kept)
