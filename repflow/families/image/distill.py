"""Dataset distillation with gradient matching (DC) and distribution matching (DM), in pixel space and
in a generator's latent space (GLaD), and the cross-architecture evaluation of a distilled set.

A distilled set is ``ipc`` synthetic images per class, learned so that a network trained on them alone
does well on the real test split. What is optimised is the *parameterisation*:

* :class:`PixelParam` — the pixels themselves (DC / DM as published);
* :class:`LatentParam` — the generator's input latents z, images = G(z, c);
* :class:`FeatureParam` — GLaD's choice: the feature map F_l after synthesis layer l and the style
  vectors w[:, l+1:] that render the rest, images = G_{l+1..}(F_l, w).

GLaD (Cazenavette et al., CVPR 2023) keeps any pixel-space loss and back-propagates it through the
frozen generator; its claim is that the generator's prior makes the distilled images generalise to
architectures they were not distilled with. At this scale the whole set is rendered with gradients
in one pass, so GLaD's chunked re-rendering (``gan_backward``) is not needed.

Conventions: images are float (N, C, H, W) in [0, 1] (uint8 inputs are divided by 255); a distilled
set is class-major, i.e. labels = [0]*ipc + [1]*ipc + ...; every random choice comes from an explicit
seed or ``torch.Generator``, so one seed gives the same result on CPU. Network initialisation uses a
forked global RNG and leaves the caller's RNG state untouched.
"""
from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from repflow.families.image.models.classifiers import build_classifier
from repflow.families.image.models.generator import ConditionalGenerator
from repflow.families.image.generative import truncated_normal
from repflow.progress import progress
from repflow.registry import Listed, Registry

__all__ = ["Augment", "dm_loss", "dc_loss", "gradient_distance", "Parameterization", "PixelParam", "LatentParam",
           "FeatureParam", "PIXEL_INITS", "initial_latents", "check_ipc", "check_compatible", "distill", "DISTILL_NET",
           "EVAL_ARCHITECTURES", "DEFAULT_LR", "random_real_subset", "generator_samples", "train_and_test",
           "evaluate_distilled", "summarize", "DistillLoss", "DISTILL_LOSSES", "DistillParam", "DISTILL_PARAMS"]


# ---------------------------------------------------------------- differentiable augmentation


