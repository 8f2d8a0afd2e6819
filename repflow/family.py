"""Families and their stages, declared once.

A **family** is one method area with its own flow (image, audio, ...): its params sections, its stages,
its models and algorithms, in its own files. Each stage is declared once as a :class:`Stage`; the CLI's
choices, the Prefect tasks, output folders, MLflow run names, per-stage code versions and ``dvc.yaml``
all derive from these declarations.

Where families come from: every sub-package of ``repflow.families`` that defines ``FAMILY``, and every
entry point in the group ``repflow.families`` (a family shipped in another distribution registers with
one line in its ``pyproject.toml``). Both are imported by name when the registry is first read, so this
module imports no family (the library layer never imports the layers above it).

The params schema is assembled here, where the registry is: each family hands its sections to
:func:`repflow.config.params_model` (:meth:`Family.params_part`), so config never imports back into the registry.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import pkgutil
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from repflow.config import Params, ParamsPart, params_model, read_params, validate_params

__all__ = ["Stage", "Family", "CommandContext", "ModelSpec", "Method", "methods_of", "ListedMethod", "FamilyError",
           "positive_int", "int_between", "float_between", "port_number",
           "register_family", "families", "get_family", "resolve_stage", "registered_models", "method_listing",
           "params_schema", "parse_params", "load_params", "code_files", "code_version", "DEFAULT_FAMILY",
           "PARADIGMS", "params_markdown", "stages_markdown", "reference_markdown"]

DEFAULT_FAMILY = "image"
ENTRY_POINT_GROUP = "repflow.families"
PARADIGMS = ("generative", "contrastive", "generative-contrastive")
"""The SSL survey's taxonomy (Liu et al.): how a method's objective is built."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class FamilyError(ValueError):
    """A family or stage declaration that does not fit, or a name that names nothing."""


@dataclass(frozen=True)
class ModelSpec:
    """A model a stage registers in MLflow. ``metric`` (with ``direction``) gates ``alias``: the alias moves
    to a new version only when it scores better than the version holding it. ``name`` and ``metric``
    may be overridden by params (the register stage reads ``register.model_name``)."""

    name: str
    metric: str | None = None
    direction: Literal["max", "min"] = "max"
    alias: str | None = None


@dataclass(frozen=True)
class Method:
    """A registered method as ``repflow families`` lists it: where it plugs in and what kind it is.

    ``stage`` is the name of the family's stage that runs the method (``"train"``, listed as ``image.train``);
    the model the method ends up in is not declared here but derived from the stages
    (:func:`registered_models`), so it cannot drift from what the register stages do."""

    name: str
    kind: str  # "train", "select", "distill", "attack", ...
    paradigm: str | None  # one of PARADIGMS, or None for methods that are not self-supervised objectives
    paper: str
    summary: str = ""
    stage: str = field(kw_only=True)


def methods_of(registry: Any, kind: str, *, stage: str) -> list[Method]:
    """One :class:`Method` per entry of ``registry`` (name → entry carrying ``paradigm``, ``paper`` and
    ``summary``, as :class:`repflow.registry.Listed` does), in registration order: how a family declares the
    methods a registry holds, so that a newly registered one is listed without touching the declaration."""
    return [Method(name, kind, entry.paradigm, entry.paper, entry.summary, stage=stage)
            for name, entry in registry.items()]


@dataclass(frozen=True)
class Stage:
    """One stage, declared once.

    ``module`` holds ``run(ctx) -> StageSummary`` (see :mod:`repflow.stage`); it and the project modules it
    imports are the stage's code (its code version and its ``dvc.yaml`` deps). ``params`` are dotted keys
    of ``params.yaml`` the stage reads (``"seed"``, ``"train"``, ``"audio.train"``). ``inputs`` maps the
    names the stage reads its inputs by to upstream stages of the same family; ``uses`` narrows them to
    the ones the params actually read and may add folders named in params (default: all declared).
    """

    name: str
    module: str
    out: str
    params: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)
    uses: Callable[[Any, dict[str, Path]], dict[str, Path]] | None = None
    registers: tuple[ModelSpec, ...] = ()
    summary: str = ""
    family: str = ""
    on_demand: bool = False

    @property
    def qualname(self) -> str:
        """``family.stage``: the name in the CLI, Prefect, MLflow, manifests and ``dvc.yaml``."""
        return f"{self.family}.{self.name}"

    @property
    def dvc_name(self) -> str:
        """``family-stage``: DVC allows no dots in stage names."""
        return f"{self.family}-{self.name}"

    def module_object(self) -> Any:
        return importlib.import_module(self.module)

    def body(self) -> Callable[..., Any]:
        return self.module_object().run

    def read_from(self, params: Any = None) -> dict[str, str]:
        """Input name → upstream stage, narrowed by ``uses`` under ``params`` (all declared without params)."""
        if params is None or self.uses is None:
            return dict(self.inputs)
        kept = self.used_inputs(params, {name: Path(upstream) for name, upstream in self.inputs.items()})
        return {name: upstream for name, upstream in self.inputs.items() if name in kept}

    def used_inputs(self, params: Any, available: dict[str, Path]) -> dict[str, Path]:
        """The input folders this run reads: its key and lineage cover exactly these."""
        return dict(available) if self.uses is None else dict(self.uses(params, dict(available)))


