"""``dvc.yaml`` from the stage declarations: one DVC stage per declared stage, named ``family-stage`` (DVC
allows no dots in stage names), whose command is ``repflow stage family.stage``.

Each stage's deps are its input folders and its real code (:func:`repflow.family.code_files`, the files under
the project folder), so an edit elsewhere leaves ``dvc repro`` a no-op. Outputs are ``persist: true``: DVC
then leaves a stage's output in place before running its command, and the stage runner's manifest check
reuses it when a Prefect run already made it with the same key (DVC and Prefect share done-state).
"""
from __future__ import annotations

from pathlib import Path

import yaml

from repflow.family import Stage, code_files, families

__all__ = ["dvc_yaml", "metrics_file"]

HEADER = """\
# Generated from the stage declarations (repflow/families/*/__init__.py) by `repflow dvc-yaml --write`;
# `make test` checks that it is current. The same stages the Prefect flows run: `dvc repro`,
# `dvc exp run -S train.epochs=2`. Each cmd runs the stage through the one stage runner.
"""


def metrics_file(stage: Stage) -> str:
    return f"{stage.out}.metrics.json"


def _stage_entry(stage: Stage, root: Path, outs_by_stage: dict[str, str]) -> dict:
    code = []
    for path in code_files(stage.module):
        try:
            code.append(path.resolve().relative_to(root).as_posix())
        except ValueError:  # installed outside the project: not a dependency DVC can track here
            continue
    deps = [outs_by_stage[upstream] for upstream in dict.fromkeys(stage.inputs.values())] + sorted(code)
    return {
        "cmd": f"repflow stage {stage.qualname}",
        "deps": deps,
        "params": list(stage.params),
        "outs": [{stage.out: {"persist": True}}],
        "metrics": [{metrics_file(stage): {"cache": False}}],
    }


def dvc_yaml(root: str | Path = ".") -> str:
    """The ``dvc.yaml`` text for every registered family's stages (not the ``on_demand`` ones), with code deps
    relative to ``root``."""
    root = Path(root).resolve()
    stages = {}
    for fam in families():
        outs = {s.name: s.out for s in fam.stages}
        for stage in (s for s in fam.stages if not s.on_demand):
            stages[stage.dvc_name] = _stage_entry(stage, root, outs)
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=120)