@dataclass(frozen=True)
class Augment:
    """DSA-style differentiable augmentation (Zhao & Bilen, ICML 2021): one affine resampling that
    combines a random rotation (± ``rotate`` degrees), scale (factor in [1/(1+scale), 1+scale]) and
    shift (± ``shift`` of the image side), then additive Gaussian noise of std ``noise`` (image units).

    Gradients flow to the input images, which is what lets a distillation loss see augmented images.
    ``augment(x, g)`` draws one transform per image (training on a distilled set); ``augment.pair(real,
    syn, g)`` draws one transform and applies it to both batches ("siamese"), so that a loss compares
    real and synthetic images seen through the same transformation.
    """

    shift: float = 0.125
    scale: float = 0.2
    rotate: float = 15.0
    noise: float = 0.0

    def draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        """``n`` affine matrices (n, 2, 3) in ``F.affine_grid``'s normalised coordinates."""
        zoom = torch.exp((torch.rand(n, generator=g) * 2 - 1) * math.log1p(self.scale))
        angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(self.rotate)
        offset = (torch.rand(n, 2, generator=g) * 2 - 1) * 2 * self.shift  # the image spans [-1, 1]: width 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        return torch.stack([torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1)

    def apply(self, x: torch.Tensor, theta: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Resample ``x`` (N, C, H, W) with matrices ``theta`` (N, 2, 3); areas outside the image are 0."""
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.noise > 0:
            out = out + self.noise * torch.randn(out.shape, generator=g).to(out.device, out.dtype)
        return out

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.draw(len(x), g), g)

    def pair(self, real: torch.Tensor, syn: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.draw(1, g)
        return (self.apply(real, theta.expand(len(real), 2, 3), g),
                self.apply(syn, theta.expand(len(syn), 2, 3), g))


def _augmented_pairs(real_by_class: Sequence[torch.Tensor], syn_by_class: Sequence[torch.Tensor],
                     augment: Augment | None, g: torch.Generator | None):
    if len(real_by_class) != len(syn_by_class):
        raise ValueError(f"{len(real_by_class)} real classes but {len(syn_by_class)} synthetic classes")
    if augment is not None and g is None:
        raise ValueError("augmentation needs a torch.Generator g (it is what makes the result reproducible)")
    for real, syn in zip(real_by_class, syn_by_class):
        yield augment.pair(real, syn, g) if augment is not None else (real, syn)


# ---------------------------------------------------------------- losses


def dm_loss(embed_net: nn.Module, real_by_class: Sequence[torch.Tensor], syn_by_class: Sequence[torch.Tensor], *,
            augment: Augment | None = None, g: torch.Generator | None = None) -> torch.Tensor:
    """Distribution matching (Zhao & Bilen, WACV 2023, eq. 3): Σ_c ‖mean_i ψ(A(x_i^c)) − mean_j ψ(A(s_j^c))‖²,
    ψ = ``embed_net`` (output flattened), A = siamese augmentation per class.

    ``real_by_class[c]`` / ``syn_by_class[c]``: images of class c (any batch sizes). The real branch
    runs without gradients; the loss is differentiable in the synthetic images. All classes go through
    ψ in one batch, which equals per-class passes for the instance-normalised distillation ConvNet.
    """
    reals, syns = zip(*_augmented_pairs(real_by_class, syn_by_class, augment, g))
    with torch.no_grad():
        real_means = [e.mean(0) for e in embed_net(torch.cat(reals)).flatten(1).split([len(r) for r in reals])]
    syn_means = [e.mean(0) for e in embed_net(torch.cat(syns)).flatten(1).split([len(s) for s in syns])]
    return sum(((r - s) ** 2).sum() for r, s in zip(real_means, syn_means))


def gradient_distance(real_grads: Sequence[torch.Tensor], syn_grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """DC's layer-wise distance (Zhao et al., ICLR 2021, eq. 10): for every weight tensor, the sum over
    output units of 1 − cos between the real and synthetic gradient rows (the tensor reshaped to
    (out, −1)). Biases and normalisation scales (1-D tensors) are left out, as in DC; rows whose real
    gradient is exactly zero carry no direction to match and are left out too."""
    total = torch.zeros((), device=syn_grads[0].device)
    for real, syn in zip(real_grads, syn_grads):
        if real.dim() < 2:
            continue
        a, b = real.reshape(len(real), -1), syn.reshape(len(syn), -1)
        norm_a, norm_b = a.norm(dim=1), b.norm(dim=1)
        cos = (a * b).sum(1) / (norm_a * norm_b).clamp_min(1e-20)
        total = total + (1 - cos)[norm_a > 0].sum()
    return total


def dc_loss(net: nn.Module, real_by_class: Sequence[torch.Tensor], syn_by_class: Sequence[torch.Tensor], *,
            augment: Augment | None = None, g: torch.Generator | None = None) -> torch.Tensor:
    """Gradient matching (DC, eq. 9 with DSA): Σ_c D(∇_θ CE(net(A(real_c)), c), ∇_θ CE(net(A(syn_c)), c)),
    D = :func:`gradient_distance`, θ = the net's trainable parameters. Differentiable in the synthetic
    images (second-order through the synthetic gradient)."""
    params = [p for p in net.parameters() if p.requires_grad]
    total = torch.zeros((), device=params[0].device)
    for c, (real, syn) in enumerate(_augmented_pairs(real_by_class, syn_by_class, augment, g)):
        y_real = torch.full((len(real),), c, dtype=torch.long, device=real.device)
        y_syn = torch.full((len(syn),), c, dtype=torch.long, device=syn.device)
        real_grads = [t.detach() for t in torch.autograd.grad(F.cross_entropy(net(real), y_real), params)]
        syn_grads = torch.autograd.grad(F.cross_entropy(net(syn), y_syn), params, create_graph=True)
        total = total + gradient_distance(real_grads, syn_grads)
    return total


# ---------------------------------------------------------------- parameterisations


def _as_unit_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


def check_ipc(labels: torch.Tensor, ipc: int, num_classes: int) -> None:
    """ValueError unless every class 0..num_classes−1 has at least ``ipc`` (≥ 1) images in ``labels``."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes)
    smallest = int(counts.argmin())
    allowed = f"allowed: 1..{int(counts[smallest])}" if counts[smallest] > 0 else "no ipc fits"
    if ipc < 1 or ipc > counts[smallest]:
        raise ValueError(f"ipc {ipc} does not fit the data: the smallest class (class {smallest}) has "
                         f"{int(counts[smallest])} images; {allowed}")


def initial_latents(generator: ConditionalGenerator, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The starting latents of a generator-based distilled set: z (K·ipc, z_dim) from a truncated
    normal (|z| ≤ 2, as the generate stage samples) seeded by ``seed``, and class-major classes c."""
    if ipc < 1:
        raise ValueError(f"ipc {ipc}: need at least one image per class")
    g = torch.Generator().manual_seed(seed)
    z = truncated_normal((generator.num_classes * ipc, generator.z_dim), g)
    return z, torch.arange(generator.num_classes).repeat_interleave(ipc)


class Parameterization(nn.Module):
    """What a distillation optimises. ``images()`` renders the set, (K·ipc, C, H, W) in [0, 1], with
    gradients; ``labels`` is class-major; ``groups()`` names the optimised tensors (each name gets its
    own learning rate); ``project()`` runs after every optimiser step to keep the set valid."""

    kind = "base"

    def __init__(self, num_classes: int, ipc: int, image_shape: Sequence[int]):
        super().__init__()
        self.num_classes, self.ipc, self.image_shape = int(num_classes), int(ipc), tuple(image_shape)
        self.register_buffer("labels", torch.arange(self.num_classes).repeat_interleave(self.ipc))

    def images(self) -> torch.Tensor:
        raise NotImplementedError

    def groups(self) -> dict[str, list[nn.Parameter]]:
        raise NotImplementedError

    def project(self) -> None:
        pass

    def by_class(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Split a rendered set into K tensors of (ipc, C, H, W)."""
        return list(images.view(self.num_classes, self.ipc, *images.shape[1:]).unbind(0))

    @torch.no_grad()
    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) detached on CPU: the distilled set as data, copied, so that further distillation
        steps (which update pixels in place) do not change a snapshot taken mid-run."""
        return self.images().detach().cpu().clone(), self.labels.cpu().clone()


class PixelParam(Parameterization):
    """The pixels are the parameters (DC / DM as published); kept in [0, 1] by clipping after each step."""

    kind = "pixel"

    def __init__(self, initial: torch.Tensor, num_classes: int):
        if len(initial) % num_classes:
            raise ValueError(f"{len(initial)} initial images do not split into {num_classes} equal classes")
        super().__init__(num_classes, len(initial) // num_classes, initial.shape[1:])
        self.pixels = nn.Parameter(_as_unit_float(initial).clone())

    @classmethod
    def from_real(cls, images: torch.Tensor, labels: torch.Tensor, ipc: int, seed: int,
                  num_classes: int | None = None) -> "PixelParam":
        """Start from ``ipc`` random real images per class (the usual DC / DM initialisation)."""
        subset, _ = random_real_subset(images, labels, ipc, seed, num_classes)
        return cls(subset, num_classes or int(labels.max()) + 1)

    @classmethod
    def from_noise(cls, image_shape: Sequence[int], num_classes: int, ipc: int, seed: int,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> "PixelParam":
        """Start from noise: uniform in [0, 1], or with per-channel ``mean`` and ``std`` (image units) Gaussian
        noise clipped to [0, 1] — GLaD's and DM's default start (``pix_init noise``: N(0, 1) in the
        dataset-normalised units the networks see)."""
        g = torch.Generator().manual_seed(seed)
        shape = (num_classes * ipc, *image_shape)
        if mean is None and std is None:
            return cls(torch.rand(shape, generator=g), num_classes)
        if mean is None or std is None:
            raise ValueError("Gaussian noise needs both mean and std (per channel); give neither for uniform noise")
        centre = torch.as_tensor(mean, dtype=torch.float).view(-1, 1, 1)
        spread = torch.as_tensor(std, dtype=torch.float).view(-1, 1, 1)
        return cls((centre + spread * torch.randn(shape, generator=g)).clamp(0, 1), num_classes)

    @classmethod
    def from_generator(cls, generator: ConditionalGenerator, ipc: int, seed: int) -> "PixelParam":
        """Start from the generator's samples for ``seed``: exactly the initial images of
        :class:`LatentParam` / :class:`FeatureParam` with the same seed, so pixel and latent
        distillation can be compared from one starting set."""
        images, _ = generator_samples(generator, ipc, seed)
        return cls(images, generator.num_classes)

    def images(self) -> torch.Tensor:
        return self.pixels

    def groups(self) -> dict[str, list[nn.Parameter]]:
        return {"pixels": [self.pixels]}

    @torch.no_grad()
    def project(self) -> None:
        self.pixels.clamp_(0.0, 1.0)


class _GeneratorParam(Parameterization):
    """Holds a frozen private copy of the generator, so the caller's module is never modified."""

    def __init__(self, generator: ConditionalGenerator, ipc: int):
        super().__init__(generator.num_classes, ipc, generator.out_shape)
        self.generator = copy.deepcopy(generator).eval().requires_grad_(False)


class LatentParam(_GeneratorParam):
    """Optimise the generator's input latents z; images = G(z, c) (GLaD's simplest latent space)."""

    kind = "latent"

    def __init__(self, generator: ConditionalGenerator, ipc: int, seed: int):
        super().__init__(generator, ipc)
        z, _ = initial_latents(generator, ipc, seed)
        self.z = nn.Parameter(z)

    def images(self) -> torch.Tensor:
        return self.generator(self.z, self.labels)

    def groups(self) -> dict[str, list[nn.Parameter]]:
        return {"latents": [self.z]}


class FeatureParam(_GeneratorParam):
    """GLaD: optimise the feature map F_l = G_{..l}(w) after synthesis layer ``layer`` and the style
    vectors w[:, l+1:] that the remaining layers read; images = G.render_from(F_l, w, l). Both start at
    the values of w = mapping(z, c) for the seeded z, so the initial images are exactly G(z, c).

    F_l: (K·ipc, channels, h_l, w_l); styles: (K·ipc, num_layers − l − 1, w_dim). Earlier layers give
    a more expressive (closer to pixels) space, later layers a stronger prior."""

    kind = "feature"

    def __init__(self, generator: ConditionalGenerator, ipc: int, layer: int, seed: int):
        if layer not in generator.layers:
            raise ValueError(f"layer {layer!r} is not a layer of the generator; valid layers: {generator.layers}")
        super().__init__(generator, ipc)
        self.layer = int(layer)
        z, c = initial_latents(generator, ipc, seed)
        with torch.no_grad():
            w = self.generator.mapping(z, c)
            feat = self.generator.features(w, self.layer)
        self.features = nn.Parameter(feat.clone())
        self.styles = nn.Parameter(w[:, self.layer + 1:].clone())
        self.register_buffer("fixed_styles", w[:, :self.layer + 1].clone())

    def images(self) -> torch.Tensor:
        return self.generator.render_from(self.features, torch.cat([self.fixed_styles, self.styles], 1), self.layer)

    def groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"features": [self.features]}
        if self.styles.numel():
            groups["styles"] = [self.styles]
        return groups


