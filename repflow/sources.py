"""What every family's data sources share: the error a bad source raises, the one bad-input policy, and the one
walk over a user's folder.

Each family reads its own sources (``repflow.families.<name>.sources`` or similar); this module holds only
what two or more of them use, so a family never imports another family's reader to raise the same error.

The bad-input policy (docs/data.md): a row, line or file that cannot be read is skipped, counted by reason in a
:class:`SkipReport` and listed in the stage's manifest; more than ``max_skipped_share`` of them skipped (the
params key has this name in every family that has it) is a :class:`SourceError` naming the file and the first
bad rows, since a mostly unusable input is more likely a wrong mapping than a few dirty rows. A bad cell of an
optional feature becomes missing instead.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

__all__ = ["SourceError", "SkipReport", "FolderFiles", "folder_files", "MAX_SKIPPED_SHARE", "SHOWN_BAD"]

MAX_SKIPPED_SHARE = 0.1
"""Default of every family's ``max_skipped_share``: more than 10 % of an input skipped is an error."""
SHOWN_BAD = 5
"""How many bad rows (with their reasons) an error or a report shows."""


class SourceError(ValueError):
    """A source that is missing, empty or not in the format its type promises; the message names the file
    or key and what is allowed (the CLI prints it as one line and exits 2)."""


@dataclass
class SkipReport:
    """What reading one input skipped: ``seen`` items (``unit``: lines, rows, files), ``kept``, ``skipped`` by
    reason, and the first bad items as (1-based number or name, reason)."""

    path: str
    unit: str = "lines"
    seen: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_bad: list[tuple[Any, str]] = field(default_factory=list)

    @property
    def skipped_share(self) -> float:
        return sum(self.skipped.values()) / self.seen if self.seen else 0.0

    def add_bad(self, where: Any, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.first_bad) < SHOWN_BAD:
            self.first_bad.append((where, reason))

    def describe(self) -> str:
        one = self.unit.removesuffix("s")
        reasons = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
        bad = "; ".join(f"{one} {n}: {r}" for n, r in self.first_bad)
        return (f"{self.path}: {sum(self.skipped.values())} of {self.seen} {self.unit} skipped "
                f"({reasons or 'none'})" + (f"; first bad {self.unit}: {bad}" if bad else ""))

    def check(self, max_skipped_share: float, key: str) -> None:
        """:class:`SourceError` when more than ``max_skipped_share`` of the items were skipped or none was kept;
        ``key`` names the params key that sets the share."""
        if self.seen and (self.kept == 0 or self.skipped_share > max_skipped_share):
            raise SourceError(f"{self.describe()}; more than {key} = {max_skipped_share:g} of the {self.unit} "
                              f"(or all) are bad: check the file and its column mapping")

    def manifest(self) -> dict[str, Any]:
        """The report as a manifest entry: counts by reason and the first bad items."""
        return {"path": self.path, "unit": self.unit, "seen": self.seen, "kept": self.kept,
                "skipped": dict(self.skipped), "first_bad": [[str(n), r] for n, r in self.first_bad]}


@dataclass
class FolderFiles:
    """The files a folder walk found (as reached under ``root``, sorted, each real file once) and what it
    skipped, as ``{"file", "reason"}`` (the manifest lists them)."""

    root: Path
    files: list[Path]
    skipped: list[dict[str, str]]


def folder_files(root: str | Path, suffixes: Iterable[str], *, recursive: bool = True) -> FolderFiles:
    """Every file under ``root`` whose lower-cased suffix is in ``suffixes`` (sub-folders too when
    ``recursive``; folders whose name starts with ``.`` are not entered).

    Symbolic links are followed while they stay inside ``root``. Skipped and listed: a link that leaves the
    folder, a broken link, a folder link that loops back to a folder it sits in, a folder reached a second
    time through a link, and a file reached a second time (read once, at its real place where the real place
    is inside; links come after real entries). A user's folder holding a link to itself therefore reads each
    file once, with no extra class."""
    root = Path(root)
    real_root = root.resolve()
    suffixes = {s.lower() for s in suffixes}
    files: list[Path] = []
    skipped: list[dict[str, str]] = []
    seen_files: dict[Path, Path] = {}
    seen_dirs: dict[Path, Path] = {real_root: root}

    def visit(folder: Path, parents: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: (e.is_symlink(), e.name))  # real ones reached first
        except OSError as exc:
            skipped.append({"file": str(folder), "reason": f"cannot list it ({exc.strerror})"})
            return
        for entry in entries:
            path = folder / entry.name
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError):
                skipped.append({"file": str(path), "reason": "broken or looping symbolic link"})
                continue
            if entry.is_symlink() and not real.is_relative_to(real_root):
                skipped.append({"file": str(path), "reason": f"symbolic link leaves the folder (to {real})"})
                continue
            if entry.is_dir():
                if not recursive or entry.name.startswith("."):
                    continue
                if real in parents:
                    skipped.append({"file": str(path), "reason": f"symbolic link loops back to {seen_dirs[real]}"})
                elif real in seen_dirs:
                    skipped.append({"file": str(path), "reason": f"same folder as {seen_dirs[real]} (read once)"})
                else:
                    seen_dirs[real] = path
                    visit(path, parents | {real})
            elif entry.is_file() and path.suffix.lower() in suffixes:
                if real in seen_files:
                    skipped.append({"file": str(path), "reason": f"same file as {seen_files[real]} (read once)"})
                else:
                    seen_files[real] = path
                    files.append(path)

    visit(root, frozenset({real_root}))
    return FolderFiles(root, sorted(files), skipped)
