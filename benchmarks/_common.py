"""Helpers shared by the benchmark scripts: machine facts and writing results (JSON + markdown)."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from repflow.manifest import atomic_write_text
from repflow.report import markdown_table

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "platform": platform.platform(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def beyond_noise(diffs: list[float]) -> bool:
    """Paired per-seed differences (same seeds on both arms) read as a real effect: at least 2 seeds,
    every difference of the same sign, and their mean larger than their std. With 3 seeds, equal signs
    happen by chance 1 time in 4, so a call this rule makes is weak evidence, not proof."""
    if len(diffs) < 2:
        return False
    m, sd = mean_std(diffs)
    return (all(x > 0 for x in diffs) or all(x < 0 for x in diffs)) and abs(m) > sd


def write_results(name: str, title: str, rows: list[dict], notes: list[str], extra: dict | None = None) -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md``; returns the markdown path."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "rows": rows, **(extra or {})}
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(payload, indent=1))
    md = [f"# {title}", "", f"Machine: {payload['machine']}", "", markdown_table(rows, floatfmt="{:.3f}"), ""]
    md += [f"- {n}" for n in notes]
    path = RESULTS / f"{name}.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    print("\n".join(md))
    return path