def check_compatible(param: Parameterization, images: torch.Tensor, labels: torch.Tensor) -> None:
    """ValueError when the data cannot be distilled into ``param``: other classes, another image shape,
    or fewer real images in some class than the set has per class."""
    data_classes = int(labels.max()) + 1 if len(labels) else 0
    what = "generator was trained on" if isinstance(param, _GeneratorParam) else "distilled set has"
    if data_classes != param.num_classes:
        raise ValueError(f"the {what} {param.num_classes} classes, the data has {data_classes} "
                         f"(labels 0..{data_classes - 1}); they must be the same")
    if tuple(images.shape[1:]) != param.image_shape:
        raise ValueError(f"the data has images of shape {tuple(images.shape[1:])}, the distilled set "
                         f"{param.image_shape}; they must be the same")
    check_ipc(labels, param.ipc, param.num_classes)


@dataclass(frozen=True, kw_only=True)
class DistillParam(Listed):
    """A parameterisation ``distill.param`` names. ``build(images, labels, generator, *, ipc, seed, **options)``
    starts the set from the real training split (uint8 (N, C, H, W), labels (N,)) or the frozen generator;
    ``options`` names the further ``distill`` params it reads (passed as keywords of the same names)."""

    build: Callable[..., Parameterization]
    options: tuple[str, ...] = ()


