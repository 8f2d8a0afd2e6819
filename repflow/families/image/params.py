"""The image family's params sections (top level of ``params.yaml``: the image family is the default).

Every field that names a method, model or data source takes its allowed names from the registry or table
next to the code that implements them (:func:`repflow.registry.literal_of`); none is copied here. When a
method is registered later (a plugin, a test), the sections are rebuilt so that the next schema
:func:`repflow.config.params_model` builds accepts it.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from repflow.attacks import ATTACKS, RANK1_METHODS
from repflow.config import Section, distinct_names, epsilon_list, params_model
from repflow.family import ModelSpec
from repflow.families.image.contrastive import LOSSES
from repflow.families.image.train_methods import TRAIN_METHODS, TrainMethod
from repflow.families.image.coreset import SELECTION_METHODS, SelectionMethod
from repflow.families.image.distill import DISTILL_LOSSES, DISTILL_PARAMS, EVAL_ARCHITECTURES, PIXEL_INITS
from repflow.families.image.generative import VIEW_MODES
from repflow.families.image.models.encoders import BN_BRANCHES, ENCODERS
from repflow.registry import literal_of
from repflow.families.image.sources import SOURCES
from repflow.families.image.zoo import ZOO_SPECS

__all__ = ["SECTIONS", "check"]


class PrepParams(Section):
    """Turn a source on disk into train / val / test WebDataset shards."""

    source: literal_of(SOURCES) = "fashion-mnist"  # type: ignore[valid-type]
    path: str | None = Field(None, description="source folder or file; null = the source's default")
    per_class: int | None = Field(None, ge=1, le=100_000, description="train images kept per class; null = all")
    test_per_class: int | None = Field(None, ge=1, le=100_000, description="test images kept per class; null = all")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of train held out for validation")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="test share for sources without a test split")
    shard_size: int = Field(2000, ge=1, le=1_000_000, description="samples per shard")
    image_format: Literal["png", "raw"] = Field(
        "raw", description="raw: the uint8 bytes with their shape, read without a decode (about 2.5x faster loading "
                           "than png, the same images: benchmarks/results/loading.md; shards about 11 % larger); "
                           "png: compressed members an image viewer opens")
    train_order: Literal["random", "source"] = Field(
        "random", description="order the train split is written in. random: drawn from seed, so a shuffle buffer "
                              "smaller than a class still mixes the classes of a source listed class by class "
                              "(imagefolder; benchmarks/results/stream.md); source: the source's order (prep "
                              "before issue 34; benchmarks recorded with it pin it). Val and test: source order")


class AugmentParams(Section):
    """SimCLR view augmentations, applied on tensors so they run batched on any device."""

    crop_scale_min: float = Field(0.5, gt=0.0, le=1.0)
    flip: bool = True
    brightness: float = Field(0.4, ge=0.0, le=1.0)
    contrast: float = Field(0.4, ge=0.0, le=1.0)
    noise_std: float = Field(0.0, ge=0.0, le=1.0)


class GenerateParams(Section):
    """Train (or load) a class-conditional generator, judge it, and write GenRep multiview shards."""

    checkpoint: str | None = Field(None, description="folder of an earlier generate output to reuse its generator")
    z_dim: int = Field(32, ge=2, le=1024)
    w_dim: int = Field(64, ge=2, le=1024)
    channels: int = Field(64, ge=8, le=1024)
    epochs: int = Field(6, ge=1, le=1000)
    batch_size: int = Field(128, ge=2, le=4096)
    lr: float = Field(2e-3, gt=0.0, le=1.0)
    beta: float = Field(1.0, gt=0.0, le=1000.0, description="weight of the VAE's KL term")
    patience: int = Field(3, ge=1, le=1000, description="epochs without a better Fréchet distance before stopping")
    judge_epochs: int = Field(3, ge=1, le=1000, description="epochs of the real-data classifier that scores samples")
    quality_samples: int = Field(1000, ge=20, le=100_000, description="generated images per quality check")
    anchors: int = Field(2000, ge=1, le=1_000_000, description="N: anchor latents (balanced over classes)")
    views: int = Field(4, ge=1, le=64, description="K: positive views per anchor")
    sigma: float = Field(0.5, gt=0.0, le=10.0, description="std of the latent neighbourhood (GenRep's σ)")
    truncation: float = Field(1.0, gt=0.0, le=10.0)
    mode: literal_of(VIEW_MODES) = "gaussian"  # type: ignore[valid-type]
    shard_size: int = Field(2000, ge=1, le=1_000_000)


class AdversarialParams(Section):
    """ACL / DynACL: the PGD that makes adversarial views, and DynACL's schedule."""

    eps: float = Field(8 / 255, gt=0.0, le=1.0, description="l-inf radius in [0, 1] pixel units")
    alpha: float = Field(2 / 255, gt=0.0, le=1.0, description="PGD step size")
    steps: int = Field(5, ge=1, le=100)
    anneal_period: int = Field(2, ge=1, le=1000, description="DynACL: epochs between augmentation-strength drops (K)")
    reweight: float = Field(2 / 3, ge=0.0, le=1.0, description="DynACL: λ in w = λ(1 − strength)")
    inference_bn: literal_of(BN_BRANCHES) = Field(  # type: ignore[valid-type]
        "adv", description="batch-norm branch the saved encoder uses")


