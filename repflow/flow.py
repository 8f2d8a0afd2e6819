"""The Prefect side of every family: stages as Prefect tasks, and the scaffold a family's flow runs in.

:func:`family_flow` makes a family's flow from its declarations: each stage is submitted as soon as the
stages it reads from are done; with ``--runner ray`` independent stages (the image family's zoo beside
select and train) then run side by side in separate processes. A family whose flow needs more (a subflow for a fan-out)
passes per-stage ``extras`` and ``inline`` stages; nothing else differs between families.

Each stage task's cache key is the stage key (params keys + upstream manifest digests + the stage's own
code version) plus the output folder; the cached result (a path) is used only while that output still
verifies, so a rerun with the same params shows finished stages as ``Cached``, and a deleted or tampered
output is rebuilt. One MLflow parent run spans the flow; each stage logs a nested run. The run report is
assembled from the stage summaries.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "repflow")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import mlflow  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_link_artifact, create_markdown_artifact  # noqa: E402
from prefect.context import TaskRunContext  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from prefect_ray import RayTaskRunner  # noqa: E402
from prefect_ray.context import remote_options  # noqa: E402

from repflow import tracking  # noqa: E402
from repflow.cluster import choose_device, ensure_ray, ray_resources  # noqa: E402
from repflow.config import section_digest  # noqa: E402
from repflow.family import Family, Stage, get_family, load_params  # noqa: E402
from repflow.manifest import atomic_write_text  # noqa: E402
from repflow.stage import Workspace, current_output, plan_stage, read_summary, run_stage  # noqa: E402

__all__ = ["family_flow", "flow_with_runner", "stage_task", "run_report", "RUNNERS"]


_TASKS: dict[tuple[str, str], Any] = {}


def stage_task(stage: Stage):
    """The Prefect task of one stage (named ``family.stage``), made once per process."""
    if (stage.qualname, stage.module) in _TASKS:
        return _TASKS[stage.qualname, stage.module]

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        """Stage key + output folder: the cached result is a path, so two work folders with the same
        params and inputs must not hand each other their outputs."""
        key = plan_stage(stage, parameters["params"], parameters["inputs"])[2]
        out = str(Path(parameters["out"]).resolve())
        return f"repflow-{stage.qualname}-{hashlib.sha256(f'{key}:{out}'.encode()).hexdigest()}"

    def run_stage_task(params: Any, inputs: dict[str, Path], out: Path, tracking_context: dict) -> Path:
        tracking.adopt(tracking_context)  # a no-op in the flow's process; a Ray worker needs it
        return run_stage(stage, params, inputs, out)

    _TASKS[stage.qualname, stage.module] = task(run_stage_task, name=stage.qualname, cache_key_fn=key_fn,
                                                persist_result=True)
    return _TASKS[stage.qualname, stage.module]


def _stage_device(params: Any) -> str:
    return choose_device(params.device).type if params.device == "auto" else params.device


class FamilyRun:
    """One flow run of a family on a work folder: submits stages in dependency order and collects their
    summaries for the report."""

    def __init__(self, family: Family, params: Any, ws: Workspace):
        self.family, self.params, self.ws = family, params, ws
        self.stages = {s.name: s for s in family.stages}
        self.futures: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}

    def _inputs(self, stage: Stage) -> dict[str, Path]:
        return {name: self.path(upstream) for name, upstream in stage.read_from(self.params).items()}

    def submit(self, name: str) -> None:
        """Start ``name`` on the flow's task runner once its inputs are done (in this process, or as a Ray
        task that asks for a GPU when the stage runs on CUDA). Prefect's cached result is used only while
        the output it names still verifies."""
        stage = self.stages[name]
        inputs, out = self._inputs(stage), self.ws.out(stage)
        fresh = current_output(out, stage.qualname, plan_stage(stage, self.params, inputs)[2])
        with remote_options(**ray_resources(_stage_device(self.params))):
            self.futures[name] = stage_task(stage).with_options(refresh_cache=not fresh).submit(
                self.params, inputs, out, tracking.context())

    def run_inline(self, name: str, **extras: Any) -> Path:
        """Run ``name`` in the flow's own process, not as a task: for a stage that starts a subflow."""
        stage = self.stages[name]
        self.paths[name] = run_stage(stage, self.params, self._inputs(stage), self.ws.out(stage), **extras)
        return self.paths[name]

    def path(self, name: str) -> Path:
        """The output folder of ``name``, waiting for its task (a failed task raises here)."""
        if name not in self.paths:
            self.paths[name] = Path(self.futures[name].result())
        return self.paths[name]

    def done(self, name: str) -> bool:
        return name in self.paths or (name in self.futures and self.futures[name].state.is_final())

    def run_all(self, inline: dict[str, Callable[[], dict[str, Any]]],
                targets: list[str] | None = None) -> dict[str, Path]:
        """Every stage of :meth:`Family.stages_to_run` (``targets`` and what they read from; by default all but
        the on-demand ones), each submitted as soon as the stages it reads from are done. The task runner
        decides what runs at once: one stage at a time by default; on ``--runner ray`` independent stages
        run side by side, each in its own process."""
        chosen = self.family.stages_to_run(targets, self.params)
        pending = list(chosen)
        while pending:
            ready = [s for s in pending if all(self.done(u) for u in s.read_from(self.params).values())]
            for stage in ready:
                pending.remove(stage)
                for upstream in stage.read_from(self.params).values():
                    self.path(upstream)  # raises if an upstream stage failed
                if stage.name in inline:
                    for name in list(self.futures):  # nothing else runs in this process beside it
                        self.path(name)
                    self.run_inline(stage.name, **inline[stage.name]())
                else:
                    self.submit(stage.name)
            if not ready:  # block until an input of the next pending stage is done
                waiting = next((u for u in pending[0].read_from(self.params).values() if not self.done(u)), None)
                if waiting is not None:  # (None: it finished since the check above)
                    self.futures[waiting].wait()
        return {s.name: self.path(s.name) for s in chosen}