PIXEL_INITS = ("real", "noise", "generator")
"""Where pixel distillation starts: random real images (DC / DM's usual choice), Gaussian noise with the
data's per-channel mean and std (GLaD's default), or the generator's samples (the latent arms' start)."""


def _pixels(images: torch.Tensor, labels: torch.Tensor, generator: ConditionalGenerator, *, ipc: int,
            seed: int, pixel_init: str = "real") -> Parameterization:
    if pixel_init == "real":
        return PixelParam.from_real(images, labels, ipc, seed=seed)
    if pixel_init == "generator":
        return PixelParam.from_generator(generator, ipc, seed=seed)
    if pixel_init == "noise":
        unit = _as_unit_float(images).transpose(0, 1).flatten(1)
        return PixelParam.from_noise(images.shape[1:], int(labels.max()) + 1, ipc, seed=seed,
                                     mean=unit.mean(1).tolist(), std=unit.std(1).tolist())
    raise ValueError(f"pixel_init {pixel_init!r} unknown; allowed: {list(PIXEL_INITS)}")


def _latents(images: torch.Tensor, labels: torch.Tensor, generator: ConditionalGenerator, *, ipc: int,
             seed: int) -> Parameterization:
    return LatentParam(generator, ipc, seed=seed)


def _features(images: torch.Tensor, labels: torch.Tensor, generator: ConditionalGenerator, *, ipc: int, seed: int,
              layer: int) -> Parameterization:
    return FeatureParam(generator, ipc, layer=layer, seed=seed)


