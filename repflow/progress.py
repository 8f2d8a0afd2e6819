"""Progress bars for long loops: tqdm on a terminal, periodic log lines otherwise (CI, Prefect workers)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(it: Iterable[T], *, desc: str, unit: str = "it", total: int | None = None) -> Iterable[T]:
    """Wrap a loop with a progress bar. ``REPFLOW_PROGRESS=0`` silences it."""
    disable = os.environ.get("REPFLOW_PROGRESS", "1") == "0"
    interval = 0.1 if sys.stderr.isatty() else 10.0
    return tqdm(it, desc=desc, unit=unit, total=total, disable=disable, leave=False, mininterval=interval,
                dynamic_ncols=True)


class RunProgress:
    """A progress bar in the Prefect UI (a progress artifact of the running task), so a person watching
    the flow run sees how far a long stage is. Outside a Prefect task (``dvc repro``, ``repflow
    stage``) it does nothing and never starts a Prefect server."""

    def __init__(self, description: str):
        self.artifact_id = None
        if "prefect" not in sys.modules:
            return
        from prefect.artifacts import create_progress_artifact
        from prefect.context import TaskRunContext

        if TaskRunContext.get() is not None:
            self.artifact_id = create_progress_artifact(progress=0.0, description=description)

    def update(self, percent: float) -> None:
        """``percent`` in 0..100."""
        if self.artifact_id is not None:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(artifact_id=self.artifact_id, progress=min(max(float(percent), 0.0), 100.0))