@dataclass(frozen=True)
class CommandContext:
    """What the ``repflow`` CLI lends a family's commands, so that a family never imports the CLI above it.

    ``common(parser)`` adds the options every workspace command takes (``--params``, ``-P``, ``--workdir``);
    ``run(args)`` is ``repflow run``: a family command that runs stages sets ``args.family``, ``args.stage``
    (stage names), ``args.P`` (overrides) and ``args.runner`` and returns ``cli.run(args)``.
    """

    common: Callable[[Any], None]
    run: Callable[[Any], int]


@dataclass(frozen=True)
class Family:
    """A method area with its own flow. ``params`` maps section names to pydantic models; a family whose
    ``params_root`` is None keeps its sections at the top of ``params.yaml`` (the default family), every
    other family nests them under its name (``audio.train``). ``check`` validates across sections.
    ``flow`` is ``"module:function"`` of its Prefect flow; ``methods`` lists what ``repflow families`` shows.
    ``commands``, optional, is ``"module:function"`` of ``add(subparsers, cli)``, which adds the family's own
    ``repflow`` sub-commands (each sets ``func``; the user-error types ``repflow`` already reports in one line, such as
    ``SourceError`` and ``RegistryError``, are reported the same way for them); ``cli`` is a :class:`CommandContext`.
    ``algorithms`` names the family's modules (relative to its package: ``"models"``, ``"advneg"``) that hold its
    models and algorithms: they must import with torch alone, as on a GPU box without the runtime (a test
    imports each family's list so)."""

    name: str
    summary: str
    stages: tuple[Stage, ...]
    params: dict[str, Any]
    flow: str
    params_root: str | None = ""
    check: Callable[[Any], None] | None = None
    methods: Callable[[], Iterable[Method]] | None = None
    commands: str | None = None
    algorithms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise FamilyError(f"family name {self.name!r}: use lower-case letters, digits and '_'")
        if self.params_root == "":
            object.__setattr__(self, "params_root", self.name)
        stages = tuple(replace(s, family=self.name) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        names = [s.name for s in stages]
        for s in stages:
            if not _NAME.match(s.name):
                raise FamilyError(f"{self.name}: stage name {s.name!r}: use lower-case letters, digits and '_'")
            if names.count(s.name) > 1:
                raise FamilyError(f"{self.name}: stage {s.name!r} is declared twice")
            for input_name, upstream in s.inputs.items():
                if upstream not in names:
                    raise FamilyError(f"{self.name}.{s.name}: input {input_name!r} names stage {upstream!r}, which "
                                      f"family {self.name!r} does not declare; its stages: {', '.join(names)}")
                if names.index(upstream) >= names.index(s.name):
                    raise FamilyError(f"{self.name}.{s.name}: input stage {upstream!r} must be declared before it")
            prefix = "" if self.params_root is None else f"{self.params_root}."
            for key in s.params:
                top = key.split(".")[0]
                if top not in ("seed", "device") and not (key.startswith(prefix) and
                                                          key[len(prefix):].split(".")[0] in self.params):
                    raise FamilyError(f"{self.name}.{s.name}: params key {key!r} is not one of this family's "
                                      f"sections ({', '.join(prefix + p for p in self.params)}) or seed/device")

    def stage(self, name: str) -> Stage:
        """The stage called ``name``, bare (``train``) or qualified as ``repflow stage`` names it
        (``image.train``)."""
        for s in self.stages:
            if name in (s.name, s.qualname):
                return s
        raise FamilyError(f"family {self.name!r} has no stage {name!r}; its stages: "
                          f"{', '.join(s.name for s in self.stages)}")

    def stages_to_run(self, targets: Iterable[str] | None = None, params: Any = None) -> list[Stage]:
        """The stages a flow run executes, in declaration order: ``targets`` and every stage they read from,
        transitively; without targets, every stage that is not ``on_demand`` (and what it reads from). With
        ``params``, only the inputs a stage's ``uses`` keeps are followed (compare without GenRep does not
        need the generate stage)."""
        wanted = [self.stage(t).name for t in targets] if targets else [s.name for s in self.stages
                                                                      if not s.on_demand]
        needed: set[str] = set()
        while wanted:
            name = wanted.pop()
            if name not in needed:
                needed.add(name)
                wanted.extend(self.stage(name).read_from(params).values())
        return [s for s in self.stages if s.name in needed]

    def params_part(self) -> ParamsPart:
        """This family's share of the params schema, as :func:`repflow.config.params_model` assembles it."""
        return ParamsPart(self.name, self.params_root, tuple(self.params.items()), self.check)

    def flow_function(self) -> Callable[..., Any]:
        module, _, attr = self.flow.partition(":")
        return getattr(importlib.import_module(module), attr)

    def add_commands(self, subparsers: Any, cli: CommandContext) -> None:
        """Add the family's own sub-commands to the ``repflow`` parser (none unless it declares ``commands``)."""
        if self.commands:
            module, _, attr = self.commands.partition(":")
            getattr(importlib.import_module(module), attr)(subparsers, cli)

    def listed_methods(self) -> list[Method]:
        """The family's methods as declared. ``methods`` is read lazily (it imports the algorithms), so each
        method's stage and paradigm are checked here, where they are first read."""
        listed = list(self.methods()) if self.methods else []
        names = [s.name for s in self.stages]
        for m in listed:
            if m.stage not in names:
                raise FamilyError(f"family {self.name!r}: method {m.name!r} names stage {m.stage!r}, which the family "
                                  f"does not declare; its stages: {', '.join(names)}")
            if m.paradigm is not None and m.paradigm not in PARADIGMS:
                raise FamilyError(f"family {self.name!r}: method {m.name!r} has paradigm {m.paradigm!r}; allowed: "
                                  f"{', '.join(PARADIGMS)} or None")
        return listed


@dataclass(frozen=True)
class ListedMethod:
    """One row of ``repflow families``: a method with its family, the qualified name of the stage that runs it
    and the model names it ends up in (:func:`registered_models`; empty when no stage registers it)."""

    family: str
    method: Method
    stage: str
    models: tuple[str, ...]


def registered_models(family: Family, stage_name: str) -> tuple[str, ...]:
    """The MLflow model names a stage's work ends up in: the stage's own :class:`ModelSpec` names if it
    registers any, else those of the first stage downstream of it (reached through ``Stage.inputs``,
    transitively; "first" in declaration order) that registers one; ``()`` when none does. So
    ``image.train`` gives ``("repflow-encoder",)`` through ``image.register``, which reads its encoder."""
    stage = family.stage(stage_name)
    if stage.registers:
        return tuple(m.name for m in stage.registers)
    reached = {stage.name}
    for s in family.stages:  # inputs are declared before their readers: one pass closes the set downstream
        if reached.intersection(s.inputs.values()):
            reached.add(s.name)
            if s.registers:
                return tuple(m.name for m in s.registers)
    return ()


def method_listing(paradigm: str | None = None) -> list[ListedMethod]:
    """Every registered family's methods (families in :func:`families` order, methods as each declares them),
    only those of ``paradigm`` (one of :data:`PARADIGMS`) when it is given."""
    if paradigm is not None and paradigm not in PARADIGMS:
        raise FamilyError(f"unknown SSL paradigm {paradigm!r}; paradigms: {', '.join(PARADIGMS)}")
    return [ListedMethod(fam.name, m, fam.stage(m.stage).qualname, registered_models(fam, m.stage))
            for fam in families() for m in fam.listed_methods() if paradigm is None or m.paradigm == paradigm]


# --- reference pages (docs/families/<name>.md) -------------------------------------------------------

def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type_text(annotation: Any) -> str:
    """A params field's type as a reader of ``params.yaml`` sees it: ``int``, ``one of `a`, `b```, ``list of str``."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_text(a) for a in args)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {_type_text(args[0])} → {_type_text(args[1])}" if args else "mapping"
    if isinstance(annotation, type):
        return "section" if hasattr(annotation, "model_fields") else annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds_text(metadata: Iterable[Any]) -> str:
    """Pydantic's ``ge``/``gt``/``le``/``lt`` and length limits as `` ≥ 1, ≤ 100`` (empty when there are none)."""
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    found = [f"{sign} {getattr(m, key)}" for m in metadata for key, sign in signs.items()
             if getattr(m, key, None) is not None]
    return f", {', '.join(found)}" if found else ""


def _default_text(field_info: Any) -> str:
    import json

    if field_info.is_required():
        return "required"
    def short(value: Any) -> Any:  # 6 significant digits: 8/255 reads 0.0313725, not 0.03137254901960784
        if isinstance(value, float):
            return float(f"{value:.6g}")
        return [short(v) for v in value] if isinstance(value, (list, tuple)) else value

    value = field_info.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):
        return "(below)"
    text = json.dumps(short(value), ensure_ascii=False, default=str)
    return f"`{text if len(text) <= 80 else text[:77] + '…'}`"


