"""Both ends of the model registry, written once for every family.

A register stage: :class:`Registration` reads the stage's params section (``model_name``, ``alias``,
``criterion``, whose defaults come from the declaration's :class:`~repflow.family.ModelSpec`), the evaluation
the alias is gated on, and registers what the family exports (pt2 + the safetensors checkpoint beside it under
``checkpoint/``) through :func:`repflow.tracking.register_champion`: the alias moves only when the score beats
its holder's under the same protocol. A family's register stage keeps only what is its own: which files are
the checkpoint, what the pt2 export wraps, and its extra tags.

A command: :func:`registered_checkpoint` turns ``NAME@ALIAS`` / ``NAME/VERSION`` / ``NAME`` (or a local
folder) into a checkpoint folder that holds only safetensors, JSON and parquet files, each safetensors file
readable, before anything is loaded: a command rebuilds its model from safetensors + JSON config, and a
registry entry that carries a pickle is refused, never unpickled.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from repflow import tracking
from repflow.family import ModelSpec, get_family
from repflow.manifest import atomic_write_text
from repflow.stage import StageContext, StageSummary

__all__ = ["Registration", "RegisteredCheckpoint", "registered_checkpoint", "CHECKPOINT_SUFFIXES"]

CHECKPOINT_SUFFIXES = (".safetensors", ".json", ".parquet")


def _section(params: Any, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), params)


class Registration:
    """One register stage run of ``ctx``: its params section (the stage's first declared section), the
    family's params (logged as the ``repflow.params`` tag) and the declaration's first :class:`ModelSpec`."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self.section = _section(ctx.params, ctx.stage.params[0])
        root = get_family(ctx.stage.family).params_root
        self.family_params = ctx.params if root is None else _section(ctx.params, root)
        self.spec: ModelSpec = ctx.stage.registers[0]

    def evaluation(self, folder: Path | None = None, stage: str | None = None,
                   criterion: str | None = None) -> tuple[dict[str, Any], float, dict[str, Any]]:
        """(metrics, score, protocol) of the verified evaluation the alias is gated on: by default the
        ``evaluation`` input, made by the family's ``evaluate`` stage, scored by ``section.criterion``."""
        return tracking.read_evaluation(folder or self.ctx.inputs["evaluation"],
                                        stage or f"{self.ctx.stage.family}.evaluate",
                                        criterion or self.section.criterion)

    def tags(self, metrics: dict[str, Any] | None = None, *, inputs: Iterable[str] | None = None,
             family_tag: bool = True) -> dict[str, Any]:
        """The tags every version of this family carries: ``repflow.family`` (unless ``family_tag`` is False),
        the family's params as JSON, the digests of ``inputs`` (default: every input the stage read) and
        ``metrics`` flattened as ``repflow.metric.*``."""
        lineage = self.ctx.lineage["inputs"]
        tags: dict[str, Any] = {"repflow.family": self.ctx.stage.family} if family_tag else {}
        tags["repflow.params"] = json.dumps(self.family_params.model_dump(mode="json"), sort_keys=True)
        tags.update({f"repflow.input.{name}": lineage[name] for name in (lineage if inputs is None else inputs)})
        tags.update({f"repflow.metric.{k}": v for k, v in tracking.flatten(metrics or {}).items()})
        return tags

    def register(self, module: Any, example: Any, *, score: float, protocol: dict[str, Any],
                 files: tuple[Path, ...], tags: dict[str, Any], spec: ModelSpec | None = None,
                 name: str | None = None, criterion: str | None = None,
                 identity: dict[str, Any] | None = None) -> dict[str, Any]:
        """Register ``module`` (exported as pt2 with ``example`` as its input) with ``files`` beside it as
        ``name`` (default: ``section.model_name``), gated by ``spec``'s direction (default: the declaration's
        first model) under ``section.alias``. ``identity`` (default: the evaluation's digest and the
        criterion) with ``files`` says when the registry already holds this version."""
        spec = spec or self.spec
        criterion = criterion or self.section.criterion
        identity = identity or {"evaluation": self.ctx.lineage["inputs"]["evaluation"], "criterion": criterion}
        return tracking.register_champion(
            module, name or self.section.model_name, example, score=score, criterion=criterion, protocol=protocol,
            alias=self.section.alias, files=files, identity=identity,
            code_version=self.ctx.lineage["code_version"], tags=tags, higher_is_better=spec.direction == "max")

    def champion(self, module: Any, example: Any, *, metrics: dict[str, Any], score: float,
                 protocol: dict[str, Any], files: tuple[Path, ...], tags: dict[str, Any], try_it: str,
                 show_score: bool = True, family_tag: bool = True) -> StageSummary:
        """The whole stage for a family that registers one model: :meth:`register` with :meth:`tags` plus
        ``tags``, ``register.json`` in the output, and the summary (``try_it`` ends its line)."""
        result = self.register(module, example, score=score, protocol=protocol, files=files,
                               tags={**self.tags(metrics, family_tag=family_tag), **tags})
        atomic_write_text(self.ctx.tmp / "register.json", json.dumps(result, indent=1))
        return StageSummary(metrics={"score": score, "alias_moved": result["alias_moved"],
                                     "version": result["version"], "uri": result["uri"],
                                     "model": result["model"], "alias": result["alias"]},
                            markdown=self.line(result, try_it, show_score=show_score))

    @staticmethod
    def line(result: dict[str, Any], try_it: str = "", *, show_score: bool = True) -> str:
        """One markdown line of the report: the version registered, its score and what the alias did."""
        score = f" ({result['criterion']} {result['score']:.4f})" if show_score else ""
        moved = "moved to it" if result["alias_moved"] else "kept"
        return (f"- registered `{result['uri']}`{score}; alias `{result['alias']}` {moved} ({result['alias_reason']})"
                + (f"; {try_it}" if try_it else ""))


@dataclass(frozen=True)
class RegisteredCheckpoint:
    """A verified checkpoint folder, the registry tags of its version (empty for a local folder) and the
    reference to print (``name/version`` or the folder)."""

    folder: Path
    tags: dict[str, str]
    ref: str


def verify_checkpoint(folder: Path, needs: Iterable[str], origin: str) -> None:
    """Refuse a checkpoint folder that holds anything but regular safetensors, JSON and parquet files (a pickle,
    a link, a sub-folder), lacks a file in ``needs``, or holds a safetensors file whose header does not read."""
    from safetensors import SafetensorError, safe_open

    from repflow.checkpoints import CheckpointError

    if not folder.is_dir():
        raise CheckpointError(f"{origin}: no checkpoint folder at {folder}")
    held = sorted(folder.iterdir())
    for f in held:
        if f.is_symlink() or not f.is_file() or f.suffix not in CHECKPOINT_SUFFIXES:
            raise CheckpointError(f"{origin}: checkpoint holds {f.name!r}; only {', '.join(CHECKPOINT_SUFFIXES)} "
                                  "files are loaded (no pickle), so it is refused")
    for f in held:
        if f.suffix == ".safetensors":
            try:
                with safe_open(str(f), framework="pt"):
                    pass
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"{origin}: checkpoint/{f.name} is not a readable safetensors file "
                                      f"({exc})") from None
    missing = [n for n in needs if not (folder / n).is_file()]
    if missing:
        raise CheckpointError(f"{origin}: checkpoint lacks {', '.join(missing)} (it holds "
                              f"{', '.join(f.name for f in held) or 'nothing'})")