_GLAD = "Cazenavette et al. 2023, 'Generalizing Dataset Distillation via Deep Generative Prior' (CVPR)"

DISTILL_PARAMS: Registry[DistillParam] = Registry("distillation parameterisation")
DISTILL_PARAMS.register("pixel", DistillParam(
    build=_pixels, options=("pixel_init",),
    paper="Zhao et al. 2021 (DC) / Zhao & Bilen 2023 (DM): the pixels, as published",
    summary="the synthetic pixels, started from real images, noise or generator samples, clipped to [0, 1]"))
DISTILL_PARAMS.register("latent", DistillParam(
    build=_latents, paper=_GLAD, summary="the generator's input latents z; images = G(z, c)"))
DISTILL_PARAMS.register("feature", DistillParam(
    build=_features, options=("layer",), paper=_GLAD,
    summary="GLaD: an intermediate feature map of the generator and the styles after it"))


# ---------------------------------------------------------------- the distillation loop

DISTILL_NET: dict[str, Any] = {"arch": "convnet", "width": 16, "depth": 3, "norm": "instance"}
"""The distillation ConvNet: depth 3 × [conv → instance norm → ReLU → avg-pool]. DC / DM / GLaD use width
128; 16 keeps a distillation on 28×28 images to seconds per hundred iterations on two CPU cores."""