def params_markdown(family: Family) -> str:
    """The family's params sections as markdown: per section (a nested section gets its own), its docstring's
    first paragraph and one row per key: the dotted key in ``params.yaml``, its type with the allowed range,
    the default and the field's description. Read from the pydantic models, so it cannot drift from them."""
    prefix = "" if family.params_root is None else f"{family.params_root}."
    blocks: list[str] = []

    def section(key: str, model: Any) -> None:
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        rows = [f"### `{key}`", ""] + ([_cell(doc), ""] if doc else [])
        rows += ["| key | type | default | description |", "|---|---|---|---|"]
        nested: list[tuple[str, Any]] = []
        for name, info in model.model_fields.items():
            names = next((list(m.names) for m in info.metadata if hasattr(m, "names")), None)  # registry.literal_of
            kind = "one of " + ", ".join(f"`{n}`" for n in names) if names else _type_text(info.annotation)
            if kind == "section":
                nested.append((f"{key}.{name}", info.annotation))
            rows.append(f"| `{key}.{name}` | {_cell(kind + _bounds_text(info.metadata))} | "
                        f"{_cell(_default_text(info))} | {_cell(info.description or '')} |")
        blocks.append("\n".join(rows) + "\n")
        for sub_key, sub_model in nested:
            section(sub_key, sub_model)

    for name, model in family.params.items():
        section(prefix + name, model)
    return "\n".join(blocks)


