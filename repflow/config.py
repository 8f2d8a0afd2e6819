"""The single schema of ``params.yaml``: one typed section per stage, shared by Prefect and DVC.

Every stage reads its section through :func:`load_params`, so a wrong key, type or value is
reported once, before any work starts, naming the key, the value given and what is allowed.
"""
from __future__ import annotations

import copy
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["Params", "ParamsError", "load_params", "apply_overrides", "section_digest"]


class ParamsError(ValueError):
    """A params file or override that does not fit the schema (one line per problem)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _epsilon_list(v: list[float]) -> list[float]:
    """Attack radii in pixel units of [0, 1] images: at least one, each in (0, 1]; sorted, deduplicated."""
    if not v:
        raise ValueError("needs at least one epsilon")
    bad = [e for e in v if not 0.0 < e <= 1.0]
    if bad:
        raise ValueError(f"every epsilon must be in (0, 1] (inputs are in [0, 1]); got {bad}")
    return sorted(set(v))


class PrepParams(_Section):
    """Turn a source on disk into train / val / test WebDataset shards."""

    source: Literal["fashion-mnist", "mnist5k", "cifar10", "imagefolder"] = "fashion-mnist"
    path: str | None = Field(None, description="source folder or file; null = the source's default")
    per_class: int | None = Field(None, ge=1, description="train images kept per class; null = all")
    test_per_class: int | None = Field(None, ge=1, description="test images kept per class; null = all")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of train held out for validation")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="test share for sources without a test split")
    shard_size: int = Field(2000, ge=1, description="samples per shard")


class AugmentParams(_Section):
    """SimCLR view augmentations, applied on tensors so they run batched on any device."""

    crop_scale_min: float = Field(0.5, gt=0.0, le=1.0)
    flip: bool = True
    brightness: float = Field(0.4, ge=0.0, le=1.0)
    contrast: float = Field(0.4, ge=0.0, le=1.0)
    noise_std: float = Field(0.0, ge=0.0, le=1.0)


class GenerateParams(_Section):
    """Train (or load) a class-conditional generator, judge it, and write GenRep multiview shards."""

    checkpoint: str | None = Field(None, description="folder of an earlier generate output to reuse its generator")
    z_dim: int = Field(32, ge=2, le=1024)
    w_dim: int = Field(64, ge=2, le=1024)
    channels: int = Field(64, ge=8, le=1024)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    beta: float = Field(1.0, gt=0.0, description="weight of the VAE's KL term")
    patience: int = Field(3, ge=1, description="epochs without a better Fréchet distance before stopping")
    judge_epochs: int = Field(3, ge=1, description="epochs of the real-data classifier that scores samples")
    quality_samples: int = Field(1000, ge=20, description="generated images per quality check")
    anchors: int = Field(2000, ge=1, description="N: anchor latents (balanced over classes)")
    views: int = Field(4, ge=1, description="K: positive views per anchor")
    sigma: float = Field(0.5, gt=0.0, le=10.0, description="std of the latent neighbourhood (GenRep's σ)")
    truncation: float = Field(1.0, gt=0.0, le=10.0)
    mode: Literal["gaussian", "independent"] = "gaussian"
    shard_size: int = Field(2000, ge=1)


class AdversarialParams(_Section):
    """ACL / DynACL: the PGD that makes adversarial views, and DynACL's schedule."""

    eps: float = Field(8 / 255, gt=0.0, le=1.0, description="l-inf radius in [0, 1] pixel units")
    alpha: float = Field(2 / 255, gt=0.0, le=1.0, description="PGD step size")
    steps: int = Field(5, ge=1, le=100)
    anneal_period: int = Field(2, ge=1, description="DynACL: epochs between augmentation-strength drops (K)")
    reweight: float = Field(2 / 3, ge=0.0, le=1.0, description="DynACL: λ in w = λ(1 − strength)")
    inference_bn: Literal["clean", "adv"] = Field("adv", description="batch-norm branch the saved encoder uses")


class TrainParams(_Section):
    method: Literal["simclr", "genrep", "acl", "dynacl"] = "simclr"
    data: Literal["real", "generated", "both"] = "real"
    loss: Literal["ntxent", "supcon"] = "ntxent"
    encoder: Literal["small_cnn", "resnet18"] = "small_cnn"
    width: int = Field(32, ge=4, le=512, description="channels of the first block")
    proj_dim: int = Field(64, ge=2, description="projection head output size")
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-6, ge=0.0)
    temperature: float = Field(0.5, gt=0.0, le=10.0)
    augment: AugmentParams = AugmentParams()
    adversarial: AdversarialParams = AdversarialParams()
    checkpoint_every: int = Field(1, ge=1, description="epochs between resumable checkpoints")

    @model_validator(mode="after")
    def _method_fits_data_and_loss(self) -> "TrainParams":
        if self.method == "genrep" and self.data == "real":
            raise ValueError("method 'genrep' learns from generated views: set data to 'generated' or 'both'")
        if self.method in ("acl", "dynacl") and self.loss != "ntxent":
            raise ValueError(f"method {self.method!r} trains with NT-Xent: set loss to 'ntxent'")
        return self

    @property
    def adversarial_training(self) -> bool:
        return self.method in ("acl", "dynacl")


