"""The main DAG: prep → generate → distill → select → train → evaluate → zoo → transfer → register, one
Prefect task per stage, except the transfer-attack grid: a subflow whose cells are Prefect tasks on Ray
(prefect-ray's RayTaskRunner), so the UI shows every (attack, fusion, ε) cell.

Each task's cache key is the stage key (params section + upstream manifest digests + code
version); the cached result is used only while the stage's output on disk still verifies, so a rerun
with the same params shows the completed stages as ``Cached`` and a deleted or tampered output is
rebuilt.
One MLflow parent run spans the flow; each stage logs a nested run. Ray is started once here (or
joined through ``RAY_ADDRESS``) and reused by every stage that fans out.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "repflow")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task, unmapped  # noqa: E402
import mlflow  # noqa: E402
from prefect.artifacts import create_link_artifact, create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.context import TaskRunContext  # noqa: E402
from prefect_ray import RayTaskRunner  # noqa: E402
from prefect_ray.context import remote_options  # noqa: E402

from repflow import tracking  # noqa: E402
from repflow.cluster import choose_device, ensure_ray, ray_resources  # noqa: E402
from repflow.config import Params, load_params, section_digest  # noqa: E402
from repflow.manifest import atomic_write_text  # noqa: E402
from repflow.report import markdown_table  # noqa: E402
from repflow.stage import Workspace, current_output  # noqa: E402
from tasks import distill, evaluate, generate, prep, register, select, train, transfer, zoo  # noqa: E402


def _stage_task(module):
    stage = module.__name__.rsplit(".", 1)[-1]

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        """Stage key + output folder: the cached result is a path, so two work folders with the same
        params and inputs must not hand each other their outputs."""
        key = module.plan(parameters["params"], *parameters["inputs"])[1]
        out = str(Path(parameters["out"]).resolve())
        return f"repflow-{stage}-{hashlib.sha256(f'{key}:{out}'.encode()).hexdigest()}"

    def run_stage(params: Params, inputs: list[Path | None], out: Path, tracking_context: dict) -> Path:
        tracking.adopt(tracking_context)  # a no-op in the flow's process; a Ray worker needs it
        return module.run(params, *inputs, out)

    return task(run_stage, name=stage, cache_key_fn=key_fn, persist_result=True)


STAGE_TASKS = {module: _stage_task(module) for module in (prep, generate, distill, select, train, evaluate,
                                                                  zoo, register)}


@task(name="attack-cell", cache_policy=NO_CACHE)
def attack_cell_task(cell: dict, models: dict, x, y, params: Params, device: str) -> list[dict]:
    return transfer.attack_cell(cell, models, x, y, params, device)


@flow(name="transfer-grid", task_runner=RayTaskRunner(), log_prints=True)
def transfer_grid_flow(cells: list[dict], models: dict, x, y, params: Params, device: str) -> list[dict]:
    """One Prefect task per grid cell, executed by Ray (on a GPU node when the stage uses CUDA)."""
    with remote_options(**ray_resources(device)):
        futures = attack_cell_task.map(cells, unmapped(models), unmapped(x), unmapped(y), unmapped(params),
                                       unmapped(device))
    return [row for f in futures for row in f.result()]


def _run_transfer(params: Params, shards: Path, zoo_dir: Path, encoder_dir: Path, eval_dir: Path, out: Path) -> Path:
    """The transfer stage with its grid fanned out through :func:`transfer_grid_flow`."""
    return transfer.run(params, shards, zoo_dir, encoder_dir, eval_dir, out,
                        fan_out=lambda cells, models, x, y, p, device: transfer_grid_flow(cells, models, x, y, p,
                                                                                           device))


def _stage_device(params: Params) -> str:
    return choose_device(params.device).type if params.device == "auto" else params.device


def _run(module, params: Params, *inputs: Path, out: Path) -> Path:
    """Run a stage as its Prefect task, through the flow's task runner: in this process, or as a Ray
    task that asks for a GPU when the stage runs on CUDA. Prefect's cached result is used only while
    the output it names still verifies; otherwise the stage recomputes and its new result replaces
    the cache entry."""
    stage_task = STAGE_TASKS[module]
    fresh = current_output(Path(out), stage_task.name, module.plan(params, *inputs)[1])
    with remote_options(**ray_resources(_stage_device(params))):
        future = stage_task.with_options(refresh_cache=not fresh).submit(params, list(inputs), out, tracking.context())
    return Path(future.result())


def run_report(params: Params, paths: dict[str, Path]) -> tuple[str, dict[str, Any]]:
    """Markdown summary of one pipeline run, and the numbers in it."""
    metrics = json.loads((paths["evaluate"] / "metrics.json").read_text())
    reg = json.loads((paths["register"] / "register.json").read_text())
    rows = [{"ε (×1/255)": f"{float(e) * 255:.1f}", "robust accuracy": a} for e, a in metrics["robust_acc"].items()]
    summary = {"clean_acc": metrics["clean_acc"], "robust_acc_mean": metrics["robust_acc_mean"],
               "robust_acc": metrics["robust_acc"], "model": reg["uri"], "champion": reg["alias_moved"]}
    tracking_uri = reg["tracking_uri"]
    quality = json.loads((paths["generate"] / "quality.json").read_text())
    sel = json.loads((paths["select"] / "selection.json").read_text())
    tm = json.loads((paths["transfer"] / "metrics.json").read_text())
    summary["transfer"] = tm
    dm = json.loads((paths["distill"] / "metrics.json").read_text())
    summary["distill"] = {r["set"]: {"same_arch": r["same_arch"], "cross_arch": r["cross_arch"]} for r in dm["sets"]}
    distill_line = (f"- distilled set ({dm['distilled']}, {params.distill.ipc} images per class): cross-architecture "
                    f"accuracy {dm['cross_arch']:.3f}, same-architecture {dm['same_arch']:.3f}; "
                    + ", ".join(f"{r['set']} {r['cross_arch']:.3f}" for r in dm["sets"][1:]))
    alf = (f"- ALF (probe finetuned on PGD-{params.evaluate.alf_steps} examples): "
           f"clean {metrics['alf_clean_acc']:.4f}, "
           f"robust mean over ε {metrics['alf_robust_acc_mean']:.4f}" if "alf_clean_acc" in metrics else "")
    rd = (f"- representational divergence on held-out images: {metrics['representational_divergence']:.4f}"
          if "representational_divergence" in metrics else "")
    transfer_lines = [f"- transfer attacks from the zoo's surrogate at ε = {tm['eps_max']:g}: "
                      f"mean success on black-box "
                      f"targets {tm.get('mean_transfer_success_base', float('nan')):.3f} without SVD fusion, "
                      f"{tm.get('mean_transfer_success_svd', float('nan')):.3f} with; on this encoder + probe "
                      f"{tm.get('encoder_transfer_success_base', float('nan')):.3f} / "
                      f"{tm.get('encoder_transfer_success_svd', float('nan')):.3f}"]
    md = [
        "# repflow run report", "",
        f"Source **{params.prep.source}**, encoder **{params.train.encoder}** ({params.train.method} on "
        f"{params.train.data} data, {params.train.epochs} epochs), seed {params.seed}.", "",
        f"- generator: Fréchet distance {quality['frechet_distance']:.3f} in the judge's feature space "
        f"(real vs real {quality['frechet_distance_real_vs_real']:.3f}); judge accuracy on generated samples "
        f"{quality['judge_acc']:.3f} (on real {quality['judge_acc_real']:.3f})",
        f"- coreset: {sel['method']}, {sel['selected']} of {sel['images']} training images after "
        f"{sel['warmup_epochs']} warm-up epochs",
        f"- clean accuracy (linear probe, test split): **{metrics['clean_acc']:.4f}**",
        f"- PGD-{params.evaluate.pgd_steps} robust accuracy, mean over ε: **{metrics['robust_acc_mean']:.4f}** "
        f"({metrics['attacked_images']} test images)",
        *[line for line in (alf, rd) if line],
        *transfer_lines, distill_line, "",
        markdown_table(rows), "",
        f"Registered `{reg['uri']}`; alias `{reg['alias']}` "
        + ("moved to it." if reg["alias_moved"] else f"kept (its {reg['criterion']} {reg['score']:.4f} did not beat "
                                                    f"{reg['previous_champion_score']:.4f})."), "",
        "## Artifacts",
        *(f"- {name}: `{p}`" for name, p in paths.items()),
        "Plots: " + ", ".join(f"[{p.parent.name}/{p.name}]({p.resolve().as_uri()})" for p in (
            paths["evaluate"] / "robust_accuracy.png", paths["train"] / "loss.png", paths["prep"] / "samples.png",
            paths["generate"] / "samples.png", paths["generate"] / "views.png", paths["select"] / "coreset.png",
            paths["transfer"] / "heatmap.png", paths["transfer"] / "success_vs_eps.png",
            paths["distill"] / "distilled.png")), "",
        "## Look at it",
        "- `repflow ui` starts the Prefect and MLflow servers on this work folder and prints their URLs "
        "(Prefect http://127.0.0.1:4200, MLflow http://127.0.0.1:5000); runs made with the two `export` lines it "
        "prints show up there live",
        f"- without a server: `mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000`",
        "- `repflow lineage repflow-encoder@champion` walks from the model back to the raw data",
        f"- load the model: `mlflow.pytorch.load_model('models:/{reg['model']}@{reg['alias']}')`",
    ]
    return "\n".join(md) + "\n", summary


def _mlflow_run_link(tracking_uri: str, run) -> str | None:
    """The MLflow UI page of ``run`` when tracking goes to an MLflow server (``repflow ui``)."""
    if not tracking_uri.startswith("http"):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def _close_runs_of_killed_flows(ws: Workspace, keep: str) -> None:
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
            flow_filter=FlowFilter(name=FlowFilterName(any_=["repflow-main"])),
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


@flow(name="repflow-main", log_prints=True)
def main_flow(params_file: str = "params.yaml", overrides: list[str] | None = None,
              workdir: str = ".") -> dict[str, Any]:
    """prep → generate → distill → select → train → evaluate → zoo → transfer → register on the params in
    ``params_file`` (+ ``KEY=VALUE`` overrides), in the work folder ``workdir`` (held for the run)."""
    logger = get_run_logger()
    ws = Workspace.at(workdir)
    params = load_params(Path(workdir) / params_file if not Path(params_file).is_absolute() else params_file,
                         overrides or [])
    tracking.configure(ws.root)
    ensure_ray()
    dumped = params.model_dump(mode="json")
    with ws.lock(), tracking.flow_run("main", dumped,
                                      tags={"repflow.prefect_flow_run_id": tracking.prefect_flow_run_id() or "",
                                            "repflow.git_commit": tracking.git_commit(),
                                            "repflow.params_digest": section_digest(dumped),
                                            "repflow.workdir": str(ws.root)}) as parent:
        _close_runs_of_killed_flows(ws, keep=parent.info.run_id)
        shards = _run(prep, params, out=ws.out("prep"))
        views = _run(generate, params, shards, out=ws.out("generate"))
        distilled = _run(distill, params, shards, views, out=ws.out("distill"))
        selection = _run(select, params, shards, views, out=ws.out("select"))
        encoder_dir = _run(train, params, shards, views, selection, out=ws.out("train"))
        eval_dir = _run(evaluate, params, shards, encoder_dir, out=ws.out("evaluate"))
        zoo_dir = _run(zoo, params, shards, out=ws.out("zoo"))
        transfer_dir = _run_transfer(params, shards, zoo_dir, encoder_dir, eval_dir, ws.out("transfer"))
        reg_dir = _run(register, params, encoder_dir, eval_dir, out=ws.out("register"))
        paths = {"prep": shards, "generate": views, "distill": distilled, "select": selection, "train": encoder_dir,
                 "evaluate": eval_dir,
                 "zoo": zoo_dir, "transfer": transfer_dir, "register": reg_dir}
        md, summary = run_report(params, paths)
        link = _mlflow_run_link(mlflow.get_tracking_uri(), parent)
        if link:
            md += f"- this run in MLflow: [{parent.info.run_id}]({link})\n"
            create_link_artifact(key="mlflow-run", link=link, link_text="MLflow parent run")
        report_path = ws.root / "reports" / "run-report.md"
        atomic_write_text(report_path, md)
        mlflow.log_artifact(str(report_path))
        mlflow.log_metrics({"clean_acc": summary["clean_acc"], "robust_acc_mean": summary["robust_acc_mean"]})
        create_markdown_artifact(key="run-report", markdown=md, description="repflow main flow report")
        summary.update(report=str(report_path), mlflow_run_id=parent.info.run_id)
    logger.info("report written to %s", report_path)
    return summary


def main_flow_with_runner(runner: str):
    """``main_flow`` with its stage tasks run ``local`` (one after another in this process) or on
    ``ray`` (each stage a Ray task; on a cluster a CUDA stage lands on a GPU node)."""
    if runner == "local":
        return main_flow
    if runner == "ray":
        return main_flow.with_options(task_runner=RayTaskRunner())
    raise ValueError(f"runner {runner!r}; allowed: local, ray")
