"""The one stage runner, and what every stage shares: its work folder, its key, its "already done" check.

A stage body (``run(ctx)`` in the module its :class:`~repflow.family.Stage` declaration names) only
computes into ``ctx.tmp`` and returns a :class:`StageSummary`; an optional ``check(params, inputs)`` in the
same module rejects params that do not fit the actual inputs before anything is tracked or written.
:func:`run_stage` owns the rest, in this order: key → reuse → tracking → staged output → metrics → summary.

- **Key**: sha256 over (stage, the params keys it reads, the manifest digests of the inputs it reads, its
  own code version (:func:`repflow.family.code_version`), and the registry URI for stages that register
  models). It is written into the output's manifest.
- **Reuse**: an output whose manifest verifies and carries the same key is not recomputed, whoever made it
  (a Prefect flow, ``repflow stage``, ``dvc repro``): that is what lets the three share done-state.
- **Tracking**: one MLflow run per execution, named ``family.stage``, nested under the flow's parent run.
- **Staged output**: the body writes into a temporary sibling that is renamed into place when complete.
- **Metrics**: ``summary.json`` inside the output; ``<out>.metrics.json`` beside it for DVC (written on
  reuse too). The runner adds ``peak_rss_mb`` to every stage's metrics: the peak resident memory (MiB) of
  the stage's process while its body ran (:mod:`repflow.memory`; Ray tasks and loader workers not included).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from repflow.config import section_digest
from repflow.family import Stage, code_version
from repflow.manifest import OutputError, atomic_write_text, read_manifest, staged_output, sweep_temporary
from repflow.memory import PeakMemory

__all__ = ["Workspace", "WorkspaceBusy", "WorkspaceError", "StageContext", "StageSummary", "run_stage", "plan_stage",
           "read_summary",
           "params_for", "current_output", "export_metrics", "run_in"]

log = logging.getLogger("repflow.stage")

SUMMARY = "summary.json"
_HELD: set[Path] = set()


class WorkspaceError(RuntimeError):
    """A work folder that cannot be used: held by another run, or its lock file is a symbolic link."""


class WorkspaceBusy(WorkspaceError):
    """The work folder is held by another run."""


@dataclass(frozen=True)
class Workspace:
    """A project folder: ``params.yaml``, ``mlflow.db`` and every stage output live under ``root``."""

    root: Path

    @classmethod
    def at(cls, root: str | Path = ".") -> "Workspace":
        return cls(Path(root).resolve())

    def out(self, stage: Stage) -> Path:
        return self.root / stage.out

    def inputs(self, stage: Stage, family_stages: dict[str, Stage]) -> dict[str, Path]:
        """The standard folders of every input a stage declares."""
        return {name: self.out(family_stages[upstream]) for name, upstream in stage.inputs.items()}

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    def check_free(self) -> None:
        """Raise :class:`WorkspaceBusy` naming the holder when another run holds the folder, writing nothing:
        the check a command makes before it contacts servers, so a busy folder is one line at once, whatever
        the servers do. :meth:`lock` still takes the folder (it may be taken between the two)."""
        if self.root in _HELD:
            return
        try:
            fd = os.open(self.root / ".repflow.lock", os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return  # no lock file (or one lock() will refuse with the reason)
        with open(fd) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._busy(fh.read()) from None
            fcntl.flock(fh, fcntl.LOCK_UN)

    def _busy(self, holder: str) -> "WorkspaceBusy":
        return WorkspaceBusy(f"--workdir {self.root}: in use by another repflow run ({holder.strip() or 'unknown'}); "
                             f"wait for it or use another --workdir")

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
        try:  # never through a planted symbolic link: the lock is truncated and written
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise WorkspaceError(f"--workdir {self.root}: cannot open its lock file {path} ({exc.strerror}; a "
                                 f"symbolic link there is refused: remove it)") from None
        with open(fd, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                raise self._busy(fh.read()) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
            fh.flush()
            swept = sweep_temporary(self.root)  # no live run writes here now: what is left is a killed run's
            if swept:
                log.info("%s: removed %d temporary files left by killed runs, e.g. %s", self.root, len(swept),
                         swept[0])
            _HELD.add(self.root)
            try:
                yield self
            finally:
                _HELD.discard(self.root)
                fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class StageSummary:
    """What a stage body returns: the numbers (flat, JSON-able; numeric ones also go to MLflow and DVC), a
    markdown fragment for the run report, and the files in the output a person should look at (paths
    relative to the output folder)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""
    plots: list[str] = field(default_factory=list)


@dataclass
class StageContext:
    """What a stage body gets: params, its input folders by name (only those it reads), ``tmp`` to write
    into, the final ``out`` (for progress files kept beside it), the manifest ``meta`` to fill, and
    ``extras`` the flow passes (e.g. a fan-out function)."""

    stage: Stage
    params: Any
    inputs: dict[str, Path]
    tmp: Path
    out: Path
    key: str
    lineage: dict[str, Any]
    meta: dict[str, Any]
    extras: dict[str, Any]

    @property
    def progress_dir(self) -> Path:
        """Where a long stage keeps resumable progress (``.<out>.progress``): it survives a killed run, and the
        runner removes it once the output is in place."""
        return self.out.with_name(f".{self.out.name}.progress")