class TrainParams(Section):
    method: TRAIN_METHODS.literal() = "simclr"  # type: ignore[valid-type]
    data: Literal["real", "generated", "both"] = "real"
    loss: literal_of(LOSSES) = "ntxent"  # type: ignore[valid-type]
    encoder: literal_of(ENCODERS) = "small_cnn"  # type: ignore[valid-type]
    width: int = Field(32, ge=4, le=512, description="channels of the first block")
    proj_dim: int = Field(64, ge=2, le=4096, description="projection head output size")
    epochs: int = Field(8, ge=1, le=10_000)
    batch_size: int = Field(256, ge=2, le=8192)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-6, ge=0.0, le=1.0)
    temperature: float = Field(0.5, gt=0.0, le=10.0)
    augment: AugmentParams = AugmentParams()
    adversarial: AdversarialParams = AdversarialParams()
    checkpoint_every: int = Field(1, ge=1, le=10_000, description="epochs between resumable checkpoints")
    stream: Literal["auto", "always", "never"] = Field(
        "auto", description="read the training shards batch by batch through a shuffle buffer instead of loading "
                            "the split (auto: when data is real and select.method keeps every image; always: refuse "
                            "other settings; never: load); evaluate and compare read their splits in order batch by "
                            "batch unless never (the same probes and scores; ALF then draws from the shuffle "
                            "buffer)")
    shuffle_buffer: int = Field(10_000, ge=1, le=10_000_000,
                                description="streamed samples (still encoded) held for shuffling; >= the split: a "
                                            "uniform shuffle")
    workers: int = Field(1, ge=1, le=256, description="data-parallel Ray Train workers, each a slice of every "
                         "global batch (1 = in process; a GPU each when the device is CUDA)")

    @model_validator(mode="after")
    def _method_fits_data_and_loss(self) -> "TrainParams":
        method = self.training_method
        if method.pretext is not None:
            self._pretext_fits()
        if method.latent_views and self.data == "real":
            raise ValueError(f"method {self.method!r} learns from generated views: set data to 'generated' or 'both'")
        if self.loss not in method.losses:
            raise ValueError(f"method {self.method!r} trains with {' or '.join(LOSSES[n] for n in method.losses)}: "
                             f"set loss to {' or '.join(repr(n) for n in method.losses)}")
        return self

    def _pretext_fits(self) -> None:
        """A pretext method (masked_ae, bigan) trains its own loss on real images: no class labels, no
        generated views, no adversary; settings that only those would read are refused, not ignored."""
        what = f"method {self.method!r} is a {self.training_method.paradigm} pretext task"
        if self.data != "real":
            raise ValueError(f"data = {self.data!r}: {what} on real images; allowed: 'real'")
        if self.loss != "ntxent":
            raise ValueError(f"loss = {self.loss!r}: {what} with its own loss (class labels are not used); "
                             "allowed: 'ntxent' (the default, ignored by it)")
        defaults = AdversarialParams()
        for key in AdversarialParams.model_fields:
            value, default = getattr(self.adversarial, key), getattr(defaults, key)
            same = math.isclose(value, default, rel_tol=1e-3) if isinstance(default, float) else value == default
            if not same:
                adversarial = [name for name, m in TRAIN_METHODS.items() if m.adversarial]
                raise ValueError(f"adversarial.{key} = {value!r}: only adversarial methods ({', '.join(adversarial)}) "
                                 f"read it, and {what}; allowed: the default {default!r} (remove the setting)")

    @property
    def training_method(self) -> TrainMethod:
        return TRAIN_METHODS[self.method]

    @property
    def adversarial_training(self) -> bool:
        return self.training_method.adversarial


