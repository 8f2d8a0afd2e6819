"""The project's one MLflow helper: where tracking goes, and one run per stage with lineage tags.

Default store: ``sqlite:///<project>/mlflow.db`` with artifacts in ``<project>/mlruns`` (the MLflow
registry works on sqlite). ``MLFLOW_TRACKING_URI`` overrides. Flows open a parent run with
:func:`flow_run`; stages open :func:`stage_run`, nested under that parent when there is one (the id
is passed explicitly, because Prefect may run a task on another thread than the flow).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = ["configure", "tracking_uri", "TrackingError", "check_tracking_server",
           "flow_run", "stage_run", "git_commit", "flatten", "EXPERIMENT", "prefect_flow_run_id",
           "RegistryError", "get_model_version", "Champion", "alias_holder", "champion_gate", "describe_model",
           "register_model", "log_child_run",
           "context", "adopt", "trace_lineage", "format_lineage", "launcher", "close_orphaned_runs"]

EXPERIMENT = "repflow"
_EXPORT_LOCK = threading.Lock()
_parent_run_id: str | None = None
# The user's MLFLOW_TRACKING_URI, read before anything here runs: mlflow.set_tracking_uri() also
# writes that variable (so subprocesses inherit it), which must not pin later configure() calls.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def _quiet_env() -> None:
    for k, v in {"MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"}.items():
        os.environ.setdefault(k, v)


class TrackingError(RuntimeError):
    """A tracking store that cannot be used: a server that does not answer, or (for a read-only command) a
    work folder or database that does not exist. The message names the URI or folder."""


SERVER_CHECK_TIMEOUT_S = 3.0  # one health request; a live MLflow server answers in milliseconds


def check_tracking_server(uri: str) -> None:
    """Raise :class:`TrackingError` (one line naming ``uri``) unless the MLflow server at an ``http(s)`` tracking
    URI answers ``GET /health`` within 3 s. MLflow's own client retries a dead server for minutes; this check
    runs first. Other URIs (files, databases) are not servers and pass."""
    if not uri.startswith(("http://", "https://")):
        return
    import httpx

    hint = "start one with 'repflow ui' or unset MLFLOW_TRACKING_URI (the work folder's mlflow.db is the default)"
    try:
        resp = httpx.get(f"{uri.rstrip('/')}/health", timeout=SERVER_CHECK_TIMEOUT_S)
    except httpx.TimeoutException:
        raise TrackingError(f"MLFLOW_TRACKING_URI={uri}: no answer within {SERVER_CHECK_TIMEOUT_S:g} s; "
                            f"{hint}") from None
    except httpx.HTTPError as exc:
        why = "connection refused" if "refused" in str(exc).lower() else str(exc) or type(exc).__name__
        raise TrackingError(f"MLFLOW_TRACKING_URI={uri}: no MLflow server answers ({why}); {hint}") from None
    if resp.status_code != 200:
        raise TrackingError(f"MLFLOW_TRACKING_URI={uri}: GET /health answered HTTP {resp.status_code}, not like an "
                            f"MLflow server")


def tracking_uri(root: str | Path = ".") -> str:
    """Where tracking goes for the work folder ``root``: ``MLFLOW_TRACKING_URI`` as the user set it, else
    ``sqlite:///<root>/mlflow.db``."""
    return _USER_TRACKING_URI or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def configure(root: str | Path = ".", *, read_only: bool = False) -> str | None:
    """Point MLflow at the project's store and make sure the experiment exists; returns its id.

    ``read_only`` (commands that only read the registry): the work folder and its ``mlflow.db`` must exist
    already, and nothing is created (no database, no experiment; None when the experiment does not exist).
    A tracking server is checked for an answer first either way."""
    _quiet_env()
    root = Path(root).resolve()
    uri = tracking_uri(root)
    check_tracking_server(uri)
    if read_only:
        if not root.is_dir():
            raise TrackingError(f"--workdir {root}: no such folder")
        db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if db is not None and not db.is_file():
            raise TrackingError(f"{db}: no such tracking database, so no registered models; run a flow in this "
                                f"work folder first (repflow run FAMILY) or pass --workdir of one that has")
    import mlflow

    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is None and read_only:
        return None
    if exp is None:
        artifacts = None if uri.startswith("http") else (root / "mlruns").as_uri()
        try:
            exp_id = mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
        except mlflow.exceptions.MlflowException:  # created concurrently by another process
            exp_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


