"""Model checkpoints as safetensors + JSON, never pickles.

``save_module`` / ``load_module`` store a module's state dict with its builder config. A training
state (optimizer tensors, step counters, RNG state) is flattened into the same tensor file under
``optim/...`` and ``rng/...`` keys, with the non-tensor parts in JSON, so a resumed run needs no
pickle either.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from repflow.manifest import atomic_write_text

__all__ = ["CheckpointError", "save_tensors", "load_tensors", "load_state_strict",
           "flatten_optimizer", "unflatten_optimizer", "save_progress", "load_progress", "TrainingProgress"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model it is loaded into."""


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """Write ``path`` (.safetensors) atomically, ``config`` embedded in its header.

    A readable copy of ``config`` goes to ``path.with_suffix('.json')``; loading uses the embedded
    one, so a crash between the two writes can never pair tensors with another step's config.
    """
    path = Path(path)
    text = json.dumps(config, indent=1, sort_keys=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"config": text})
    tmp.replace(path)
    atomic_write_text(path.with_suffix(".json"), text)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the config embedded by :func:`save_tensors` (no pickle involved)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if "config" not in header:
        raise CheckpointError(f"{path}: no embedded config (not written by repflow)")
    try:
        config = json.loads(header["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: embedded config is not valid JSON ({exc})") from None
    return tensors, config


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], origin: str | Path) -> None:
    """Load a state dict, naming missing/unexpected keys and shape mismatches in one error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        raise CheckpointError(f"{origin}: does not fit {type(module).__name__}: " + ", ".join(parts))
    module.load_state_dict(state)


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str = "optim/") -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (safetensors) and JSON (param groups, scalars)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}{pid}/{k}"] = v
            else:
                scalars[f"{pid}/{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "optim/") -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix):
            pid, name = key[len(prefix):].split("/", 1)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_progress(path: Path, key: str, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                  meta: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> None:
    """A resumable training checkpoint at ``path``: every module's weights and optimizer's state under its
    name, ``extra`` tensors (coreset indices ...), ``meta`` (epoch, history ...) and the stage ``key`` it belongs
    to; written atomically."""
    tensors: dict[str, torch.Tensor] = {f"extra/{k}": v.clone() for k, v in (extra or {}).items()}
    layouts = {}
    for name, module in modules.items():
        tensors.update({f"{name}/{k}": v for k, v in module.state_dict().items()})
    for name, opt in optimizers.items():
        opt_tensors, layouts[name] = flatten_optimizer(opt, prefix=f"optim.{name}/")
        tensors.update(opt_tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, tensors, {**meta, "stage_key": key, "optimizers": layouts})


def load_progress(path: Path, key: str, modules: dict[str, nn.Module]
                  ) -> tuple[dict, dict[str, dict], dict[str, torch.Tensor]] | None:
    """(meta, optimizer state dicts by name, extra tensors) of the :func:`save_progress` checkpoint at ``path``,
    the modules' weights loaded from it; None (and the modules untouched) when there is none, when it was made
    under another stage key (other params, inputs or code), or when it is unusable, the last two logged."""
    import logging

    log = logging.getLogger("repflow.checkpoints")
    if not path.is_file():
        return None
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in modules.items()}
    try:
        tensors, meta = load_tensors(path)
        if meta.get("stage_key") != key:
            log.info("ignoring progress checkpoint %s (made with other params, inputs or code)", path)
            return None
        states = {name: {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}/")}
                  for name in modules}
        for name, module in modules.items():
            load_state_strict(module, states[name], path)
        optimizers = {name: unflatten_optimizer(tensors, layout, prefix=f"optim.{name}/")
                      for name, layout in meta.pop("optimizers").items()}
        meta.pop("stage_key")
        return meta, optimizers, {k[len("extra/"):]: v for k, v in tensors.items() if k.startswith("extra/")}
    except (CheckpointError, KeyError, ValueError) as exc:
        for name, module in modules.items():
            module.load_state_dict(before[name])
        log.warning("progress checkpoint %s unusable (%s); starting over", path, exc)
        return None


class TrainingProgress:
    """A training stage's resumable progress, the one prologue of every stage that resumes: the modules' weights,
    optimizer states, ``meta`` (``epoch`` and ``history`` unless ``fresh`` says otherwise) and extra tensors of the
    last :func:`save_progress` checkpoint at ``path`` made under the stage ``key``, or ``fresh`` when there is
    none. :meth:`epoch_done` checkpoints every ``every`` epochs and after epoch ``epochs``, so a killed run
    resumes after its last checkpointed epoch and, with every draw seeded by the epoch, ends where an unbroken
    run ends."""

    def __init__(self, path: Path, key: str, modules: dict[str, nn.Module], *, every: int = 1,
                 epochs: int | None = None, fresh: dict[str, Any] | None = None):
        self.path, self.key, self.modules, self.every, self.epochs = Path(path), key, modules, every, epochs
        resumed = load_progress(self.path, key, modules)
        self.resumed = resumed is not None
        self.meta, self.optimizers, self.extra = resumed or (
            dict(fresh) if fresh is not None else {"epoch": 0, "history": []}, {}, {})

    @property
    def start(self) -> int:
        """The last checkpointed epoch (0 for a fresh run): training continues with the next one."""
        return self.meta["epoch"]

    @property
    def history(self) -> list:
        """Per-epoch records so far (the list itself: append to it, :meth:`epoch_done` saves it)."""
        return self.meta["history"]

    def optimizer_state(self, name: str = "model") -> dict | None:
        """The state dict of optimizer ``name`` to resume from; None for a fresh run."""
        return self.optimizers.get(name)

    def save(self, optimizers: dict[str, torch.optim.Optimizer] | None = None,
             extra: dict[str, torch.Tensor] | None = None, **meta: Any) -> None:
        """Checkpoint now, with ``meta`` merged into :attr:`meta`."""
        self.meta.update(meta)
        save_progress(self.path, self.key, self.modules, optimizers or {}, self.meta, extra)

    def epoch_done(self, epoch: int, optimizers: dict[str, torch.optim.Optimizer],
                   extra: dict[str, torch.Tensor] | None = None, **meta: Any) -> bool:
        """Checkpoint after ``epoch`` when it is a multiple of ``every`` or the last; returns whether it did."""
        if epoch % self.every and epoch != self.epochs:
            return False
        self.save(optimizers, extra, epoch=epoch, **meta)
        return True