def run_report(family: Family, params: Any, paths: dict[str, Path]) -> tuple[str, dict[str, Any]]:
    """Markdown report of one flow run, assembled from the stage summaries, and the metrics per stage."""
    summaries = {name: read_summary(path) for name, path in paths.items()}
    md = [f"# repflow run report: {family.name} family", "", family.summary + ".", "",
          f"Seed {params.seed}, device {params.device}.", ""]
    for name, s in summaries.items():
        if s.markdown:
            md += [f"## {family.name}.{name}", "", s.markdown, ""]
    md += ["## Artifacts", *(f"- {name}: `{p}`" for name, p in paths.items()), "",
           "Plots: " + ", ".join(f"[{name}/{plot}]({(paths[name] / plot).resolve().as_uri()})"
                                for name, s in summaries.items() for plot in s.plots), "",
           "## Look at it",
           "- `repflow ui` starts the Prefect and MLflow servers on this work folder and prints their URLs "
           "(Prefect http://127.0.0.1:4200, MLflow http://127.0.0.1:5000); runs made with the two `export` lines "
           "it prints show up there live",
           f"- without a server: `mlflow ui --backend-store-uri {mlflow.get_tracking_uri()} --host 127.0.0.1 "
           f"--port 5000`",
           *(f"- `repflow lineage {spec.name}@{spec.alias}` walks from the model back to the raw data"
             for s in family.stages for spec in s.registers if spec.alias)]
    return "\n".join(md) + "\n", {name: s.metrics for name, s in summaries.items()}


