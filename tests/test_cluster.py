"""Ray: stages ask for a GPU when they run on CUDA (checked with a declared GPU on this CPU machine),
the flow's stage tasks go through the same request, and ``RAY_ADDRESS`` joins a real ``ray start --head``
cluster."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from repflow.cluster import ray_resources
from tests.conftest import child_env, write_params


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gpu_probe(hold_s: float) -> dict:
    import ray

    start = time.monotonic()
    time.sleep(hold_s)
    return {"gpus": ray.get_gpu_ids(), "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "start": start, "end": time.monotonic()}


def test_ray_resources_ask_for_a_gpu_only_on_cuda():
    assert ray_resources("cuda") == {"num_cpus": 1, "num_gpus": 1}
    assert ray_resources("cuda:0")["num_gpus"] == 1
    assert ray_resources("cpu")["num_gpus"] == 0


def test_cuda_jobs_get_the_declared_gpu_one_at_a_time(ray_session):
    """The session's Ray declares one GPU: two CUDA jobs must run one after the other on it, while a
    CPU job gets no GPU. Without ``num_gpus`` in the request Ray would run both CUDA jobs at once."""
    ray = ray_session
    assert ray.cluster_resources().get("GPU") == 1.0
    probe = ray.remote(_gpu_probe)
    cuda_jobs = [probe.options(**ray_resources("cuda")).remote(1.0) for _ in range(2)]
    cpu_job = probe.options(**ray_resources("cpu")).remote(0.0)
    ready, _ = ray.wait(cuda_jobs + [cpu_job], num_returns=3, timeout=120)
    assert len(ready) == 3
    first, second = sorted(ray.get(cuda_jobs), key=lambda r: r["start"])
    assert first["gpus"] == second["gpus"] == [0] and first["cuda_visible"] == "0"
    assert second["start"] >= first["end"] - 0.05  # the one GPU was held, not shared
    assert ray.get(cpu_job)["gpus"] == []


def test_flow_stage_tasks_ask_ray_for_the_gpu(prefect_harness, ray_session):
    """The main flow's Ray runner submits stages under ``remote_options(**ray_resources(device))``; a
    CUDA stage therefore runs in a Ray worker that holds the GPU."""
    from prefect import flow, task
    from prefect_ray import RayTaskRunner
    from prefect_ray.context import remote_options

    @task
    def where() -> dict:
        return _gpu_probe(0.0)

    @flow(task_runner=RayTaskRunner())
    def two_stages() -> list[dict]:
        out = []
        for device in ("cuda", "cpu"):
            with remote_options(**ray_resources(device)):
                out.append(where.submit().result())
        return out

    cuda, cpu = two_stages()
    assert cuda["gpus"] == [0] and cuda["cuda_visible"] == "0"
    assert cpu["gpus"] == []


@pytest.mark.slow
def test_unreachable_ray_address_is_one_line(tmp_path):
    ws = tmp_path / "ws"
    write_params(ws)
    port = _free_port()
    env = child_env(RAY_ADDRESS=f"127.0.0.1:{port}")
    out = subprocess.run([sys.executable, "-m", "repflow", "run", "--workdir", str(ws)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"repflow: error: RAY_ADDRESS='127.0.0.1:{port}': no Ray cluster answers there (Connection refused); "
        "start one with 'ray start --head' or unset RAY_ADDRESS"]
    bad = subprocess.run([sys.executable, "-m", "repflow", "stage", "zoo", "--workdir", str(ws)],
                         env=child_env(RAY_ADDRESS="nonsense"), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_stages_join_a_ray_cluster_started_with_ray_start(tmp_path):
    """``ray start --head`` on this machine; ``repflow stage zoo`` with ``RAY_ADDRESS`` runs its member
    jobs on that cluster (Ray's state API lists them there); the cluster is stopped afterwards."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    port, dash = _free_port(), _free_port()
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = child_env(RAY_USAGE_STATS_ENABLED="0")
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", f"--temp-dir={ray_tmp}",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--disable-usage-stats"],
                            env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()
                time.sleep(0.5)
        ws = tmp_path / "ws"
        write_params(ws, zoo={"members": ["convnet_bn_gap", "mlp"], "epochs": 1})
        joined = {**env, "RAY_ADDRESS": address}
        for stage in ("prep", "zoo"):
            out = subprocess.run([sys.executable, "-m", "repflow", "stage", stage, "--workdir", str(ws)], env=joined,
                                 capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-3000:]
        assert f"joined Ray cluster at {address}" in out.stderr
        assert "started a local Ray instance" not in out.stderr
        listed = subprocess.run([ray_bin, "list", "tasks", "--address", address, "--filter", "state=FINISHED",
                                 "--format", "json"], env=joined, capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr[-2000:]
        names = [t["name"] for t in json.loads(listed.stdout)]
        assert names.count("train_member_job") == 2  # one Ray job per zoo member, run on this cluster
    finally:
        head.send_signal(signal.SIGTERM)  # --block: ray start stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
    leftovers = subprocess.run(["pgrep", "-f", ray_tmp], capture_output=True, text=True).stdout.split()
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not leftovers, f"Ray processes left running: {leftovers}"
