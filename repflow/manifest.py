"""Stage outputs: written beside the target, described by ``manifest.json``, renamed into place.

A stage writes everything into a temporary sibling folder; :func:`staged_output` hashes every file,
writes the manifest and only then moves the folder to its final name. Readers call
:func:`read_manifest`, which re-hashes the files, so a half-written, truncated, edited or missing
file is an error that names it, never data silently used.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

__all__ = ["MANIFEST", "OutputError", "sweep_temporary", "staged_output",
           "read_manifest", "file_sha256", "manifest_digest",
           "atomic_write_text"]

MANIFEST = "manifest.json"
log = logging.getLogger("repflow.manifest")
SCHEMA = "repflow.output/1"


class OutputError(RuntimeError):
    """A stage output that is missing, incomplete or does not match its manifest."""


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


TEMPORARY_NAME = re.compile(r"^\..+\.(tmp|old)-[0-9a-f]{8}$|^\..+\.tmp$")
"""Names of what repflow writes before a rename (``.<name>.tmp-<8 hex>``, ``.<name>.old-<8 hex>``, a
checkpoint's ``.<name>.tmp``, a video's ``.<stem>.<random>.<suffix>.tmp``): left behind only by a killed
process."""
SWEEP_SKIPS = {"mlruns", "node_modules", "__pycache__"}


def sweep_temporary(root: str | Path) -> list[Path]:
    """Remove what killed runs left under the work folder ``root``: every file or folder named like a
    temporary (:data:`TEMPORARY_NAME`). Call it only while holding the workspace lock (no live run writes
    there then). Other hidden folders are not entered (``.git``, ``.venv``, ``.dvc``), except a stage's
    resumable ``.<out>.progress``. Returns what was removed."""
    removed = []
    for folder, dirs, files in os.walk(root):
        for name in list(dirs):
            if TEMPORARY_NAME.match(name):
                shutil.rmtree(Path(folder) / name, ignore_errors=True)
                removed.append(Path(folder) / name)
            if name in SWEEP_SKIPS or TEMPORARY_NAME.match(name) or (name.startswith(".")
                                                                     and not name.endswith(".progress")):
                dirs.remove(name)
        for name in files:
            if TEMPORARY_NAME.match(name):
                with contextlib.suppress(FileNotFoundError):
                    (Path(folder) / name).unlink()
                removed.append(Path(folder) / name)
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file through a temporary sibling so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _hash_tree(root: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(root).as_posix()] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
    return files


def manifest_digest(manifest: dict[str, Any]) -> str:
    """Content digest of an output: changes when any file or the stage key changes."""
    basis = {"files": {k: v["sha256"] for k, v in manifest["files"].items()}, "stage_key": manifest.get("stage_key")}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def staged_output(final: str | Path, *, stage: str, meta: dict[str, Any] | None = None,
                  stage_key: str | None = None, lineage: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield a temporary folder to write into; on success, manifest it and move it to ``final``.

    ``meta`` may be filled in by the caller while writing (it is read at exit). On an exception
    the temporary folder is removed and an existing ``final`` is left untouched.
    """
    final = Path(final).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    # leftovers of a run that was killed while writing this output (one writer per output: the
    # workspace lock or DVC's lock holds the folder)
    for stale in [*final.parent.glob(f".{final.name}.tmp-*"), *final.parent.glob(f".{final.name}.old-*")]:
        log.warning("%s: removing %s left by an interrupted run", stage, stale)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    meta = {} if meta is None else meta
    try:
        yield tmp
        manifest = {
            "schema": SCHEMA,
            "stage": stage,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "stage_key": stage_key,
            "lineage": lineage or {},
            "meta": meta,
            "files": _hash_tree(tmp),
        }
        manifest["digest"] = manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(folder: str | Path, *, verify: bool = True, stage: str | None = None) -> dict[str, Any]:
    """Load ``folder/manifest.json`` and (by default) check every listed file's size and sha256."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not folder.is_dir():
        raise OutputError(f"{folder}: output folder does not exist (run the stage that makes it first)")
    if not mpath.is_file():
        raise OutputError(f"{mpath}: missing; the stage did not finish or {folder} is not a repflow output")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise OutputError(f"{mpath}: not valid JSON ({exc})") from None
    if manifest.get("schema") != SCHEMA or not isinstance(manifest.get("files"), dict):
        raise OutputError(f"{mpath}: schema {manifest.get('schema')!r}, expected {SCHEMA!r}")
    if stage is not None and manifest.get("stage") != stage:
        raise OutputError(f"{mpath}: made by stage {manifest.get('stage')!r}, expected {stage!r}")
    if verify:
        for rel, info in manifest["files"].items():
            p = folder / rel
            if ".." in Path(rel).parts:
                raise OutputError(f"{mpath}: file entry {rel!r} escapes the folder")
            if not p.is_file():
                raise OutputError(f"{p}: listed in {mpath} but missing")
            if p.stat().st_size != info["bytes"]:
                raise OutputError(f"{p}: {p.stat().st_size} bytes, manifest says {info['bytes']} (truncated or edited)")
            if file_sha256(p) != info["sha256"]:
                raise OutputError(f"{p}: sha256 does not match {mpath} (file was edited or corrupted)")
        if manifest_digest(manifest) != manifest.get("digest"):
            raise OutputError(f"{mpath}: digest does not match its own contents (manifest was edited)")
    return manifest