def stages_markdown(family: Family) -> str:
    """The family's stages as declared: one row each with what it reads, where it writes, the params it keys
    on and the models it registers (``on demand`` for a stage that only runs when asked for)."""
    rows = ["| stage | reads | output | params | registers | summary |", "|---|---|---|---|---|---|"]
    for s in family.stages:
        reads = ", ".join(f"{name} ← `{family.name}.{up}`" for name, up in s.inputs.items()) or "-"
        models = ", ".join(f"`{m.name}`" + (f" (alias `{m.alias}` by {m.metric}, {m.direction})" if m.alias else "")
                           for m in s.registers) or "-"
        summary = ("on demand: " if s.on_demand and not s.summary.startswith("on demand") else "") + s.summary
        rows.append(f"| `{s.qualname}` | {_cell(reads)} | `{s.out}/` | {_cell(', '.join(s.params))} | {_cell(models)}"
                    f" | {_cell(summary)} |")
    return "\n".join(rows) + "\n"


def reference_markdown(family: Family) -> str:
    """The generated part of ``docs/families/<name>.md``: the declared stages and every params key."""
    return (f"## Declared stages\n\nFrom the family's declaration (`repflow dvc-yaml`, the CLI and the flow read the "
            f"same).\n\n{stages_markdown(family)}\n## Params\n\nEvery key of `params.yaml` the family reads, from "
            f"its pydantic sections; `-P key=value` overrides one.\n\n{params_markdown(family)}")


_REGISTRY: dict[str, Family] = {}
_discovered = False


def int_between(low: int, high: int | None = None):
    """An argparse ``type`` for a command's whole-number option (ports, ``--crf``, ``--tile``): ``low`` <= value
    (<= ``high`` when given), else argparse's usage error naming the value and the range, before any work."""
    import argparse

    allowed = f"a whole number in {low}..{high}" if high is not None else f"a whole number >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {allowed}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {allowed}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def float_between(low: float, high: float):
    """An argparse ``type`` for a command's real-valued option (``--strength``): a finite number in low..high,
    else argparse's usage error naming the value and the range, before any work."""
    import argparse
    import math

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r}: must be a number in {low:g}..{high:g}")
        return value

    parse.__name__ = "float"
    return parse