class SelectParams(Section):
    """Coreset selection (RCS) and its schedule: ``warmup_epochs`` of training on all images, then a
    coreset re-selected every ``every`` epochs. ``full`` trains on everything (the reference)."""

    method: SELECTION_METHODS.literal() = "full"  # type: ignore[valid-type]
    fraction: float = Field(0.2, gt=0.0, le=1.0, description="coreset size as a share of the training images")
    warmup_epochs: int = Field(0, ge=0, le=10_000, description="epochs on the full data before the first selection")
    every: int = Field(2, ge=1, le=10_000, description="re-select every F epochs")
    val_size: int = Field(256, ge=1, le=1_000_000,
                          description="unlabeled validation images U drawn from the training images")
    candidate_batch: int = Field(64, ge=2, le=8192, description="images per candidate minibatch")
    rd_eps: float = Field(8 / 255, gt=0.0, le=1.0, description="radius of the divergence attack on U")
    rd_steps: int = Field(3, ge=1, le=100)
    head_lr: float = Field(0.01, gt=0.0, le=10.0, description="greedy step size on the projection head")
    workers: int = Field(1, ge=1, le=64, description="Ray tasks computing candidate gradients (1 = in process)")

    @property
    def selection_method(self) -> SelectionMethod:
        return SELECTION_METHODS[self.method]

    @property
    def rd(self) -> dict[str, float]:
        return {"eps": self.rd_eps, "alpha": 1.25 * self.rd_eps / self.rd_steps, "steps": self.rd_steps}


class EvaluateParams(Section):
    probe_epochs: int = Field(30, ge=1, le=10_000)
    probe_lr: float = Field(1e-2, gt=0.0, le=10.0)
    probe_batch_size: int = Field(256, ge=1, le=8192)
    eps: list[float] = Field(default_factory=lambda: [1 / 255, 2 / 255, 4 / 255, 8 / 255])
    pgd_steps: int = Field(10, ge=1, le=1000)
    pgd_step_ratio: float = Field(2.5, gt=0.0, le=100.0, description="step size = ratio * eps / steps")
    max_test: int | None = Field(500, ge=1, le=1_000_000, description="test images attacked; null = all")
    attack_batch_size: int = Field(250, ge=1, le=8192)
    alf: bool = Field(True, description="also adversarial linear finetuning (ALF) of the probe")
    alf_epochs: int = Field(1, ge=1, le=1000)
    alf_eps: float = Field(8 / 255, gt=0.0, le=1.0, description="PGD radius while finetuning the probe")
    alf_steps: int = Field(3, ge=1, le=100, description="PGD steps while finetuning the probe")
    rd_steps: int = Field(3, ge=1, le=100, description="attack steps of the held-out representational divergence")
    compile: bool = Field(False, description="run the PGD grid's model through torch.compile (needs a C++ compiler). "
                                             "Off: on the default small_cnn a compiled 500-image PGD-10 task took "
                                             "6.7 CPU s against 6.3 eager, after a compile of ~45 CPU s per Ray "
                                             "worker (cold cache); the zoo ConvNet gains 1.3-1.5x "
                                             "(benchmarks/results/attack_speed.md)")

    @field_validator("eps")
    @classmethod
    def _eps_in_range(cls, v: list[float]) -> list[float]:
        return epsilon_list(v)


