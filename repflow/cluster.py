"""Where work runs: the torch device, and the Ray instance the fan-out stages share."""
from __future__ import annotations

import logging
import os

import torch

__all__ = ["choose_device", "ensure_ray", "ClusterError"]

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


def ensure_ray(num_cpus: int | None = None):
    """Initialise Ray once per process: join ``RAY_ADDRESS`` when set, else start a local instance.

    A second call reuses the running instance (so a flow and its stages share one). Returns the
    ``ray`` module.
    """
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as exc:
            raise ClusterError(f"RAY_ADDRESS={address!r}: cannot join the Ray cluster ({exc})") from None
        log.info("joined Ray cluster at %s", address)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        log.info("started a local Ray instance with %s CPUs", ray.cluster_resources().get("CPU"))
    return ray