class SelectParams(_Section):
    """Coreset selection (RCS) and its schedule: ``warmup_epochs`` of training on all images, then a
    coreset re-selected every ``every`` epochs. ``full`` trains on everything (the reference)."""

    method: Literal["full", "random", "rcs"] = "full"
    fraction: float = Field(0.2, gt=0.0, le=1.0, description="coreset size as a share of the training images")
    warmup_epochs: int = Field(0, ge=0, description="epochs on the full data before the first selection")
    every: int = Field(2, ge=1, description="re-select every F epochs")
    val_size: int = Field(256, ge=1, description="unlabeled validation images U drawn from the training images")
    candidate_batch: int = Field(64, ge=2, description="images per candidate minibatch")
    rd_eps: float = Field(8 / 255, gt=0.0, le=1.0, description="radius of the divergence attack on U")
    rd_steps: int = Field(3, ge=1, le=100)
    head_lr: float = Field(0.01, gt=0.0, description="greedy step size on the projection head")
    workers: int = Field(1, ge=1, le=64, description="Ray tasks computing candidate gradients (1 = in process)")

    @property
    def rd(self) -> dict[str, float]:
        return {"eps": self.rd_eps, "alpha": 1.25 * self.rd_eps / self.rd_steps, "steps": self.rd_steps}


class EvaluateParams(_Section):
    probe_epochs: int = Field(30, ge=1)
    probe_lr: float = Field(1e-2, gt=0.0)
    probe_batch_size: int = Field(256, ge=1)
    eps: list[float] = Field(default_factory=lambda: [1 / 255, 2 / 255, 4 / 255, 8 / 255])
    pgd_steps: int = Field(20, ge=1)
    pgd_step_ratio: float = Field(2.5, gt=0.0, description="step size = ratio * eps / steps")
    max_test: int | None = Field(1000, ge=1, description="test images attacked; null = all")
    attack_batch_size: int = Field(250, ge=1)
    alf: bool = Field(True, description="also adversarial linear finetuning (ALF) of the probe")
    alf_epochs: int = Field(5, ge=1)
    alf_eps: float = Field(8 / 255, gt=0.0, le=1.0, description="PGD radius while finetuning the probe")
    alf_steps: int = Field(5, ge=1, le=100, description="PGD steps while finetuning the probe")
    rd_steps: int = Field(3, ge=1, le=100, description="attack steps of the held-out representational divergence")

    @field_validator("eps")
    @classmethod
    def _eps_in_range(cls, v: list[float]) -> list[float]:
        return _epsilon_list(v)


class DistillParams(_Section):
    """GLaD: distil the training split into ``ipc`` images per class, optimising pixels, the generator's
    latents, or a generator feature map + the styles after it; then train fresh networks of several
    architectures on the distilled set and test them on the real test split."""

    loss: Literal["dm", "dc"] = Field("dm", description="distribution matching | gradient matching")
    param: Literal["pixel", "latent", "feature"] = "feature"
    layer: int = Field(2, ge=0, description="generator layer whose feature map is optimised (param: feature)")
    ipc: int = Field(10, ge=1, description="images per class")
    iterations: int = Field(200, ge=1)
    real_per_class: int = Field(32, ge=1, description="real images per class in each matching step")
    eval_archs: list[Literal["convnet", "mlp", "convnet-bn", "resnet"]] = Field(
        default_factory=lambda: ["convnet", "mlp", "convnet-bn", "resnet"],
        description="first = the distillation architecture (same-arch); the rest give the cross-arch mean")
    eval_seeds: int = Field(2, ge=1, description="fresh networks per architecture")
    eval_epochs: int = Field(300, ge=1)
    baselines: bool = Field(True, description="also evaluate random real images and unoptimised generator samples")

    @field_validator("eval_archs")
    @classmethod
    def _distillation_net_first(cls, v: list[str]) -> list[str]:
        if not v or v[0] != "convnet":
            raise ValueError("must start with 'convnet', the network the set is distilled with")
        return list(dict.fromkeys(v))


ZOO_MEMBERS = ("convnet", "convnet_seed1", "mlp", "wide_cnn_bn", "resnet8", "convnet_pgd")
ATTACK_NAMES = ("fgsm", "pgd", "pgd_l2", "mifgsm", "di", "ti", "ssa")