CODE_ROOT = Path(__file__).resolve().parent.parent


def git_commit(root: str | Path = CODE_ROOT) -> str:
    """Commit of the checkout holding the code (``-dirty`` when tracked files changed); ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def prefect_flow_run_id() -> str | None:
    if "prefect" not in sys.modules:
        return None
    from prefect.runtime import flow_run as _fr

    return str(_fr.id) if _fr.id else None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become JSON strings (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out


@contextlib.contextmanager
def flow_run(name: str, params: dict[str, Any], tags: dict[str, str] | None = None) -> Iterator[Any]:
    """Parent MLflow run of one flow run; stages started inside nest under it."""
    global _parent_run_id
    import mlflow

    with mlflow.start_run(run_name=name, tags=tags or {}) as run:
        mlflow.log_params(flatten(params))
        previous, _parent_run_id = _parent_run_id, run.info.run_id
        try:
            yield run
        finally:
            _parent_run_id = previous


def close_orphaned_runs(workdir: str | Path, keep: str | None = None) -> list[str]:
    """Mark as KILLED the MLflow runs a killed process in ``workdir`` left RUNNING: a flow's parent run (tagged
    ``repflow.workdir``) with the stage runs under it, and a single stage's run (``repflow stage``, ``dvc
    repro``: tagged ``repflow.output`` inside ``workdir``), except the parent run ``keep`` (the caller's own).
    Call it only while holding the workspace lock: then no live process can own them. Returns the run ids
    closed.

    Runs are matched on their tags here, not in an MLflow filter string, so a folder name with a quote in it
    matches like any other."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    root = Path(workdir).resolve()
    running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=10_000)

    def in_workdir(run) -> bool:
        tags = run.data.tags
        if tags.get("repflow.workdir"):
            return Path(tags["repflow.workdir"]) == root
        output = tags.get("repflow.output")
        return bool(output) and "mlflow.parentRunId" not in tags and Path(output).is_relative_to(root)

    closed = []
    for top in (r for r in running if r.info.run_id != keep and in_workdir(r)):
        children = [r for r in running if r.data.tags.get("mlflow.parentRunId") == top.info.run_id]
        for run in [*children, top]:
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


def launcher() -> str:
    """What started this stage: ``dvc`` (a ``dvc repro`` stage command), ``prefect`` (a flow) or ``cli``."""
    if os.environ.get("DVC_STAGE"):
        return "dvc"
    return "prefect" if prefect_flow_run_id() else "cli"


@contextlib.contextmanager
def stage_run(stage: str, params: dict[str, Any], lineage: dict[str, Any], out: Path | None = None,
              dvc_stage: str | None = None) -> Iterator[Any]:
    """One MLflow run for one stage execution, tagged with its lineage.

    ``lineage`` carries the params digest, code version and input digests; the git commit, the DVC
    stage that reproduces this output (stage names are ``dvc.yaml``'s), what launched it and the
    Prefect flow-run id are added here. When the body finishes, the manifest digest of ``out`` is
    tagged as ``repflow.output_digest``: the key :func:`trace_lineage` follows from a consumer's
    ``repflow.inputs.*`` tag back to the run that produced that input.
    """
    import mlflow

    tags = {f"repflow.{k}": str(v) for k, v in flatten(lineage).items()}
    if out is not None:  # at the start, so a killed stage's run can be found (close_orphaned_runs)
        tags["repflow.output"] = str(Path(out).resolve())
    tags.update({"repflow.stage": stage, "repflow.git_commit": git_commit(),
                 "repflow.dvc_stage": os.environ.get("DVC_STAGE") or dvc_stage or stage,
                 "repflow.launched_by": launcher(),
                 "repflow.prefect_flow_run_id": prefect_flow_run_id() or ""})
    with mlflow.start_run(run_name=stage, nested=_parent_run_id is not None, parent_run_id=_parent_run_id,
                          tags=tags) as run:
        mlflow.log_params(flatten(params))
        yield run
        if out is not None and (Path(out) / "manifest.json").is_file():
            digest = json.loads((Path(out) / "manifest.json").read_text())["digest"]
            mlflow.set_tags({"repflow.output_digest": digest, "repflow.output": str(Path(out).resolve())})