DEFAULT_LR: dict[str, dict[str, float]] = {
    "dm": {"pixels": 0.1, "latents": 0.3, "features": 10.0, "styles": 0.1},
    "dc": {"pixels": 0.03, "latents": 0.03, "features": 1.0, "styles": 0.01},
}
"""SGD (momentum 0.5, as GLaD) learning rates per optimised group and loss, for images in [0, 1] and the
generate stage's generator. Chosen on Fashion-MNIST's validation split (cross-architecture accuracy,
150 DM / 60 DC iterations, a 5-point grid ×0.1..×10 per parameterisation); other data or iteration
counts may want others. As in GLaD, the style vectors move 100× slower than the feature map."""


def _seeded_net(config: Mapping[str, Any], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_classifier(dict(config))


def _draw_seed(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g))


def _embedding(net: nn.Module) -> nn.Module:
    """The classifier up to (not including) its final layer: DM's feature extractor ψ."""
    front, _ = net.split(net.layer_names[-2])
    return front


def _dm_match(net: nn.Module, real_by_class: Sequence[torch.Tensor], syn_by_class: Sequence[torch.Tensor], *,
              augment: Augment | None, g: torch.Generator) -> torch.Tensor:
    return dm_loss(_embedding(net), real_by_class, syn_by_class, augment=augment, g=g)


@dataclass(frozen=True, kw_only=True)
class DistillLoss(Listed):
    """A matching loss ``distill.loss`` names. ``match(net, real_by_class, syn_by_class, augment=, g=)`` is
    the loss for one freshly initialised distillation network. ``bilevel``: the network is trained on the
    synthetic set between matching steps (DC's outer/inner loop); otherwise it stays random and frozen
    for one matching step per iteration (DM). ``lr``: SGD learning rate per optimised group."""

    match: Callable[..., torch.Tensor]
    lr: Mapping[str, float] = field(default_factory=dict)
    bilevel: bool = False


DISTILL_LOSSES: Registry[DistillLoss] = Registry("distillation loss")
DISTILL_LOSSES.register("dm", DistillLoss(
    match=_dm_match, lr=DEFAULT_LR["dm"],
    paper="Zhao & Bilen 2023, 'Dataset Condensation with Distribution Matching' (WACV)",
    summary="distribution matching: per-class mean embeddings of a random network, real vs synthetic"))
DISTILL_LOSSES.register("dc", DistillLoss(
    match=dc_loss, lr=DEFAULT_LR["dc"], bilevel=True,
    paper="Zhao et al. 2021, 'Dataset Condensation with Gradient Matching' (ICLR)",
    summary="gradient matching: per-class layer-wise cosine distance of the network's gradients"))