class ZooParams(_Section):
    """Supervised classifiers trained on the prep shards: the transfer attacks' surrogate and targets
    (specs in repflow/zoo.py)."""

    members: list[Literal[ZOO_MEMBERS]] = Field(default_factory=lambda: list(ZOO_MEMBERS))  # type: ignore[valid-type]
    surrogate: Literal[ZOO_MEMBERS] = "convnet"  # type: ignore[valid-type]
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(128, ge=2)
    register_models: bool = Field(True, description="register every member in MLflow as repflow-zoo-<name>")

    @model_validator(mode="after")
    def _surrogate_is_a_member(self) -> "ZooParams":
        if self.surrogate not in self.members:
            raise ValueError(f"surrogate {self.surrogate!r} is not among members {self.members}")
        if len(set(self.members)) < 2:
            raise ValueError("needs the surrogate and at least one target")
        return self


class TransferParams(_Section):
    """The transfer-attack grid: attack × SVD logit fusion on/off × ε, crafted on the zoo's surrogate and
    scored on every target (the other zoo members and the trained encoder + its linear probe)."""

    attacks: list[Literal[ATTACK_NAMES]] = Field(default_factory=lambda: ["mifgsm", "di", "ssa"])  # type: ignore[valid-type]
    fusion: list[bool] = Field(default_factory=lambda: [False, True], description="without / with SVD logit fusion")
    eps: list[float] = Field(default_factory=lambda: [0.05, 0.1])
    steps: int = Field(10, ge=1, le=1000)
    momentum: float = Field(1.0, ge=0.0, description="μ of the MI-FGSM-style attacks")
    ssa_spectrum: int = Field(5, ge=1, le=100, description="SSA: spectrum-transformed copies per step (N)")
    svd_layer: str = Field("block2", min_length=1, description="surrogate stage whose output is decomposed")
    svd_beta: float = Field(0.5, ge=0.0, le=1.0, description="weight of the original logits (1 = no fusion)")
    svd_method: Literal["power", "exact"] = "power"
    svd_iterations: int = Field(20, ge=1, le=1000)
    max_test: int = Field(500, ge=1, description="test images attacked")
    batch_size: int = Field(250, ge=1)

    @field_validator("eps")
    @classmethod
    def _eps_in_range(cls, v: list[float]) -> list[float]:
        return _epsilon_list(v)

    @field_validator("attacks", "fusion")
    @classmethod
    def _not_empty(cls, v: list) -> list:
        if not v:
            raise ValueError("needs at least one entry")
        return list(dict.fromkeys(v))


class RegisterParams(_Section):
    model_name: str = Field("repflow-encoder", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    alias: str = Field("champion", pattern=r"^[a-z][a-z0-9_-]*$")
    criterion: Literal["robust_acc_mean", "robust_acc_max_eps", "clean_acc", "alf_robust_acc_mean"] = "robust_acc_mean"


with warnings.catch_warnings():  # "register" is also ABCMeta.register; instances still read the field
    warnings.filterwarnings("ignore", message='Field name "register"')

    class Params(_Section):
        """The whole ``params.yaml``."""

        seed: int = Field(0, ge=0)
        device: Literal["auto", "cpu", "cuda"] = "auto"
        prep: PrepParams = PrepParams()
        generate: GenerateParams = GenerateParams()
        select: SelectParams = SelectParams()
        train: TrainParams = TrainParams()
        evaluate: EvaluateParams = EvaluateParams()
        distill: DistillParams = DistillParams()
        zoo: ZooParams = ZooParams()
        transfer: TransferParams = TransferParams()
        register: RegisterParams = RegisterParams()

        @model_validator(mode="after")
        def _schedule_fits(self) -> "Params":
            if self.select.warmup_epochs >= self.train.epochs and self.select.method != "full":
                raise ValueError(f"select.warmup_epochs = {self.select.warmup_epochs}: must be below train.epochs "
                                 f"({self.train.epochs}) so that some epochs train on the coreset")
            if self.register.criterion.startswith("alf_") and not self.evaluate.alf:
                raise ValueError(f"register.criterion = {self.register.criterion!r} needs evaluate.alf = true")
            return self


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        parent = Params
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


def parse_params(raw: dict[str, Any], origin: str = "params") -> Params:
    """Validate a params mapping; raise :class:`ParamsError` listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
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
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
    return out


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read, override and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(apply_overrides(raw, overrides or []), origin=str(path))


def section_digest(section: BaseModel | dict[str, Any] | Any) -> str:
    """sha256 of a params section's canonical JSON; the stage cache keys are built from it."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
