"""The single schema of ``params.yaml``, shared by Prefect and DVC: ``seed`` and ``device``, plus the
typed sections each family declares, and how a mapping is checked against it.

This module knows no family: the registry hands each family's sections over as a :class:`ParamsPart` and
:func:`params_model` assembles them, so the import runs one way (``repflow.family`` imports this module, never
the reverse); :func:`repflow.family.load_params` is the entry point that reads ``params.yaml`` against the
registered families. A wrong key, type or value is reported once, before any work starts, naming the key,
the value given and what is allowed.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

__all__ = ["Params", "Section", "ParamsError", "ParamsPart", "params_model", "validate_params", "read_params",
           "apply_overrides", "section_digest", "epsilon_list"]


class _Yaml12Loader(yaml.SafeLoader):
    """YAML as DVC writes ``params.yaml`` (ruamel, YAML 1.2): only true / false are booleans. PyYAML's YAML 1.1
    would turn a word list's ``yes``, ``no``, ``on`` and ``off`` into booleans after ``dvc exp run -S`` rewrites
    the file without quotes."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def read_yaml(text: str) -> Any:
    """Parse params text (a file, or a ``-P`` value) the YAML 1.2 way DVC writes it."""
    return yaml.load(text, Loader=_Yaml12Loader)


class ParamsError(ValueError):
    """A params file or override that does not fit the schema (one line per problem)."""


class Section(BaseModel):
    """Base of every params section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def distinct_names(v: list[str], allowed, what: str) -> list[str]:
    """A params list of names, each one of ``allowed`` (a registry, dict or tuple), at least one; repeats
    dropped, order kept. The error lists what is allowed."""
    unknown = [name for name in v if name not in allowed]
    if unknown or not v:
        raise ValueError(f"{what} {v}: each must be one of {list(allowed)}, at least one")
    return list(dict.fromkeys(v))


def check_held_out(val_key: str, val: float, test: float, units: str) -> None:
    """A prep section's held-out shares (validation ``val`` under ``val_key``, test ``test``) must leave at
    least 10% of the ``units`` (speakers, words, interactions) for training."""
    if val + test >= 0.9:
        raise ValueError(f"{val_key} + test_fraction = {val + test:g} leaves under 10% of the {units} for training")


def epsilon_list(v: list[float]) -> list[float]:
    """Attack radii in pixel units of [0, 1] images: at least one, each in (0, 1]; sorted, deduplicated."""
    if not v:
        raise ValueError("needs at least one epsilon")
    bad = [e for e in v if not 0.0 < e <= 1.0]
    if bad:
        raise ValueError(f"every epsilon must be in (0, 1] (inputs are in [0, 1]); got {bad}")
    return sorted(set(v))


class Params(Section):
    """The keys every family shares. The full schema (:func:`params_model`) adds each family's sections: the
    default family's at the top level, every other family's under its name, and runs their ``checks``."""

    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checks: ClassVar[tuple[Callable[[Any], None], ...]] = ()
    """The families' rules across sections, in :func:`params_model`'s order; each raises ValueError."""

    @model_validator(mode="after")
    def _family_rules(self) -> "Params":
        for check in self.checks:
            check(self)
        return self


@dataclass(frozen=True)
class ParamsPart:
    """What one family adds to the schema: its ``sections`` (name, section model) under ``root`` (None: at the
    top level), and ``check``, its rule across them. Hashable, so the assembled schema is cached by its parts."""

    family: str
    root: str | None
    sections: tuple[tuple[str, type[Section]], ...]
    check: Callable[[Any], None] | None = None


@functools.lru_cache(maxsize=1)
def params_model(parts: tuple[ParamsPart, ...] = ()) -> type[Params]:
    """The whole ``params.yaml`` schema assembled from ``parts`` (:func:`repflow.family.params_schema` hands over
    the registered families'). Cached; ``params_model.cache_clear()`` after a section model is rebuilt in place."""
    fields: dict[str, Any] = {}
    with warnings.catch_warnings():  # "register" is also ABCMeta.register; instances still read the field
        warnings.filterwarnings("ignore", message='Field name "register"')
        for part in parts:
            sections = {name: (model, model()) for name, model in part.sections}
            if part.root is None:
                fields.update(sections)
            else:
                nested = create_model(f"{part.family.title()}Params", __base__=Section, **sections)
                fields[part.root] = (nested, nested())
        model = create_model("Params", __base__=Params, **fields)
    model.checks = tuple(part.check for part in parts if part.check is not None)
    return model


def _describe(err: dict[str, Any], root: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        parent = root
        for part in err["loc"][:-1]:
            field = parent.model_fields.get(str(part))
            parent = field.annotation if field is not None else None
            if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
                break
        allowed = sorted(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
        return f"{key}: unknown key; allowed here: {', '.join(allowed)}"
    given = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if isinstance(given, dict):  # a rule across keys of one section (or across sections: no key)
        return f"{key}: {msg}" if key else msg
    if err["type"] == "literal_error":
        msg = msg.replace("Input should be", "allowed:")
    return f"{key} = {given!r}: {msg}"


def validate_params(root: type[Params], raw: dict[str, Any], origin: str = "params") -> Params:
    """Validate a params mapping against the schema ``root``; raise :class:`ParamsError` listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return root.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, root) for e in exc.errors()]
        raise ParamsError(f"{origin}: " + ("\n  " if len(lines) > 1 else "") + "\n  ".join(lines)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to a raw params mapping."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ParamsError(f"override {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise ParamsError(f"override {item!r}: empty key part in {key!r}")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamsError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = read_yaml(text) if text.strip() else None
    return out


def read_params(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw mapping of a params file with ``overrides`` applied (validate it with :func:`validate_params`)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return apply_overrides(raw, overrides or [])


def section_digest(section: BaseModel | dict[str, Any] | Any) -> str:
    """sha256 of a params section's canonical JSON; the stage cache keys are built from it."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
