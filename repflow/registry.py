"""Name → entry tables for everything ``params.yaml`` picks by name (in the spirit of timm's model registry).

A registry is declared next to its algorithms and filled there::

    ATTACKS = Registry("attack")

    @ATTACKS.register("fgsm")              # or ATTACKS.register("fgsm", FGSM)
    class FGSM(IterativeAttack): ...

    ATTACKS["fgsm"]                        # the entry; an unknown name raises UnknownName listing the valid ones
    "fgsm" in ATTACKS, list(ATTACKS)       # names in registration order

The params schema types its fields with :func:`literal_of` (or ``Registry.literal()``), which validates
exactly like ``Literal[...]`` of the names registered *when the schema is built*: a new method is its
own module plus one ``register`` call, and no list of names is copied anywhere. Code that caches a
schema can :meth:`Registry.watch` a registry to rebuild it when an entry is added or removed.

Entries that ``repflow families`` lists carry ``paper``, ``summary`` and ``paradigm`` (see :class:`Listed`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Generic, Literal, TypeVar

__all__ = ["Registry", "UnknownName", "Listed", "literal_of"]

T = TypeVar("T")
_NO_ENTRY = object()


class UnknownName(KeyError, ValueError):
    """A name no entry is registered under. Both a KeyError (mapping lookups, ``Registry.get``) and a
    ValueError (what the rest of repflow raises for a bad value); its message lists the valid names."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, kw_only=True)
class Listed:
    """What ``repflow families`` shows for an entry. ``paradigm`` is one of ``repflow.family.PARADIGMS``
    for a self-supervised objective, None for everything else (selection, distillation, attacks)."""

    paper: str
    summary: str
    paradigm: str | None = None


class Registry(Mapping[str, T], Generic[T]):
    """Entries by name, in registration order. ``kind`` names what is registered ("attack") in errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._watchers: list[Callable[[Registry[T]], None]] = []

    def register(self, name: str, entry: Any = _NO_ENTRY, *, replace: bool = False) -> Any:
        """Add ``entry`` under ``name`` and return it; without ``entry``, a decorator that registers what it
        decorates. A taken name is an error unless ``replace`` (two modules claiming a name is a bug)."""
        if entry is _NO_ENTRY:
            return lambda obj: self.register(name, obj, replace=replace)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
        self._entries[name] = entry
        self._changed()
        return entry

    def unregister(self, name: str) -> T:
        entry = self[name]
        del self._entries[name]
        self._changed()
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def literal(self) -> Any:
        """A pydantic field type accepting exactly the names registered when the schema is built."""
        return literal_of(self)

    def watch(self, callback: Callable[[Registry[T]], None]) -> None:
        """Call ``callback(registry)`` after every register / unregister (e.g. to rebuild a schema)."""
        self._watchers.append(callback)

    def _changed(self) -> None:
        for callback in self._watchers:
            callback(self)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"{self.kind} {name!r} unknown; allowed: {sorted(self._entries)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    __eq__ = object.__eq__  # a registry is one table, not a value: Mapping's equality by items would
    __hash__ = object.__hash__  # make two registries with the same entries interchangeable and unhashable


class _CurrentNames:
    """pydantic metadata: validate as ``Literal[<names>]``, the names read each time a schema is built, so
    a model rebuilt after a registration (``Model.model_rebuild(force=True)``) accepts the new name. The
    error is pydantic's ``literal_error`` ("Input should be 'a' or 'b'"), as for a written-out Literal."""

    def __init__(self, names: Iterable[str]):
        self.names = names

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        names = tuple(self.names)
        if not names:
            raise ValueError(f"no names to choose from in {self.names!r}")
        return handler.generate_schema(Literal[names])


def literal_of(names: Iterable[str]) -> Any:
    """``Literal[...]`` of the names in ``names`` (a :class:`Registry`, a dict, a tuple), for a pydantic
    field: read when the schema is built, not when this is called."""
    return Annotated[str, _CurrentNames(names)]
