"""The image family's flow, ``repflow-image``: prep → generate → distill / select → train → evaluate;
zoo → transfer; register, one Prefect task per stage (:func:`repflow.flow.family_flow`), except the
transfer-attack grid: a subflow whose cells are Prefect tasks on Ray (prefect-ray's RayTaskRunner), so the
UI shows every (attack, fusion, ε) cell. The on-demand compare stage (``repflow compare``) fans its
(method, seed) arms out the same way.
"""
from __future__ import annotations

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect_ray import RayTaskRunner
from prefect_ray.context import remote_options

from repflow.cluster import ray_resources
from repflow.families.image.stages import compare, transfer
from repflow.flow import family_flow


@task(name="attack-cell", cache_policy=NO_CACHE)
def attack_cell_task(cell: dict, models: dict, x, y, params, device: str) -> list[dict]:
    return transfer.attack_cell(cell, models, x, y, params, device)


@flow(name="transfer-grid", task_runner=RayTaskRunner(), log_prints=True)
def transfer_grid_flow(cells: list[dict], models: dict, x, y, params, device: str) -> list[dict]:
    """One Prefect task per grid cell, executed by Ray (on a GPU node when the stage uses CUDA)."""
    with remote_options(**ray_resources(device)):
        futures = attack_cell_task.map(cells, unmapped(models), unmapped(x), unmapped(y), unmapped(params),
                                       unmapped(device))
    return [row for f in futures for row in f.result()]


@task(name="compare-arm", task_run_name="compare-arm-{arm[method]}-seed{arm[seed]}", cache_policy=NO_CACHE)
def compare_arm_task(arm: dict, data: dict, params, device: str) -> dict:
    return compare.run_arm(arm, data, params, device)


@flow(name="compare-arms", task_runner=RayTaskRunner(), log_prints=True)
def compare_arms_flow(arms: list[dict], data: dict, params, device: str) -> list[dict]:
    """One Prefect task per (method, seed) arm, run by Ray."""
    with remote_options(**ray_resources(device)):
        futures = compare_arm_task.map(arms, unmapped(data), unmapped(params), unmapped(device))
    for done, future in enumerate(as_completed(futures), 1):
        compare.log_arm(future.result()["row"], done, len(arms))
    return [f.result() for f in futures]


image_flow = family_flow("image", inline={"transfer": lambda: {"fan_out": transfer_grid_flow},
                                          "compare": lambda: {"fan_out": compare_arms_flow}})