def log_child_run(name: str, params: dict[str, Any], metrics: dict[str, Any], tags: dict[str, str] | None = None
                  ) -> str:
    """One finished part of a stage's work (a compare arm) as an MLflow run nested under the active run (the
    stage's): its params, its numeric metrics (others are skipped) and ``tags``. Returns the run id."""
    import mlflow

    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    with mlflow.start_run(run_name=name, nested=True, tags=tags or {}) as run:
        mlflow.log_params(flatten(params))
        mlflow.log_metrics(numeric)
    return run.info.run_id


def context() -> dict[str, str | None]:
    """Where this process tracks to, and the open flow run: what a stage running in another process
    (a Ray worker) needs to log into the same store, nested under the same parent."""
    import mlflow

    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    return {"tracking_uri": mlflow.get_tracking_uri(), "parent_run_id": _parent_run_id,
            "experiment_id": exp.experiment_id if exp else None}


def adopt(ctx: dict[str, str | None]) -> None:
    """Take over :func:`context` from the process that launched this one (idempotent in that process)."""
    global _parent_run_id
    _quiet_env()
    import mlflow

    mlflow.set_tracking_uri(ctx["tracking_uri"])
    if ctx.get("experiment_id"):
        mlflow.set_experiment(experiment_id=ctx["experiment_id"])
    _parent_run_id = ctx.get("parent_run_id")