positive_int = int_between(1)
"""An argparse ``type`` for a family command's counts (``--top``, ``--beam``): a whole number >= 1."""
port_number = int_between(1, 65535)
"""An argparse ``type`` for a TCP port."""


def register_family(family: Family) -> Family:
    """Add a family; its output folders and params names must not clash with a registered one."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise FamilyError(f"family {family.name!r} is registered twice")
    outs = {s.out: s.qualname for f in _REGISTRY.values() if f.name != family.name for s in f.stages}
    seen: dict[str, str] = {}
    for s in family.stages:
        clash = outs.get(s.out) or seen.get(s.out)
        if clash:
            raise FamilyError(f"stages {clash} and {s.qualname} both claim the output folder {s.out!r}")
        seen[s.out] = s.qualname
    top = {f.params_root or "" for f in _REGISTRY.values() if f.name != family.name}
    top |= {name for f in _REGISTRY.values() if f.name != family.name and f.params_root is None for name in f.params}
    mine = set(family.params) if family.params_root is None else {family.params_root}
    if clash := (mine & (top | {"seed", "device"})):
        raise FamilyError(f"family {family.name!r}: params name(s) {sorted(clash)} are taken by another family")
    _REGISTRY[family.name] = family
    return family


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    found: list[Family] = []
    spec = importlib.util.find_spec("repflow.families")
    if spec is not None and spec.submodule_search_locations:
        for info in sorted(pkgutil.iter_modules(spec.submodule_search_locations), key=lambda i: i.name):
            module = importlib.import_module(f"repflow.families.{info.name}")
            if hasattr(module, "FAMILY"):
                found.append(module.FAMILY)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.append(ep.load())
    for fam in found:
        if fam.name not in _REGISTRY:
            register_family(fam)


def families() -> list[Family]:
    """Every registered family, the default first."""
    _discover()
    return sorted(_REGISTRY.values(), key=lambda f: (f.name != DEFAULT_FAMILY, f.name))


def get_family(name: str | None) -> Family:
    _discover()
    name = name or DEFAULT_FAMILY
    if name not in _REGISTRY:
        raise FamilyError(f"unknown family {name!r}; families: {', '.join(f.name for f in families())}")
    return _REGISTRY[name]


def params_schema() -> type[Params]:
    """The whole ``params.yaml`` schema: every registered family's sections (:func:`families` order) and rules."""
    return params_model(tuple(fam.params_part() for fam in families()))


def parse_params(raw: dict[str, Any], origin: str = "params") -> Params:
    """Validate a params mapping against :func:`params_schema`; :class:`repflow.config.ParamsError` lists every
    problem."""
    return validate_params(params_schema(), raw, origin)


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read, override (``section.key=value``, values as YAML) and validate a params file."""
    return parse_params(read_params(path, overrides), origin=str(Path(path)))


def resolve_stage(ref: str) -> Stage:
    """``family.stage``, or a bare stage name of the default family."""
    family, _, name = ref.rpartition(".")
    fam = get_family(family or None)
    try:
        return fam.stage(name)
    except FamilyError:
        every = [s.qualname for f in families() for s in f.stages]
        raise FamilyError(f"unknown stage {ref!r}; stages: {', '.join(every)}") from None


# --- code versions --------------------------------------------------------------------------------

def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of the modules ``path`` (module ``module``) imports anywhere in its body."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # ``from pkg import module``
    return found


@functools.lru_cache(maxsize=None)
def _closure(module: str) -> tuple[tuple[str, Path], ...]:
    """(module name, file) of a stage module, the runner, and every module of their distributions they
    import, sorted by name: what :func:`code_files` lists and :func:`code_version` hashes."""
    roots = (module.split(".")[0], "repflow")
    seen: dict[str, Path] = {}
    todo = [module, "repflow.stage"]  # the runner executes every stage
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in roots:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(_imports(path, name))
    return tuple(sorted(seen.items()))


def code_files(module: str) -> tuple[Path, ...]:
    """The source files that decide what a stage computes: its module, the stage runner, and the project
    modules they import, transitively, including imports inside functions. Not the CLI, not other families,
    not the family's declaration (what it declares, params and inputs, is in the key already)."""
    return tuple(path for _, path in _closure(module))


@functools.lru_cache(maxsize=None)
def code_version(module: str) -> str:
    """sha256 (first 16 hex) over the names and contents of :func:`code_files`."""
    h = hashlib.sha256()
    for name, path in _closure(module):
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
