"""What every stage shares: its output location, its cache key, and the "already done" check.

A stage's key is sha256 over (stage name, the params sections it reads, the manifest digests of
its inputs, the code version). The key is written into the output's manifest; a rerun whose key
matches a verified output reuses it. Prefect's cache and DVC's lock agree with this because all
three are derived from the same params, inputs and code.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from repflow.config import Params, section_digest
from repflow.manifest import OutputError, atomic_write_text, read_manifest

__all__ = ["Workspace", "WorkspaceBusy", "code_version", "stage_key", "lineage", "current_output", "params_for", "export_metrics",
           "STAGE_PARAMS"]

log = logging.getLogger("repflow.stage")

PACKAGE_ROOT = Path(__file__).resolve().parent.parent

STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "prep": ("seed", "prep"),
    "generate": ("seed", "device", "generate"),
    "select": ("seed", "device", "train", "select"),
    "train": ("seed", "device", "train", "select"),
    "evaluate": ("seed", "device", "evaluate"),
    "distill": ("seed", "device", "distill"),
    "zoo": ("seed", "device", "zoo"),
    "transfer": ("seed", "device", "zoo", "transfer"),
    "register": ("register",),
}

STAGE_OUTPUTS = {"prep": "data/prep", "generate": "data/generate", "select": "data/select", "train": "artifacts/train",
                 "evaluate": "reports/evaluate", "distill": "data/distill", "zoo": "artifacts/zoo", "transfer": "reports/transfer",
                 "register": "reports/register"}


_HELD: set[Path] = set()


class WorkspaceBusy(RuntimeError):
    """The work folder is held by another run."""


@dataclass(frozen=True)
class Workspace:
    """A project folder: ``params.yaml``, ``mlflow.db`` and every stage output live under ``root``."""

    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> "Workspace":
        return cls(Path(root).resolve())

    def out(self, stage: str) -> Path:
        return self.root / STAGE_OUTPUTS[stage]

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    @contextlib.contextmanager
    def lock(self) -> Iterator["Workspace"]:
        """Hold the workspace for one run. Two runs in one folder would overwrite each other's stage
        outputs and training checkpoints; a second one fails at once and names the holder. The lock is
        an ``flock``, so a killed run releases it with its process."""
        if self.root in _HELD:  # re-entered in this process (the CLI holds it around the flow)
            yield self
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".repflow.lock"
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise WorkspaceBusy(f"--workdir {self.root}: in use by another repflow run ({holder}); wait for it "
                                    f"or use another --workdir") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
            fh.flush()
            _HELD.add(self.root)
            try:
                yield self
            finally:
                _HELD.discard(self.root)
                fcntl.flock(fh, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (first 16 hex) of the project's Python sources that stages execute."""
    h = hashlib.sha256()
    for pkg in ("repflow", "models", "tasks"):
        for p in sorted((PACKAGE_ROOT / pkg).rglob("*.py")):
            h.update(p.relative_to(PACKAGE_ROOT).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def params_for(stage: str, params: Params) -> dict[str, Any]:
    """The part of ``params`` a stage reads (its section plus shared keys such as ``seed``)."""
    dumped = params.model_dump(mode="json")
    return {name: dumped[name] for name in STAGE_PARAMS[stage]}


def lineage(stage: str, params: Params, inputs: dict[str, Path]) -> dict[str, Any]:
    """Params digest, input manifest digests and code version of one stage execution."""
    digests = {}
    for name, folder in inputs.items():
        digests[name] = read_manifest(folder, verify=False)["digest"]
    return {"params_digest": section_digest(params_for(stage, params)), "inputs": digests,
            "code_version": code_version()}


def stage_key(stage: str, lin: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"stage": stage, **lin}, sort_keys=True).encode()).hexdigest()


def current_output(out: Path, stage: str, key: str) -> bool:
    """True when ``out`` holds a verified output of ``stage`` made with exactly ``key``."""
    try:
        manifest = read_manifest(out, verify=True, stage=stage)
    except OutputError as exc:
        if (Path(out) / "manifest.json").exists():
            log.warning("%s: existing output is not usable (%s); rebuilding", stage, exc)
        return False
    return manifest.get("stage_key") == key


def export_metrics(out: Path, metrics: dict[str, Any]) -> Path:
    """Write ``<out>.metrics.json`` beside a stage output: the small, git-tracked file DVC reads as metrics."""
    path = Path(out).with_name(Path(out).name + ".metrics.json")
    atomic_write_text(path, json.dumps(metrics, indent=1, sort_keys=True))
    return path