def distill(param: Parameterization, real_images: torch.Tensor, real_labels: torch.Tensor, *, loss: str = "dm",
            iterations: int = 200, lr: Mapping[str, float] | None = None, momentum: float = 0.5,
            real_per_class: int = 32, net_config: Mapping[str, Any] | None = None,
            augment: Augment | None = Augment(), outer_loop: int = 1, inner_steps: int = 1, lr_net: float = 0.01,
            seed: int = 0, on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Optimise ``param`` in place so its images distil (``real_images``, ``real_labels``).

    Every iteration samples a freshly initialised distillation network (``net_config``, default
    :data:`DISTILL_NET`) and ``real_per_class`` real images of each class, renders the synthetic set
    and takes one SGD step on the loss ``loss`` (a name in :data:`DISTILL_LOSSES`):

    * ``"dm"``: :func:`dm_loss` with the network's embedding as ψ (a random, untrained network);
    * ``"dc"``: :func:`dc_loss`; with ``outer_loop`` > 1 the network is trained for ``inner_steps``
      SGD steps (lr ``lr_net``) on the synthetic set between the ``outer_loop`` matching steps (DC's
      bi-level loop; GLaD's DC uses 1 and 1).

    ``real_images``: (N, C, H, W), uint8 or float in [0, 1]; ``real_labels`` (N,) in 0..K−1.
    ``lr``: per group name (see ``param.groups()``), defaults the loss's (:data:`DEFAULT_LR`). The same ``seed``
    gives the same networks, batches and augmentations. ``on_step(row)`` sees each history row.
    Returns the history: one {"iteration", "loss"} per iteration (the last matching loss).
    """
    method = DISTILL_LOSSES[loss]
    check_compatible(param, real_images, real_labels)
    device = param.labels.device
    k = param.num_classes
    rates = {**method.lr, **(lr or {})}
    opt = torch.optim.SGD([{"params": tensors, "lr": rates[name]} for name, tensors in param.groups().items()],
                          lr=0.0, momentum=momentum)
    config = {**(net_config or DISTILL_NET), "in_shape": list(param.image_shape), "num_classes": k}
    real = _as_unit_float(real_images).to(device)
    pools = [real[real_labels.to(device) == c] for c in range(k)]
    g = torch.Generator().manual_seed(seed)

    def real_batch() -> list[torch.Tensor]:
        return [pool[torch.randperm(len(pool), generator=g)[:real_per_class].to(device)] for pool in pools]

    def step(value: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        value.backward(inputs=[t for group in opt.param_groups for t in group["params"]])
        opt.step()
        param.project()

    history: list[dict] = []
    for iteration in progress(range(iterations), desc=f"distill {param.kind} ({loss})", unit="iter"):
        net = _seeded_net(config, _draw_seed(g)).to(device)
        if not method.bilevel:
            net.requires_grad_(False)
            value = method.match(net, real_batch(), param.by_class(param.images()), augment=augment, g=g)
            step(value)
        else:
            for outer in range(outer_loop):
                value = method.match(net, real_batch(), param.by_class(param.images()), augment=augment, g=g)
                step(value)
                if outer < outer_loop - 1:
                    _fit(net, param.images().detach(), param.labels, steps=inner_steps, lr=lr_net,
                         batch_size=len(param.labels), augment=augment, g=g)
        history.append({"iteration": iteration + 1, "loss": value.item()})
        if on_step is not None:
            on_step(history[-1])
    return history


# ---------------------------------------------------------------- baselines


def random_real_subset(images: torch.Tensor, labels: torch.Tensor, ipc: int, seed: int,
                       num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``ipc`` random real images per class (the coreset baseline): float images in [0, 1], class-major."""
    k = num_classes or int(labels.max()) + 1
    check_ipc(labels, ipc, k)
    g = torch.Generator().manual_seed(seed)
    idx = [torch.nonzero(labels.cpu() == c).flatten() for c in range(k)]
    picks = torch.cat([i[torch.randperm(len(i), generator=g)[:ipc]] for i in idx])
    return _as_unit_float(images[picks.to(images.device)]), torch.arange(k).repeat_interleave(ipc)


@torch.no_grad()
def generator_samples(generator: ConditionalGenerator, ipc: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Generator samples without optimisation: exactly the initial set of :class:`LatentParam` /
    :class:`FeatureParam` with the same seed. Float images in [0, 1] and labels, class-major, on CPU."""
    return LatentParam(generator, ipc, seed).snapshot()


# ---------------------------------------------------------------- cross-architecture evaluation

EVAL_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "convnet": dict(DISTILL_NET),
    "mlp": {"arch": "mlp", "width": 256, "depth": 2},
    "convnet-bn": {**DISTILL_NET, "norm": "batch"},
    "resnet": {"arch": "resnet", "width": 8},
}
"""The evaluation pool: the distillation ConvNet itself (same-architecture), an MLP (no convolution),
the ConvNet with batch instead of instance normalisation, and a ResNet-8 (batch norm, residual blocks,
global pooling; stage widths 8/16/32). Sized, like :data:`DISTILL_NET`, for CPU minutes."""


def _fit(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, steps: int, lr: float, batch_size: int,
         augment: Augment | None, g: torch.Generator, weight_decay: float = 5e-4) -> None:
    """SGD (momentum 0.9) on a small in-memory set, ``steps`` mini-batches, lr × 0.1 after half."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    net.train()
    order = torch.empty(0, dtype=torch.long)
    for step in range(steps):
        if step == steps // 2 and steps > 1:
            for group in opt.param_groups:
                group["lr"] = lr * 0.1
        if len(order) == 0:
            order = torch.randperm(len(images), generator=g)
        idx, order = order[:batch_size], order[batch_size:]
        x = images[idx.to(images.device)]
        x = augment(x, g) if augment is not None else x
        loss = F.cross_entropy(net(x), labels[idx.to(labels.device)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def _accuracy(net: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, device, batch_size: int = 1000) -> float:
    net.eval()
    correct = 0
    for start in range(0, len(x_test), batch_size):
        x = _as_unit_float(x_test[start:start + batch_size]).to(device)
        correct += int((net(x).argmax(1).cpu() == y_test[start:start + batch_size].cpu()).sum())
    return correct / len(x_test)


def train_and_test(config: Mapping[str, Any], images: torch.Tensor, labels: torch.Tensor, x_test: torch.Tensor,
                   y_test: torch.Tensor, *, seed: int, epochs: int, lr: float = 0.01, batch_size: int = 256,
                   augment: Augment | None = Augment(), device: torch.device | str = "cpu") -> float:
    """Train a fresh ``build_classifier(config)`` on a (distilled) set and return its accuracy on the
    test split. A plain function of tensors, so it can run as one remote task per (architecture, seed).

    ``config``: a classifier config; ``in_shape`` and ``num_classes`` default to the set's. Training:
    ``epochs`` passes over the set in mini-batches of ``batch_size`` (one step per epoch when the set is
    smaller), SGD momentum 0.9, weight decay 5e-4, lr × 0.1 after half (DC's evaluation schedule), with
    per-image augmentation. ``seed`` fixes the initialisation, batches and augmentation.
    """
    full = {"in_shape": list(images.shape[1:]), "num_classes": int(labels.max()) + 1, **config}
    net = _seeded_net(full, seed).to(device)
    x, y = _as_unit_float(images).to(device), labels.to(device)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(x) / batch_size)
    _fit(net, x, y, steps=steps, lr=lr, batch_size=batch_size, augment=augment, g=g)
    return _accuracy(net, x_test, y_test, device)


def evaluate_distilled(images: torch.Tensor, labels: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                       archs: Mapping[str, Mapping[str, Any]] | None = None, seeds: Sequence[int] = (0, 1, 2),
                       epochs: int = 300, lr: float = 0.01, batch_size: int = 256, augment: Augment | None = Augment(),
                       device: torch.device | str = "cpu") -> list[dict]:
    """Cross-architecture evaluation: :func:`train_and_test` for every architecture in ``archs``
    (default :data:`EVAL_ARCHITECTURES`) and seed. Returns rows {"arch", "seed", "test_acc"}."""
    jobs = [(name, config, seed) for name, config in (archs or EVAL_ARCHITECTURES).items() for seed in seeds]
    rows = []
    for name, config, seed in progress(jobs, desc="evaluate distilled set", unit="net"):
        acc = train_and_test(config, images, labels, x_test, y_test, seed=seed, epochs=epochs, lr=lr,
                             batch_size=batch_size, augment=augment, device=device)
        rows.append({"arch": name, "seed": seed, "test_acc": acc})
    return rows


def summarize(rows: Sequence[Mapping[str, Any]], same_arch: str = "convnet") -> dict[str, Any]:
    """Same-architecture accuracy (mean over seeds of ``same_arch``) and the cross-architecture mean
    (the mean over the other architectures of their mean over seeds, GLaD's "Avg_Cross")."""
    per_arch: dict[str, list[float]] = {}
    for row in rows:
        per_arch.setdefault(row["arch"], []).append(float(row["test_acc"]))
    if same_arch not in per_arch:
        raise ValueError(f"no rows for the same-architecture net {same_arch!r}; rows have {sorted(per_arch)}")
    means = {arch: statistics.fmean(v) for arch, v in per_arch.items()}
    others = [m for arch, m in means.items() if arch != same_arch]
    return {"same_arch": means[same_arch], "cross_arch": statistics.fmean(others) if others else float("nan"),
            "per_arch": means}
