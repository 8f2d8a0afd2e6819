"""Peak resident memory of this process, measured over nested scopes (a stage, an arm inside it).

Linux keeps one high-water mark per process (``VmHWM`` in ``/proc/self/status``) and resets it when 5 is
written to ``/proc/self/clear_refs``. A scope resets it when it starts; a reset made by an inner scope
first folds the mark reached so far into every open scope, so an outer scope's peak still covers what
ran before the inner one. Where the reset is not available the peak is ``ru_maxrss`` (since the process
started). Only this process: Ray tasks and DataLoader workers are other processes with their own peaks.
"""
from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["PeakMemory", "reset_peak_memory", "peak_memory_mb"]


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _high_water_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """One scope: ``start()`` resets the process's high-water mark (returns the resident MiB now), ``peak_mb()``
    is the peak resident MiB since then, including peaks that scopes started later have reset away."""

    _open: list["PeakMemory"] = []

    def __init__(self) -> None:
        self._carried = 0.0

    def start(self) -> float:
        mark = _high_water_mb()
        for scope in PeakMemory._open:
            scope._carried = max(scope._carried, mark)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self._carried = 0.0
        if self not in PeakMemory._open:
            PeakMemory._open.append(self)
        now = _status_mb("VmRSS")
        return now if now is not None else 0.0

    def peak_mb(self) -> float:
        return max(self._carried, _high_water_mb())

    def stop(self) -> float:
        """The peak, and the scope closed."""
        peak = self.peak_mb()
        if self in PeakMemory._open:
            PeakMemory._open.remove(self)
        return peak


_DEFAULT = PeakMemory()


def reset_peak_memory() -> float:
    """Start measuring a new peak of this process's resident memory; returns the resident MiB now."""
    return _DEFAULT.start()


def peak_memory_mb() -> float:
    """Peak resident MiB of this process since :func:`reset_peak_memory` (where the reset is not available,
    since the process started)."""
    return _DEFAULT.peak_mb()