class DistillParams(Section):
    """GLaD: distil the training split into ``ipc`` images per class, optimising pixels, the generator's
    latents, or a generator feature map + the styles after it; then train fresh networks of several
    architectures on the distilled set and test them on the real test split."""

    loss: DISTILL_LOSSES.literal() = Field(  # type: ignore[valid-type]
        "dm", description="dm: distribution matching, dc: gradient matching (image/distill.py: DISTILL_LOSSES)")
    param: DISTILL_PARAMS.literal() = "feature"  # type: ignore[valid-type]
    layer: int = Field(2, ge=0, le=16, description="generator layer whose feature map is optimised (param: feature)")
    pixel_init: literal_of(PIXEL_INITS) = Field(  # type: ignore[valid-type]
        "real", description="param: pixel — start from random real images, Gaussian noise with the data's mean and "
                            "std (GLaD's default), or the generator's samples (the latent params' start)")
    ipc: int = Field(10, ge=1, le=1000, description="images per class")
    iterations: int = Field(200, ge=1, le=100_000)
    real_per_class: int = Field(32, ge=1, le=10_000, description="real images per class in each matching step")
    eval_archs: list[literal_of(EVAL_ARCHITECTURES)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["convnet", "mlp", "convnet-bn", "resnet"],
        description="first = the distillation architecture (same-arch); the rest give the cross-arch mean")
    eval_seeds: int = Field(2, ge=1, le=100, description="fresh networks per architecture")
    eval_epochs: int = Field(100, ge=1, le=100_000)
    baselines: bool = Field(True, description="also evaluate random real images and unoptimised generator samples")

    @field_validator("eval_archs")
    @classmethod
    def _distillation_net_first(cls, v: list[str]) -> list[str]:
        if not v or v[0] != "convnet":
            raise ValueError("must start with 'convnet', the network the set is distilled with")
        return list(dict.fromkeys(v))


class ZooParams(Section):
    """Supervised classifiers trained on the prep shards: the transfer attacks' surrogate and targets
    (specs in repflow/families/image/zoo.py)."""

    members: list[literal_of(ZOO_SPECS)] = Field(default_factory=lambda: list(ZOO_SPECS))  # type: ignore[valid-type]
    surrogate: literal_of(ZOO_SPECS) = Field(  # type: ignore[valid-type]
        "convnet_bn_gap", description="the white-box model; its rank-1 block2 feature keeps most of its accuracy "
                                      "(benchmarks/results/svd_transfer.md), which SVD logit fusion relies on")
    epochs: int = Field(2, ge=1, le=1000)
    batch_size: int = Field(128, ge=2, le=4096)
    register_models: bool = Field(True, description="register every member in MLflow as repflow-zoo-<name>")

    @model_validator(mode="after")
    def _surrogate_is_a_member(self) -> "ZooParams":
        if self.surrogate not in self.members:
            raise ValueError(f"surrogate {self.surrogate!r} is not among members {self.members}")
        if len(set(self.members)) < 2:
            raise ValueError("needs the surrogate and at least one target")
        return self


