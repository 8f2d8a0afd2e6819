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
