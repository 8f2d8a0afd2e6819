"""Helpers shared by the benchmark scripts: machine facts and writing results (JSON + markdown)."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from repflow.manifest import atomic_write_text
from repflow.report import markdown_table
from repflow.verdict import Claim, Control, claim_record, judge, paired_interval, write_claim

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "platform": platform.platform(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def interval_text(diffs: list[float]) -> str:
    """The 95 % Student-t interval of paired per-seed differences (:func:`repflow.verdict.paired_interval`), as a
    note writes it where it once said "beyond / within seed noise"; a verdict comes only from the claim record."""
    _, low, high = paired_interval(diffs)
    return f"95 % interval [{low:+.4f}, {high:+.4f}], n={len(diffs)}"


@dataclass(frozen=True)
class Tested:
    """One declared claim as a benchmark measured it: the per-seed differences (method − reference, same seed
    on both arms), the controls that must pass first, the run's scale and the arms' raw per-seed values."""

    claim: Claim
    diffs: list[float]
    controls: tuple[Control, ...] = ()
    scale: dict = field(default_factory=dict)
    per_seed: dict | None = None
    extra: dict | None = None


def write_claims(tested: Iterable[Tested], source: str, results: Path = RESULTS,
                 extra: dict | None = None) -> list[str]:
    """Judge each claim by the one rule (:func:`repflow.verdict.judge`), write its record to
    ``results/claims/<id>.json`` (``extra`` added to each record's) and return one note line per claim
    pointing at it."""
    lines = []
    for t in tested:
        verdict = judge(t.claim, t.diffs, t.controls)
        record = claim_record(t.claim, t.diffs, verdict, t.controls, t.scale, t.per_seed,
                              {"source": f"benchmarks/results/{source}.json", **(extra or {}), **(t.extra or {})})
        path = write_claim(record, results)
        unit = f" {t.claim.unit}" if t.claim.unit else ""
        lines.append(f"Claim `{t.claim.id}` ({t.claim.statement}): **{verdict.verdict}** — {verdict.reason}; gain "
                     f"{verdict.mean:+.4g}{unit} over {verdict.n} seeds. Record: claims/{path.name} "
                     "(`repflow claims`).")
    return lines


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


def read_rows(path: Path | None) -> list[dict]:
    """The finished rows of a resumable benchmark run: one JSON object per line of ``path``, appended by
    :func:`append_rows` as each arm lands, so a stopped run continues where it was; ``[]`` when ``path`` is None
    or absent. A torn last line (the run killed mid-write) is skipped, and its arm runs again."""
    if path is None or not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_rows(path: Path | None, rows: Iterable[dict]) -> None:
    """Append finished rows to a run's rows file (see :func:`read_rows`); nothing when ``path`` is None."""
    if path is not None:
        with path.open("a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


def run_controls(control_task, seeds: int) -> list[dict]:
    """``control_task(seed) -> dict`` for seeds 0..seeds-1, each row with its seed and CPU seconds, printed as
    it lands (a positive control is judged from these rows by the benchmark's own check)."""
    import time

    rows = []
    for seed in range(seeds):
        cpu = time.process_time()
        rows.append({"seed": seed, **control_task(seed), "cpu_s": time.process_time() - cpu})
        print(f"control seed {seed}: {rows[-1]}", flush=True)
    return rows
