"""Stages: each module has ``plan(params, <input folders>)`` → (lineage, stage key),
``run(params, <input folders>, out) -> out`` (the Prefect task body and the DVC stage command) and
``run_in(workspace, params)``, which wires the workspace's standard folders."""
from tasks import distill, evaluate, generate, prep, register, select, train, transfer, zoo

STAGES = {"prep": prep, "generate": generate, "distill": distill, "select": select, "train": train,
          "evaluate": evaluate, "zoo": zoo, "transfer": transfer, "register": register}

__all__ = ["STAGES"]