def registered_checkpoint(ref: str, *, family: str, what: str, needs: Iterable[str]) -> RegisteredCheckpoint:
    """The verified ``checkpoint/`` folder of the registered version ``ref`` (``NAME@ALIAS``, ``NAME/VERSION``
    or ``NAME`` for the latest), which must be ``what`` registered by ``family``'s register stage (its
    ``repflow.family`` tag), and hold ``needs``; or ``ref`` itself when it is a local folder. Raises
    :class:`~repflow.tracking.RegistryError` or :class:`~repflow.checkpoints.CheckpointError` (one line)."""
    if Path(ref).is_dir():
        folder = Path(ref)
        verify_checkpoint(folder, needs, str(folder))
        return RegisteredCheckpoint(folder, {}, str(folder))
    import mlflow

    mv = tracking.get_model_version(ref)
    if mv.tags.get("repflow.family") != family:
        raise tracking.RegistryError(f"{ref} (version {mv.version}) is not {what} registered by {family}.register")
    origin = f"{ref} (version {mv.version})"
    try:
        folder = Path(mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="checkpoint"))
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise tracking.RegistryError(f"{origin}: its checkpoint cannot be read ({exc})") from None
    verify_checkpoint(folder, needs, origin)
    return RegisteredCheckpoint(folder, dict(mv.tags), f"{mv.name}/{mv.version}")