def _producer(digest: str, experiment_id: str):
    """The latest run whose stage output has manifest digest ``digest``, or None."""
    import mlflow

    runs = mlflow.MlflowClient().search_runs([experiment_id], f"tags.`repflow.output_digest` = '{digest}'",
                                             order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def trace_lineage(ref: str) -> list[dict[str, Any]]:
    """Walk from a registered model version back to the raw data source, one stage run per step.

    Each step: stage, run id, git commit, params digest, code version, DVC stage, launcher,
    Prefect flow-run id, its output digest, and its inputs as ``{name: (digest, producing stage or
    None)}``; prep's step also names the raw source and its digest. Breadth-first from the run that
    logged the model; a run reached twice (prep feeds most stages) is listed once.
    """
    import mlflow

    mv = get_model_version(ref)
    client = mlflow.MlflowClient()
    first = client.get_run(mv.run_id)
    steps, queue, seen = [], [first], {first.info.run_id}
    while queue:
        run = queue.pop(0)
        t = run.data.tags
        inputs = {}
        for key, digest in sorted(t.items()):
            if not key.startswith("repflow.inputs."):
                continue
            producer = _producer(digest, run.info.experiment_id)
            made_by = producer.data.tags.get("repflow.stage") if producer else None
            inputs[key[len("repflow.inputs."):]] = (digest, made_by)
            if producer is not None and producer.info.run_id not in seen:
                seen.add(producer.info.run_id)
                queue.append(producer)
        steps.append({"stage": t.get("repflow.stage", run.info.run_name), "run_id": run.info.run_id,
                      "git_commit": t.get("repflow.git_commit", ""),
                      "params_digest": t.get("repflow.params_digest", ""),
                      "code_version": t.get("repflow.code_version", ""), "dvc_stage": t.get("repflow.dvc_stage", ""),
                      "launched_by": t.get("repflow.launched_by", ""),
                      "prefect_flow_run_id": t.get("repflow.prefect_flow_run_id", ""),
                      "output_digest": t.get("repflow.output_digest", ""), "inputs": inputs,
                      **{k: t[f"repflow.{k}"] for k in ("source", "source_origin", "source_digest")
                         if f"repflow.{k}" in t}})
    return steps


def format_lineage(ref: str, steps: list[dict[str, Any]]) -> str:
    """The lineage walk as text: one block per stage run, newest first, ending at the raw source."""
    mv = get_model_version(ref)
    lines = [f"{mv.name} version {mv.version} ← run {mv.run_id}"]
    for s in steps:
        flow = s["prefect_flow_run_id"] or "-"
        commit = s["git_commit"][:12] + ("-dirty" if s["git_commit"].endswith("-dirty") else "")
        lines.append(f"{s['stage']:<9} run {s['run_id'][:12]}  git {commit or '-'}  "
                     f"params {s['params_digest'][:12] or '-'}  code {s['code_version'][:12] or '-'}  "
                     f"dvc-stage {s['dvc_stage'] or '-'}  via {s['launched_by'] or '-'}  prefect-flow-run {flow}")
        lines.append(f"{'':<9} output {s['output_digest'][:16] or '-'}")
        for name, (digest, stage) in s["inputs"].items():
            lines.append(f"{'':<9} ← {name}: {digest[:16]} from {stage or 'no tracked run (made outside MLflow?)'}")
        if "source" in s:
            lines.append(f"{'':<9} ← raw source {s['source']} at {s.get('source_origin', '?')} "
                         f"(sha256 {s.get('source_digest', '?')[:16]})")
    return "\n".join(lines)


# --- model registry -------------------------------------------------------------------------------

class RegistryError(LookupError):
    """A registered model name, alias or version that does not exist."""


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``name@alias`` | ``name/version`` | ``name`` → (name, alias, version)."""
    import re

    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:@([A-Za-z0-9_-]+)|/([0-9]+))?", ref.removeprefix("models:/"))
    if match is None:
        raise RegistryError(f"model reference {ref!r}: must be NAME@ALIAS, NAME/VERSION or NAME (e.g. "
                            f"repflow-encoder@champion, repflow-encoder/3)")
    name, alias, version = match.groups()
    return name, alias, version


def get_model_version(ref: str):
    """The registry entry for ``name@alias`` / ``name/version`` / ``name`` (latest version)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name, alias, version = parse_model_ref(ref)
    try:
        client.get_registered_model(name)
    except MlflowException:
        known = [m.name for m in client.search_registered_models()]
        raise RegistryError(f"no registered model {name!r}; registered: {known or 'none'}") from None
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if version:
            return client.get_model_version(name, version)
    except MlflowException:
        aliases = sorted(client.get_registered_model(name).aliases)
        what = f"alias {alias!r}" if alias else f"version {version!r}"
        raise RegistryError(f"{name}: no {what}; aliases: {aliases or 'none'}") from None
    versions = client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"], max_results=1)
    return versions[0]


@dataclass(frozen=True)
class Champion:
    """The version holding an alias, with the score and measurement protocol it was registered with
    (``protocol`` None when the version carries none, e.g. registered before protocols were stored)."""

    version: str
    score: float | None
    protocol: dict[str, Any] | None


def alias_holder(name: str, alias: str) -> Champion | None:
    """The version that currently holds ``alias``; None when nobody holds it."""
    try:
        mv = get_model_version(f"{name}@{alias}")
    except RegistryError:
        return None
    score, protocol = mv.tags.get("repflow.score"), mv.tags.get("repflow.protocol")
    return Champion(str(mv.version), float(score) if score is not None else None,
                    json.loads(protocol) if protocol else None)


def champion_gate(score: float, protocol: dict[str, Any], holder: Champion | None, *,
                  higher_is_better: bool = True) -> tuple[bool, str]:
    """Should a new version with ``score`` measured under ``protocol`` take the alias from ``holder``?

    Scores are compared only under equal protocols (criterion, attack, steps, ε grid, test images ...): a
    PGD-20 score never displaces a PGD-10 one, nor the reverse. Returns (move, reason for the log)."""
    if holder is None:
        return True, "nobody holds the alias"
    if holder.protocol is None or holder.score is None:
        return False, f"version {holder.version} holds it with no stored protocol; scores are not comparable"
    if holder.protocol != protocol:
        diff = sorted(k for k in set(protocol) | set(holder.protocol) if protocol.get(k) != holder.protocol.get(k))
        return False, (f"version {holder.version} was scored under another protocol (differs in {', '.join(diff)}); "
                       "scores are not comparable")
    better = score > holder.score if higher_is_better else score < holder.score
    relation = ("beats" if better else "does not beat")
    return better, f"{score:.4f} {relation} version {holder.version}'s {holder.score:.4f} under the same protocol"


def artifact_digest(files: tuple[Path, ...], identity: dict[str, Any] | None = None) -> str:
    """sha256 over the contents of ``files`` and ``identity`` (what else makes a version distinct, e.g. the
    evaluation it was scored by): two registrations with the same digest are the same version."""
    import hashlib

    h = hashlib.sha256(json.dumps(identity or {}, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def register_model(module: Any, name: str, input_example: Any, tags: dict[str, Any],
                   checkpoint_files: tuple[Path, ...] = (), identity: dict[str, Any] | None = None) -> str:
    """Log ``module`` in the active run as a pt2 (torch.export) model, register it as ``name``, tag the
    new version, and log ``checkpoint_files`` beside it under ``checkpoint/``. Returns the version.

    A version whose :func:`artifact_digest` (checkpoint files + ``identity``) the registry already holds is
    returned as it is: rerunning a stage (``dvc repro`` after a flow run, say) adds no duplicate version.
    pt2 loads without running pickled code and without this package; the safetensors files let a
    user rebuild the original ``nn.Module``.
    """
    import logging

    import mlflow
    import torch

    digest = artifact_digest(checkpoint_files, identity)
    client = mlflow.MlflowClient()
    try:
        existing = client.search_model_versions(f"name='{name}'")
    except mlflow.exceptions.MlflowException:
        existing = []
    for mv in existing:
        if mv.tags.get("repflow.artifact_digest") == digest:
            logging.getLogger("repflow.tracking").info("%s: version %s already holds this model (digest %s); "
                                                       "not registering it again", name, mv.version, digest[:12])
            return str(mv.version)
    with _EXPORT_LOCK:  # torch.export keeps process-wide state: one export at a time
        info = mlflow.pytorch.log_model(module, name=name.replace("repflow-", ""), input_example=input_example,
                                        serialization_format="pt2", registered_model_name=name,
                                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    for f in checkpoint_files:
        mlflow.log_artifact(str(f), artifact_path="checkpoint")
    version = str(info.registered_model_version)
    for k, v in {**tags, "repflow.artifact_digest": digest}.items():
        client.set_model_version_tag(name, version, k, str(v))
    return version


def read_evaluation(folder: Path, stage: str, criterion: str) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """(metrics, score, protocol) of a verified evaluate-stage output: ``metrics.json``, the value of
    ``criterion`` in it, and ``protocol.json`` with the criterion added (what a register stage gates on).
    A criterion the evaluation does not report, or a missing protocol, is an error naming the file."""
    from repflow.manifest import read_manifest

    folder = Path(folder)
    read_manifest(folder, stage=stage)
    metrics = json.loads((folder / "metrics.json").read_text())
    if criterion not in metrics:
        raise KeyError(f"criterion {criterion!r} is not a metric of {folder / 'metrics.json'}; its metrics: "
                       f"{sorted(metrics)}")
    protocol_file = folder / "protocol.json"
    if not protocol_file.is_file():
        raise FileNotFoundError(f"{protocol_file}: the evaluation has no measurement protocol; rerun {stage}")
    return metrics, float(metrics[criterion]), {"criterion": criterion, **json.loads(protocol_file.read_text())}


def register_champion(module: Any, name: str, input_example: Any, *, score: float, criterion: str,
                      protocol: dict[str, Any], alias: str, files: tuple[Path, ...], identity: dict[str, Any],
                      code_version: str, tags: dict[str, Any] | None = None,
                      higher_is_better: bool = True) -> dict[str, Any]:
    """What every register stage does: :func:`register_model` with the common tags (score, criterion,
    protocol, git commit, Prefect flow run, register run, code version) plus ``tags``, then move ``alias``
    to the new version only when :func:`champion_gate` says its score beats the holder's under the same
    protocol. Returns the record a stage writes to ``register.json`` (version, uri, alias_moved, reason,
    previous_champion_score ...)."""
    import logging

    import mlflow

    common = {"repflow.score": score, "repflow.criterion": criterion, "repflow.git_commit": git_commit(),
              "repflow.prefect_flow_run_id": prefect_flow_run_id() or "",
              "repflow.register_run_id": mlflow.active_run().info.run_id, "repflow.code_version": code_version,
              "repflow.protocol": json.dumps(protocol, sort_keys=True)}
    version = register_model(module, name, input_example, {**common, **(tags or {})}, files, identity=identity)
    holder = alias_holder(name, alias)
    moved, reason = champion_gate(score, protocol, holder, higher_is_better=higher_is_better)
    if holder is not None and holder.version == version:
        moved, reason = False, f"version {version} already holds it"
    if moved:
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
    logging.getLogger("repflow.tracking").info("%s version %s (%s %.4f): alias %s %s: %s", name, version, criterion,
                                               score, alias, "moved to it" if moved else "kept", reason)
    return {"model": name, "version": version, "alias": alias, "alias_moved": moved, "alias_reason": reason,
            "criterion": criterion, "score": score, "previous_champion_score": None if holder is None else holder.score,
            "protocol": protocol, "uri": f"models:/{name}/{version}", "tracking_uri": mlflow.get_tracking_uri()}


def describe_model(ref: str) -> str:
    """Human-readable summary of a registered version: metrics, lineage, params."""
    import mlflow

    mv = get_model_version(ref)
    client = mlflow.MlflowClient()
    aliases = [a for a, v in client.get_registered_model(mv.name).aliases.items() if str(v) == str(mv.version)]
    lines = [f"{mv.name} version {mv.version}  aliases: {', '.join(aliases) or '-'}",
             f"  uri:        models:/{mv.name}/{mv.version}", f"  run:        {mv.run_id}",
             f"  registered: {_dt.datetime.fromtimestamp(mv.creation_timestamp / 1000).isoformat(timespec='seconds')}"]
    groups: dict[str, list[str]] = {"metric": [], "lineage": [], "params": []}
    for k, v in sorted(mv.tags.items()):
        if k.startswith("repflow.metric."):
            groups["metric"].append(f"    {k[len('repflow.metric.'):]:<28} {v}")
        elif k == "repflow.params":
            groups["params"] = [f"    {pk:<28} {pv}" for pk, pv in sorted(flatten(json.loads(v)).items())]
        elif k.startswith("repflow."):
            groups["lineage"].append(f"    {k[len('repflow.'):]:<28} {v}")
    for title, rows in (("metrics", groups["metric"]), ("lineage", groups["lineage"]), ("params", groups["params"])):
        lines.append(f"  {title}:")
        lines.extend(rows or ["    -"])
    return "\n".join(lines)
