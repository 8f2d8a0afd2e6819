"""Where work runs: the torch device, and the Ray instance the fan-out stages share."""
from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["choose_device", "ensure_ray", "ray_resources", "worker_cpus", "check_ray_address", "prepare_ray_client",
           "run_data_parallel", "ClusterError"]

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """A requested device or cluster that is not available."""


def choose_device(preference: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error, not a silent fallback."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ClusterError("device: 'cuda' requested but torch sees no GPU (use 'auto' or 'cpu')")
    if preference not in ("cpu", "cuda"):
        raise ClusterError(f"device: {preference!r}; allowed: auto, cpu, cuda")
    return torch.device(preference)


def ray_resources(device: str | torch.device) -> dict[str, float]:
    """What one stage job asks Ray for: a CPU, plus a GPU when the stage runs on CUDA, so on a
    cluster the heavy jobs land on GPU nodes (and wait for a free GPU instead of sharing one)."""
    kind = torch.device(device).type
    return {"num_cpus": 1, "num_gpus": 1 if kind == "cuda" else 0}


def check_ray_address(address: str | None = None, timeout_s: float = 3.0) -> None:
    """Fail fast on a malformed ``RAY_ADDRESS`` or one nobody answers (``ray.init`` itself retries for
    minutes). ``address`` defaults to the environment's; unset means a local instance: nothing to check."""
    address = address if address is not None else os.environ.get("RAY_ADDRESS")
    if not address:
        return
    if address == "auto":
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if not current.is_file():
            raise ClusterError("RAY_ADDRESS='auto': no Ray cluster was started on this machine "
                               "(expected 'ray start --head' first, or RAY_ADDRESS=HOST:PORT)")
        address = current.read_text().strip()
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"RAY_ADDRESS={address!r}: expected HOST:PORT (e.g. 127.0.0.1:6379), "
                           f"ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"RAY_ADDRESS={address!r}: no Ray cluster answers there ({exc.strerror or exc}); "
                           f"start one with 'ray start --head' or unset RAY_ADDRESS") from None


def prepare_ray_client() -> None:
    """Environment a Ray driver reads when ``ray`` is first imported, so call this before that import.

    Joining ``RAY_ADDRESS``: Ray >= 2.59 clusters want a token, and a client sends one only in token
    mode, so token mode is switched on when a token is at hand (``RAY_AUTH_TOKEN``, its path, or
    ``~/.ray/auth_token``, where ``ray start`` on this machine leaves it); the core's connection
    retries are kept out of the user's terminal.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not os.environ.get("RAY_ADDRESS"):
        return
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get(
            "RAY_AUTH_TOKEN_PATH") or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def ensure_ray(num_cpus: int | None = None, num_gpus: int | None = None):
    """Initialise Ray once per process: join ``RAY_ADDRESS`` when set, else start a local instance.

    A second call reuses the running instance (so a flow and its stages share one). ``num_gpus``
    declares logical GPUs on a local instance (tests use it to check GPU scheduling on a CPU
    machine). Returns the ``ray`` module.
    """
    prepare_ray_client()
    import ray

    if ray.is_initialized():
        return ray
    address = os.environ.get("RAY_ADDRESS")
    kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    if address:
        check_ray_address(address)
        try:
            ray.init(address=address, **{k: v for k, v in kwargs.items() if k != "include_dashboard"})
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, AuthenticationError, ...
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ClusterError(f"RAY_ADDRESS={address!r}: cannot join the Ray cluster ({detail}); a cluster with "
                               f"token auth also needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN "
                               f"('ray get-auth-token' on the head node prints it)") from None
        log.info("joined Ray cluster at %s: %s", address, ray.cluster_resources())
    else:
        # "local": always a new instance, never a cluster some other process left in /tmp/ray
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus, **kwargs)
        log.info("started a local Ray instance with %s CPUs", ray.cluster_resources().get("CPU"))
    return ray


def worker_cpus(ray: Any, workers: int, threads: int) -> float:
    """The Ray CPU resource each data-parallel worker asks for: ``threads``, or a fair share of the CPUs the
    cluster has left when that many do not exist. The stage that starts the workers is itself a Ray task
    holding one CPU while it waits, so on a 2-CPU machine two 1-CPU workers would wait for a third CPU forever;
    a fractional request lets them start (Ray's CPU count is a scheduling token; the workers' torch threads
    still share the real cores)."""
    total = float(ray.cluster_resources().get("CPU", 0.0))
    context = ray.get_runtime_context()  # get_task_id() logs a warning when asked outside a Ray worker
    held = 1.0 if context.worker.mode == ray.WORKER_MODE and context.get_task_id() is not None else 0.0
    share = max(total - held, 0.0) / workers
    if share >= threads:
        return float(threads)
    log.warning("%d data-parallel workers x %d CPU do not fit the %g CPUs Ray has (%g held by this stage): each "
                "asks for %.2f CPU and they share the cores", workers, threads, total, held, share)
    return round(share, 4)


def _data_parallel_worker(job: dict[str, Any]) -> None:
    """What each Ray Train worker runs: one torch thread per CPU it was given, the job's object-store values
    fetched, then ``job["loop"](payload, device)``; Ray Train has set up the process group already."""
    import ray
    import ray.train.torch

    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(job["threads"])
    payload = {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in job["payload"].items()}
    job["loop"](payload, device)


def run_data_parallel(loop: Callable[[dict[str, Any], torch.device], None], payload: dict[str, Any], *, workers: int,
                      device: str | torch.device, storage: Path, name: str, threads: int = 1) -> None:
    """Run ``loop(payload, device)`` on ``workers`` Ray Train workers (``TorchTrainer``) with a torch process
    group: NCCL and one GPU per worker when ``device`` is CUDA, gloo and ``threads`` CPUs (torch threads) per
    worker otherwise. The loop finds its rank in ``torch.distributed`` (:mod:`repflow.data_parallel` has the
    pieces: local slices, gather with gradients, synchronised batch norm, gradient averaging). Tensors in
    ``payload`` travel through Ray's object store (put once, fetched by each worker), so the workers may run on
    other nodes: the same code on the local instance or on the cluster ``RAY_ADDRESS`` names
    (:func:`ensure_ray`). ``loop`` must be importable by module (Ray pickles it by reference).

    ``storage``: Ray Train's run folder (its own bookkeeping; on a multi-node cluster a path every node sees, as
    is whatever the loop writes). Blocks until the run ends; a worker's error is raised here as ClusterError
    naming the run (no retries: the caller's checkpoints make a rerun resume)."""
    ray = ensure_ray()
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpu = torch.device(device).type == "cuda"
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    refs = {k: ray.put(v) if isinstance(v, torch.Tensor) else v for k, v in payload.items()}
    storage.mkdir(parents=True, exist_ok=True)
    cpus = worker_cpus(ray, workers, threads)
    trainer = TorchTrainer(
        _data_parallel_worker, train_loop_config={"loop": loop, "payload": refs, "threads": threads},
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu,
                                     resources_per_worker={"CPU": cpus, **({"GPU": 1} if gpu else {})}),
        run_config=RunConfig(name=name, storage_path=str(storage.resolve()),
                             failure_config=FailureConfig(max_failures=0)))
    log.info("%s: %d data-parallel workers on %s (%s)", name, workers, "GPU" if gpu else "CPU",
             "nccl" if gpu else "gloo")
    try:
        trainer.fit()
    except Exception as exc:  # ray.train.TrainingFailedError and its kin carry the worker's traceback
        raise ClusterError(f"{name}: data-parallel training on {workers} Ray Train workers failed: "
                           f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}") from exc
