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
from pathlib import Path
from typing import Any, Iterator

__all__ = ["configure", "flow_run", "stage_run", "git_commit", "flatten", "EXPERIMENT", "prefect_flow_run_id",
           "RegistryError", "get_model_version", "champion_score", "describe_model", "register_model"]

EXPERIMENT = "repflow"
_parent_run_id: str | None = None
# The user's MLFLOW_TRACKING_URI, read before anything here runs: mlflow.set_tracking_uri() also
# writes that variable (so subprocesses inherit it), which must not pin later configure() calls.
_USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def _quiet_env() -> None:
    for k, v in {"MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"}.items():
        os.environ.setdefault(k, v)


def configure(root: str | Path = ".") -> str:
    """Point MLflow at the project's store and make sure the experiment exists; returns its id."""
    _quiet_env()
    import mlflow

    root = Path(root).resolve()
    uri = _USER_TRACKING_URI or f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
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


@contextlib.contextmanager
def stage_run(stage: str, params: dict[str, Any], lineage: dict[str, Any]) -> Iterator[Any]:
    """One MLflow run for one stage execution, tagged with its lineage.

    ``lineage`` carries the params digest, code version and input digests; the git commit, DVC
    stage (``DVC_STAGE``) and Prefect flow-run id are added here.
    """
    import mlflow

    tags = {f"repflow.{k}": str(v) for k, v in flatten(lineage).items()}
    tags.update({"repflow.stage": stage, "repflow.git_commit": git_commit(),
                 "repflow.dvc_stage": os.environ.get("DVC_STAGE", ""),
                 "repflow.prefect_flow_run_id": prefect_flow_run_id() or ""})
    with mlflow.start_run(run_name=stage, nested=_parent_run_id is not None, parent_run_id=_parent_run_id,
                          tags=tags) as run:
        mlflow.log_params(flatten(params))
        yield run


# --- model registry -------------------------------------------------------------------------------

class RegistryError(LookupError):
    """A registered model name, alias or version that does not exist."""


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``name@alias`` | ``name/version`` | ``name`` → (name, alias, version)."""
    ref = ref.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, alias, None
    if "/" in ref:
        name, version = ref.split("/", 1)
        return name, None, version
    return ref, None, None


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


def champion_score(name: str, alias: str) -> float | None:
    """Score tag of the version that currently holds ``alias``; None when nobody holds it."""
    try:
        mv = get_model_version(f"{name}@{alias}")
    except RegistryError:
        return None
    score = mv.tags.get("repflow.score")
    return float(score) if score is not None else None


def register_model(module: Any, name: str, input_example: Any, tags: dict[str, Any],
                   checkpoint_files: tuple[Path, ...] = ()) -> str:
    """Log ``module`` in the active run as a pt2 (torch.export) model, register it as ``name``, tag the
    new version, and log ``checkpoint_files`` beside it under ``checkpoint/``. Returns the version.

    pt2 loads without running pickled code and without this package; the safetensors files let a
    user rebuild the original ``nn.Module``.
    """
    import mlflow
    import torch

    info = mlflow.pytorch.log_model(module, name=name.replace("repflow-", ""), input_example=input_example,
                                    serialization_format="pt2", registered_model_name=name,
                                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    for f in checkpoint_files:
        mlflow.log_artifact(str(f), artifact_path="checkpoint")
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, str(v))
    return version


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