class TransferParams(Section):
    """The transfer-attack grid: attack × SVD logit fusion on/off × ε, crafted on the zoo's surrogate and
    scored on every target (the other zoo members and the trained encoder + its linear probe)."""

    attacks: list[ATTACKS.literal()] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["mifgsm", "di", "ssa"])
    fusion: list[bool] = Field(default_factory=lambda: [False, True], description="without / with SVD logit fusion")
    eps: list[float] = Field(default_factory=lambda: [0.05, 0.1])
    steps: int = Field(10, ge=1, le=1000)
    momentum: float = Field(1.0, ge=0.0, le=10.0, description="μ of the MI-FGSM-style attacks")
    ssa_spectrum: int = Field(5, ge=1, le=100, description="SSA: spectrum-transformed copies per step (N)")
    svd_layer: str = Field("block2", min_length=1, description="surrogate stage whose output is decomposed: a "
                                                                "middle one (ConvNets: block2, ResNet-8: stage2)")
    svd_beta: float = Field(0.5, ge=0.0, le=1.0, description="weight of the original logits (1 = no fusion)")
    svd_method: literal_of(RANK1_METHODS) = "power"  # type: ignore[valid-type]
    svd_iterations: int = Field(20, ge=1, le=1000)
    max_test: int = Field(250, ge=1, le=1_000_000, description="test images attacked")
    batch_size: int = Field(250, ge=1, le=8192)
    compile: bool = Field(False, description="craft on the surrogate through torch.compile (as evaluate.compile)")

    @field_validator("eps")
    @classmethod
    def _eps_in_range(cls, v: list[float]) -> list[float]:
        return epsilon_list(v)

    @field_validator("attacks", "fusion")
    @classmethod
    def _not_empty(cls, v: list) -> list:
        if not v:
            raise ValueError("needs at least one entry")
        return list(dict.fromkeys(v))


# The model the register stage registers; its params below default to it (one source for both).
REGISTERED_MODEL = ModelSpec("repflow-encoder", metric="robust_acc_mean", direction="max", alias="champion")


class RegisterParams(Section):
    model_name: str = Field(REGISTERED_MODEL.name, min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    alias: str = Field(REGISTERED_MODEL.alias, pattern=r"^[a-z][a-z0-9_-]*$")
    criterion: Literal["robust_acc_mean", "robust_acc_max_eps", "clean_acc",
                       "alf_robust_acc_mean"] = REGISTERED_MODEL.metric


class CompareParams(Section):
    """``repflow compare``: every method in ``methods`` trained once per seed from the same initial encoder,
    on the same shards with the same budget (``epochs``, or ``seconds`` of training CPU time per arm:
    exactly one), then probed the same way. The encoder, optimiser, batch size, augmentations and
    adversarial settings are the ``train`` section's; the linear probe's and PGD's settings are the
    ``evaluate`` section's; the transfer attack is crafted on the zoo's surrogate."""

    methods: list[str] = Field(default_factory=lambda: ["masked_ae", "simclr", "genrep", "acl", "bigan"],
                               description="training methods, one arm per method and seed")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="one arm per method and seed")
    epochs: int | None = Field(3, ge=1, le=10_000, description="equal budget in epochs (null: use seconds)")
    seconds: float | None = Field(None, gt=0.0, le=1e6, description="equal budget in training CPU seconds per arm")
    reference: bool = Field(True, description="also probe each seed's untrained initial encoder: the floor")
    few_label: list[int] = Field(default_factory=lambda: [1, 5, 10], description="labelled images per class")
    few_label_draws: int = Field(5, ge=1, le=1000, description="labelled sets drawn per k")
    pgd_eps: float = Field(4 / 255, gt=0.0, le=1.0, description="radius of the PGD robust accuracy")
    transfer_attack: ATTACKS.literal() = "mifgsm"  # type: ignore[valid-type]
    transfer_eps: float = Field(0.1, gt=0.0, le=1.0, description="radius of the transfer attack from the surrogate")
    max_test: int = Field(500, ge=10, le=1_000_000, description="test images attacked (a seeded subset)")
    reconstruction_size: int | None = Field(None, ge=1, le=1024, description="side of the (downsized) test images a "
                                            "linear map recovers from the features; null = full resolution")
    lr: dict[str, float] = Field(default_factory=lambda: {"bigan": 2e-4},
                                 description="a method's own learning rate where its papers' differs from train.lr "
                                             "(BiGAN / ALI: 2e-4 with Adam β1 0.5); every other method uses train.lr")

    @field_validator("lr")
    @classmethod
    def _known_lr(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: x for k, x in v.items() if k not in TRAIN_METHODS or not 0 < x <= 10}
        if bad:
            raise ValueError(f"compare.lr {bad}: keys must be training methods ({list(TRAIN_METHODS)}), "
                             f"values in (0, 10]")
        return v

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        return distinct_names(v, TRAIN_METHODS, "compare.methods")

    @field_validator("seeds", "few_label")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"{v}: needs at least one value, no repeats")
        return v

    @field_validator("few_label")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if min(v) < 1:
            raise ValueError(f"{v}: every count of labelled images per class must be >= 1")
        return sorted(v)

    @model_validator(mode="after")
    def _one_budget(self) -> "CompareParams":
        if (self.epochs is None) == (self.seconds is None):
            raise ValueError(f"set exactly one of compare.epochs ({self.epochs}) and compare.seconds ({self.seconds}); "
                             f"the other must be null")
        return self