def _mlflow_run_link(tracking_uri: str, run) -> str | None:
    """The MLflow UI page of ``run`` when tracking goes to an MLflow server (``repflow ui``)."""
    if not tracking_uri.startswith("http"):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def _close_runs_of_killed_flows(ws: Workspace, flow_name: str, keep: str) -> None:
    """A flow killed in this work folder stays Running in Prefect and MLflow forever (nothing is left to
    report its end). We hold the folder's lock, so no live run can own them: mark them Crashed / KILLED."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    logger = get_run_logger()
    me = tracking.prefect_flow_run_id()
    with get_client(sync_client=True) as client:
        running = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.RUNNING]))))
        for run in running:
            workdir = run.parameters.get("workdir")
            if str(run.id) != me and workdir and Path(workdir).resolve() == ws.root:
                client.set_flow_run_state(run.id, Crashed(message=f"its process died; {ws.root} was free when "
                                                                  f"flow run {me} started"), force=True)
                logger.warning("flow run %s (%s) was killed in this work folder; marked Crashed", run.name, run.id)
    closed = tracking.close_orphaned_runs(ws.root, keep=keep)
    if closed:
        logger.warning("closed %d MLflow runs left RUNNING by a killed flow: %s", len(closed), ", ".join(closed))


def report_path(ws: Workspace, family: Family) -> Path:
    return ws.root / "reports" / f"{family.name}-run-report.md"


def run_family(family_name: str, params_file: str, overrides: list[str] | None, workdir: str,
               inline: dict[str, Callable[[], dict[str, Any]]] | None = None,
               stages: list[str] | None = None) -> dict[str, Any]:
    """The body of every family flow. ``inline`` maps stages that run in the flow's process to a function
    giving their extras (for example a subflow that fans the stage's work out); ``stages`` names the
    stages to run with what they read from (default: all but the on-demand ones)."""
    family = get_family(family_name)
    logger = get_run_logger()
    ws = Workspace.at(workdir)
    params = load_params(Path(workdir) / params_file if not Path(params_file).is_absolute() else params_file,
                         overrides or [])
    tracking.configure(ws.root)
    ensure_ray()
    dumped = params.model_dump(mode="json")
    with ws.lock(), tracking.flow_run(family.name, dumped,
                                      tags={"repflow.prefect_flow_run_id": tracking.prefect_flow_run_id() or "",
                                            "repflow.git_commit": tracking.git_commit(),
                                            "repflow.params_digest": section_digest(dumped),
                                            "repflow.family": family.name,
                                            "repflow.workdir": str(ws.root)}) as parent:
        _close_runs_of_killed_flows(ws, flow_name(family), keep=parent.info.run_id)
        paths = FamilyRun(family, params, ws).run_all(inline or {}, stages)
        md, metrics = run_report(family, params, paths)
        link = _mlflow_run_link(mlflow.get_tracking_uri(), parent)
        if link:
            md += f"- this run in MLflow: [{parent.info.run_id}]({link})\n"
            create_link_artifact(key="mlflow-run", link=link, link_text="MLflow parent run")
        path = report_path(ws, family)
        atomic_write_text(path, md)
        mlflow.log_artifact(str(path))
        create_markdown_artifact(key=f"{family.name}-run-report", markdown=md,
                                 description=f"repflow {family.name} flow report")
    logger.info("report written to %s", path)
    return {"family": family.name, "report": str(path), "mlflow_run_id": parent.info.run_id, "stages": metrics,
            "paths": {k: str(v) for k, v in paths.items()}}


def flow_name(family: Family) -> str:
    return f"repflow-{family.name}"


def family_flow(family_name: str, inline: dict[str, Callable[[], dict[str, Any]]] | None = None):
    """The Prefect flow ``repflow-<family>`` that runs every stage of the family in dependency order."""

    def body(params_file: str = "params.yaml", overrides: list[str] | None = None, workdir: str = ".",
             stages: list[str] | None = None) -> dict:
        return run_family(family_name, params_file, overrides, workdir, inline, stages)

    body.__doc__ = (f"Every stage of the {family_name} family (or ``stages`` and what they read from; on-demand "
                    f"stages only when named) on the params in ``params_file`` (+ ``KEY=VALUE`` overrides), in the "
                    f"work folder ``workdir`` (held for the run).")
    # Deployments find a flow by module path: name the function after the attribute the family declares
    module, _, attr = get_family(family_name).flow.partition(":")
    body.__module__, body.__name__, body.__qualname__ = module, attr, attr
    # One stage at a time in this process: stages seed and draw from torch's global RNG and torch.export
    # keeps global state, so two stages on threads of one process would not be deterministic (or safe).
    return flow(body, name=f"repflow-{family_name}", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))


RUNNERS = ("local", "ray")


def flow_with_runner(family: Family, runner: str):
    """The family's flow with its stage tasks run ``local`` (one at a time in this process) or on ``ray``
    (each stage a Ray task in its own worker process: independent stages side by side, and on a cluster
    a CUDA stage lands on a GPU node)."""
    f = family.flow_function()
    if runner == "local":
        return f
    if runner == "ray":
        return f.with_options(task_runner=RayTaskRunner())
    raise ValueError(f"runner {runner!r}; allowed: {', '.join(RUNNERS)}")
