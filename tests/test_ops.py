"""repflow ui / serve / deployments: real server processes, real signals, and the one-line errors."""
from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import child_env, write_params


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The test session's environment (conftest's Prefect settings), a private PREFECT_HOME, no server URLs."""
    return child_env(PREFECT_HOME=str(tmp / "prefect-home"), **extra)


def repflow(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repflow", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repflow: error: "), out.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow
def test_bad_cron_is_a_one_line_error(tmp_path):
    write_params(tmp_path)
    out = repflow("serve", "--cron", "61 * * *", "--workdir", str(tmp_path), env=cli_env(tmp_path))
    assert_one_line_error(out, "'61 * * *'", "5 fields")
    out = repflow("serve", "--interval", "-5", "--workdir", str(tmp_path), env=cli_env(tmp_path))
    assert_one_line_error(out, "'-5'", "positive")


@pytest.mark.slow
def test_commands_that_need_a_server_name_the_url_that_does_not_answer(tmp_path):
    write_params(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/api"
    env = cli_env(tmp_path, PREFECT_API_URL=url)
    assert_one_line_error(repflow("deployments", env=env), url, "repflow ui")
    assert_one_line_error(repflow("serve", "--cron", "0 3 * * *", "--workdir", str(tmp_path), env=env), url)
    assert_one_line_error(repflow("run", "--workdir", str(tmp_path), env=env), url, "unset PREFECT_API_URL")
    assert not (tmp_path / "data").exists()  # refused before any stage started
    assert_one_line_error(repflow("deployments", env=cli_env(tmp_path)), "PREFECT_API_URL is not set")


class Lines:
    """A child's stdout read on a thread, so the test can wait for a line with a deadline."""

    def __init__(self, stream):
        self.q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.q.put(line) for line in stream] + [self.q.put(None)],
                         daemon=True).start()

    def until(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no line matching {pattern!r}; got {''.join(self.seen)[-2000:]}")


def descendants(pid: int) -> dict[int, psutil.Process]:
    try:
        return {p.pid: p for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {}


def running(procs) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
def test_ui_serve_and_deployments_with_real_servers(tmp_path):
    ws = tmp_path / "ws"
    write_params(ws)
    env = cli_env(tmp_path)
    t0 = time.monotonic()
    ui = subprocess.Popen([sys.executable, "-m", "repflow", "ui", "--workdir", str(ws), "--prefect-port",
                           str(free_port()), "--mlflow-port", str(free_port())], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=open(tmp_path / "ui.err", "w"))
    seen: dict[int, psutil.Process] = {}
    serve = None
    try:
        out = Lines(ui.stdout)
        prefect_ui = out.until(r"Prefect UI: (\S+)", 180)[1]
        mlflow_ui = out.until(r"MLflow UI: +(\S+)", 5)[1]
        api = out.until(r"export PREFECT_API_URL=(\S+)", 5)[1]
        assert out.until(r"export MLFLOW_TRACKING_URI=(\S+)", 5)[1] == mlflow_ui
        print(f"ui up after {time.monotonic() - t0:.1f} s")
        seen.update(descendants(ui.pid))
        assert len(seen) >= 2  # both servers (and their workers) are children of `repflow ui`
        assert api == f"{prefect_ui}/api"
        assert httpx.get(f"{api}/health", timeout=5).json() is True
        assert httpx.get(f"{mlflow_ui}/health", timeout=5).status_code == 200
        assert (ws / "mlflow.db").exists() and (ws / ".repflow" / "logs" / "prefect-server.log").exists()

        serve_env = cli_env(tmp_path, PREFECT_API_URL=api)
        serve = subprocess.Popen([sys.executable, "-m", "repflow", "serve", "--cron", "0 3 * * *", "--name", "ops-test",
                                  "--workdir", str(ws)], env=serve_env, stdout=open(tmp_path / "serve.out", "w"),
                                 stderr=subprocess.STDOUT)
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.settings import PREFECT_API_URL, temporary_settings

        def read_deployment():
            with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
                return client.read_deployment_by_name("repflow-image/ops-test")

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                read_deployment()
                break
            except ObjectNotFound:
                time.sleep(0.5)
        assert serve.poll() is None, (tmp_path / "serve.out").read_text()[-3000:]
        print(f"deployment registered after {time.monotonic() - t0:.1f} s")
        listing = repflow("deployments", env=serve_env)
        assert listing.returncode == 0, listing.stderr[-2000:]
        line = next((ln for ln in listing.stdout.splitlines() if ln.startswith("repflow-image/ops-test ")), "")
        assert "cron '0 3 * * *' UTC" in line and " active " in line, listing.stdout
        assert re.search(r"next run: \S+ 03:00:00 UTC", line), listing.stdout
        seen.update(descendants(ui.pid))

        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0, (tmp_path / "serve.out").read_text()[-3000:]
        deployment = read_deployment()
        assert deployment.paused is False  # stopping serve left the schedule active
        assert deployment.parameters["workdir"] == str(ws.resolve())

        seen.update(descendants(ui.pid))
        t1 = time.monotonic()
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=60) == 0, (tmp_path / "ui.err").read_text()[-3000:]
        print(f"ui stopped after {time.monotonic() - t1:.1f} s")
        out.until(r"Stopped both servers\.", 5)
        assert running(seen.values()) == []
    finally:
        for p in (serve, ui):
            if p is not None and p.poll() is None:
                p.kill()
        for p in running(seen.values()):
            p.kill()


RUN_API_PROBE = """
import os, ray
from repflow.cluster import ensure_ray
from repflow.servers import check_prefect_api, prefect_api_for_run, prefect_api_url

with prefect_api_for_run() as url:
    check_prefect_api(url)
    ensure_ray(num_cpus=1)

    @ray.remote
    def seen():
        from repflow.servers import prefect_api_url
        return os.environ.get("PREFECT_API_URL"), prefect_api_url()

    print("run", url, prefect_api_url(), *ray.get(seen.remote()))
    ray.shutdown()
print("after", os.environ.get("PREFECT_API_URL"))
"""


@pytest.mark.slow
def test_a_run_without_a_prefect_server_starts_one_its_ray_workers_share(tmp_path):
    """Unset PREFECT_API_URL: the run's process starts one temporary server and its Ray workers report to it
    (before, each worker started its own and timed out on a loaded machine); the environment is restored."""
    out = subprocess.run([sys.executable, "-c", RUN_API_PROBE], env=cli_env(tmp_path), capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    run = next(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("run "))
    assert run[0].startswith("http://127.0.0.1:") and run[0].endswith("/api")
    assert run == [run[0]] * 4  # the run's settings, the worker's environment and the worker's settings
    assert "after None" in out.stdout