SECTIONS = {"prep": PrepParams, "generate": GenerateParams, "select": SelectParams, "train": TrainParams,
            "evaluate": EvaluateParams, "distill": DistillParams, "zoo": ZooParams, "transfer": TransferParams,
            "register": RegisterParams, "compare": CompareParams}


def _rebuild(registry=None) -> None:
    """A registry changed: recompile the sections that name its entries, and forget the cached schema."""
    for section in (TrainParams, SelectParams, DistillParams, ZooParams, TransferParams, CompareParams):
        section.model_rebuild(force=True)
    params_model.cache_clear()


for _registry in (TRAIN_METHODS, SELECTION_METHODS, DISTILL_LOSSES, DISTILL_PARAMS, ATTACKS):
    _registry.watch(_rebuild)


def check(params) -> None:
    """Rules across the image family's sections."""
    if params.select.warmup_epochs >= params.train.epochs and params.select.selection_method.subset:
        raise ValueError(f"select.warmup_epochs = {params.select.warmup_epochs}: must be below train.epochs "
                         f"({params.train.epochs}) so that some epochs train on the coreset")
    method = params.train.training_method
    if method.pretext is not None and params.select.selection_method.scores_model:
        allowed = [name for name, entry in SELECTION_METHODS.items() if not entry.scores_model]
        raise ValueError(f"select.method = {params.select.method!r}: scores images by contrastive gradients through "
                         f"a projection head, which train.method {params.train.method!r} (a pretext task) does not "
                         f"have; allowed with it: {allowed}")
    if params.train.stream == "always" and (params.train.data != "real" or params.select.selection_method.subset):
        why = (f"train.data = {params.train.data!r} (generated views are read in anchor groups)"
               if params.train.data != "real" else
               f"select.method = {params.select.method!r} (a coreset needs random access to the training images)")
        raise ValueError(f"train.stream = 'always': streaming needs real data and a selection that keeps every "
                         f"image; {why}; allowed: 'auto' (stream where it can) or 'never'")
    if params.train.workers > 1 and (method.pretext is not None or params.select.selection_method.subset):
        what = (f"train.method {params.train.method!r} is a pretext task (its loss is per worker, not gathered)"
                if method.pretext is not None else
                f"select.method {params.select.method!r} re-selects a coreset during training")
        raise ValueError(f"train.workers = {params.train.workers}: data-parallel training covers contrastive methods "
                         f"on every image; {what}; allowed with it: train.workers = 1")
    if params.train.workers > 1 and params.train.stream == "always":
        raise ValueError(f"train.stream = 'always': data-parallel workers (train.workers = {params.train.workers}) "
                         "take the training set in memory (the shard stream splits by rank, the workers need every "
                         "global batch); allowed with them: 'auto' or 'never'")
    if params.register.criterion.startswith("alf_") and not params.evaluate.alf:
        raise ValueError(f"register.criterion = {params.register.criterion!r} needs evaluate.alf = true")