def params_for(stage: Stage, params: Any) -> dict[str, Any]:
    """The params keys a stage reads, as ``{dotted key: value}``."""
    dumped = params.model_dump(mode="json")
    picked = {}
    for key in stage.params:
        node = dumped
        for part in key.split("."):
            node = node[part]
        picked[key] = node
    return picked


def plan_stage(stage: Stage, params: Any, inputs: dict[str, Path]) -> tuple[dict[str, Path], dict[str, Any], str]:
    """(inputs read, lineage, key) of one execution; see the module docstring for what the key covers."""
    used = {k: Path(v) for k, v in stage.used_inputs(params, inputs).items()}
    lineage = {"params_digest": section_digest(params_for(stage, params)),
               "inputs": {name: read_manifest(folder, verify=False)["digest"] for name, folder in used.items()},
               "code_version": code_version(stage.module)}
    basis = {"stage": stage.qualname, **lineage}
    if stage.registers:  # registering into another store is not the same output
        import mlflow

        basis["registry"] = mlflow.get_tracking_uri()
    return used, lineage, hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def current_output(out: Path, stage: str, key: str) -> bool:
    """True when ``out`` holds a verified output of ``stage`` (qualified name) made with exactly ``key``."""
    try:
        manifest = read_manifest(out, verify=True, stage=stage)
    except OutputError as exc:
        if (Path(out) / "manifest.json").exists():
            log.warning("%s: existing output is not usable (%s); rebuilding", stage, exc)
        return False
    return manifest.get("stage_key") == key


def read_summary(out: Path) -> StageSummary:
    """The summary a stage left in its (verified) output folder."""
    path = Path(out) / SUMMARY
    if not path.is_file():
        raise OutputError(f"{path}: missing; {out} was not written by the stage runner")
    return StageSummary(**json.loads(path.read_text()))


def export_metrics(out: Path, metrics: dict[str, Any]) -> Path:
    """Write ``<out>.metrics.json`` beside a stage output: the small, git-tracked file DVC reads as metrics."""
    path = Path(out).with_name(Path(out).name + ".metrics.json")
    atomic_write_text(path, json.dumps(metrics, indent=1, sort_keys=True))
    return path


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    from repflow.tracking import flatten

    return {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_stage(stage: Stage | str, params: Any, inputs: dict[str, Path | None], out: Path, **extras: Any) -> Path:
    """Run ``stage`` (a declaration or ``"family.stage"``) on ``inputs`` (input name → folder; None = absent)
    into ``out``, unless a verified output with the same key is there; returns ``out``."""
    from repflow import tracking
    from repflow.family import resolve_stage

    stage = resolve_stage(stage) if isinstance(stage, str) else stage
    inputs = {k: Path(v) for k, v in inputs.items() if v is not None}
    out = Path(out)
    used, lineage, key = plan_stage(stage, params, inputs)
    if current_output(out, stage.qualname, key):
        log.info("%s: %s is up to date (same params, inputs and code); reusing it", stage.qualname, out)
        export_metrics(out, read_summary(out).metrics)
        return out
    check = getattr(stage.module_object(), "check", None)
    if check is not None:  # bad params against the actual inputs: an error before any tracking or writing
        check(params, used)
    meta: dict[str, Any] = {}
    with tracking.stage_run(stage.qualname, params_for(stage, params), lineage, out=out, dvc_stage=stage.dvc_name), \
            staged_output(out, stage=stage.qualname, stage_key=key, lineage=lineage, meta=meta) as tmp:
        import mlflow

        ctx = StageContext(stage, params, used, tmp, out, key, lineage, meta, extras)
        memory = PeakMemory()
        memory.start()
        try:
            summary = stage.body()(ctx)
        finally:
            peak_mb = memory.stop()
        if not isinstance(summary, StageSummary):
            raise TypeError(f"{stage.module}.run returned {type(summary).__name__}, expected StageSummary")
        summary.metrics["peak_rss_mb"] = round(peak_mb, 1)
        missing = [p for p in summary.plots if not (tmp / p).is_file()]
        if missing:
            raise OutputError(f"{stage.qualname}: summary names plots that were not written: {missing}")
        atomic_write_text(tmp / SUMMARY, json.dumps(asdict(summary), indent=1, sort_keys=True, default=str))
        mlflow.log_metrics(_numeric(summary.metrics))
        for plot in summary.plots:
            mlflow.log_artifact(str(tmp / plot))
    shutil.rmtree(ctx.progress_dir, ignore_errors=True)
    export_metrics(out, summary.metrics)
    return out


def run_in(ws: Workspace, stage: Stage, params: Any, **extras: Any) -> Path:
    """Run a stage on a work folder's standard input and output folders (``repflow stage``, ``dvc repro``)."""
    from repflow.family import get_family

    fam = get_family(stage.family)
    return run_stage(stage, params, ws.inputs(stage, {s.name: s for s in fam.stages}), ws.out(stage), **extras)
