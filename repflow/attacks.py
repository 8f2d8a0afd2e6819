"""Adversarial attacks on classifiers that take inputs in [0, 1], and SVD logit fusion (SVD-SSA).

Contract (as in torchattacks): ``attack = PGD(model, eps=..., ...)``; ``x_adv = attack(x, y)``, or by
name: ``make_attack("ssa", model, eps=0.1, svd={"layer": "block2"})(x, y)``. Images are float
(N, C, H, W) in [0, 1]; every x_adv lies in the ε-ball around x (ℓ∞ or ℓ2) and in [0, 1]. The model
is put in eval mode for the attack and every submodule's previous mode is restored afterwards. All
randomness (random start, input transforms, power-iteration starts) comes from ``torch.Generator``s
seeded by ``seed``, so results are reproducible on CPU; on a GPU the draws come from a generator on that
device (same seed), so no step waits for a host-to-device copy.

Speed: the model's parameters are frozen (``requires_grad=False``) while an attack runs, since only
∇_x is wanted; on a CPU the gradient is taken 64 images per pass (``IterativeAttack.pass_images``), so
that each layer's activations stay in the last-level cache; ``compile=True`` runs the model through ``torch.compile``
(about 1.3–1.5× on a small CNN on CPU, after a compile of several seconds on the first batch, so it pays
for whole evaluations, not for one batch). On a GPU, SSA's spectrum copies go through the model as one
batch.

One iterative core serves every attack; each step is

    g_t   = (1/copies) Σ_k ∇_x CE(f(T_k(x_t)), y)       T: identity, DI resize+pad, or SSA spectrum copy
    g_t   = W * g_t                                     TI: Gaussian smoothing of the gradient
    m_t   = μ m_{t-1} + g_t / mean|g_t|                 MI-FGSM momentum (only when μ = decay > 0)
    x_t+1 = Proj_{B_p(x, ε) ∩ [0,1]}(x_t + α · step_p(m_t))   step_∞ = sign, step_2 = v / ‖v‖₂
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.progress import progress
from repflow.registry import Registry

__all__ = ["ATTACKS", "DI", "FGSM", "MIFGSM", "PGD", "PGDL2", "SSA", "TI", "IterativeAttack", "SVDLogitFusion",
           "accuracy", "attack_success_rate", "dct_2d", "dct_matrix", "gaussian_kernel", "idct_2d", "make_attack",
           "rank1_ablation_accuracy", "rank1_approximation", "robust_accuracy"]

NORMS = ("linf", "l2")
_TINY = 1e-12

ATTACKS: Registry[type[IterativeAttack]] = Registry("attack")
"""The attacks ``transfer.attacks`` and :func:`make_attack` name; each class carries ``paper`` and ``summary``."""


class IterativeAttack:
    """The shared iterative core (see the module docstring); on its own it is I-FGSM (ℓ∞) or its ℓ2 twin.

    ``eps``: radius of the ε-ball (pixel units of [0, 1] images; ℓ2 radius over the whole image for
    ``norm="l2"``). ``alpha``: step size, default ``alpha_factor · eps / steps``. ``decay``: momentum μ
    (0 = none). Subclasses change ``transform_input`` (applied ``copies`` times per step before the
    forward pass) and ``smooth_gradient``.
    """

    alpha_factor = 1.0
    copies = 1
    pass_images = {"cpu": 64, "other": 8192}
    """Most images the model sees per forward and backward pass: ``copies`` transformed copies are stacked
    while they fit, and a batch larger than this is split into chunks (the transforms still see the whole
    batch, so their random draws do not change). On a GPU one pass per copy is what makes SSA slow. On a
    CPU the chunk size trades cache misses against per-pass costs. The zoo ConvNet holds about 100 kB
    per 28×28 image per layer: one 256-image pass streams each activation (26 MB) past the 32 MiB
    last-level cache, 64 images (6.4 MB a layer) stay in it. Smaller passes fit no better (the L2 is
    512 KiB a core; 16 images are 1.6 MB), and each pass pays operator dispatch and autograd set-up for
    every layer and runs the convolutions and average pools on small batches: forward and backward took
    2.34 ms of CPU per image in passes of 16 images against 1.62 ms in passes of 64 (torch.profiler, self
    CPU summed over operators, 1 thread, load 10). PGD-10 on 256 images, CPU seconds per call at load
    10–15 on 2 cores, paired with torchattacks' one pass (medians over 4–5 rounds): 16 images per pass
    1.06–1.21× torchattacks' throughput, 32: 1.19–1.28×, 64: 1.33–1.68×, 128: 1.38×. Every pass size gave
    bitwise the same adversarial examples there; in general they agree up to float rounding, since the
    attacked model is in eval mode, where no layer mixes images. (A channels-last input made the average
    pools 15× faster but the instance norms over 10× slower: 1.5× the time in all.)"""
    draws_on_device = True
    """Random starts and SSA's spectrum noise come from a generator on the input's device (seeded like the
    CPU one; no host-to-device copy per draw). Set False on an instance to draw them from the CPU generator
    and copy them over, so that a GPU run sees exactly the CPU run's draws (the GPU check compares the two)."""
    paradigm: str | None = None
    paper = ""
    summary = ""

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 norm: str = "linf", random_start: bool = False, decay: float = 0.0, seed: int = 0,
                 compile: bool = False):
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r} unknown; allowed: {list(NORMS)}")
        if alpha is not None and not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if decay < 0:
            raise ValueError(f"decay must be >= 0, got {decay}")
        self.model, self.eps, self.steps, self.norm = model, float(eps), int(steps), norm
        self.alpha = float(alpha) if alpha is not None else self.alpha_factor * self.eps / self.steps
        self.random_start, self.decay = bool(random_start), float(decay)
        self.generator = torch.Generator().manual_seed(seed)
        self._device_generators: dict[torch.device, torch.Generator] = {}
        self.compile = bool(compile)
        self._forward: Callable[[torch.Tensor], torch.Tensor] = model
        if self.compile:
            self._forward = torch.compile(model, dynamic=False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        modes = [(module, module.training) for module in self.model.modules()]
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.model.eval()
        for p in trainable:
            p.requires_grad_(False)
        try:
            return self.perturb(x.detach(), y)
        finally:
            for module, training in modes:
                module.training = training
            for p in trainable:
                p.requires_grad_(True)

    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def smooth_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad

    def loss_gradient(self, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∇_x of the summed cross-entropy, averaged over ``copies`` transformed copies of ``x_adv``.

        The copies are drawn in order and stacked along the batch axis, up to ``pass_images`` images per
        pass, so their random draws (and the gradient) are those of one copy at a time. The model's part
        of the gradient is taken chunk by chunk (:meth:`input_gradient`), then carried back through the
        transforms in one backward pass."""
        limit = self.pass_images["cpu" if x_adv.device.type == "cpu" else "other"]
        per_pass = max(1, min(self.copies, limit // max(len(x_adv), 1)))
        source = x_adv.detach()
        if type(self).transform_input is not IterativeAttack.transform_input:
            source.requires_grad_(True)
        total = None
        for start in range(0, self.copies, per_pass):
            count = min(per_pass, self.copies - start)
            inputs = [self.transform_input(source) for _ in range(count)]
            batch, labels = (inputs[0], y) if count == 1 else (torch.cat(inputs), y.repeat(count))
            grad = self.input_gradient(batch.detach(), labels, limit)
            if batch is not source:
                (grad,) = torch.autograd.grad(batch, source, grad)
            total = grad if total is None else total.add_(grad)
        return total.div_(self.copies) if self.copies > 1 else total

    def input_gradient(self, batch: torch.Tensor, labels: torch.Tensor, limit: int) -> torch.Tensor:
        """∇ of Σ CE(f(batch), labels) with respect to ``batch`` (N, C, H, W), ``limit`` images per pass."""
        if len(batch) <= limit:
            chunks = [(slice(None), batch.detach().requires_grad_(True))]
        else:
            chunks = [(slice(start, start + limit), batch[start:start + limit].detach().requires_grad_(True))
                      for start in range(0, len(batch), limit)]
        grad = torch.empty_like(batch) if len(chunks) > 1 else None
        for rows, chunk in chunks:
            loss = F.cross_entropy(self._forward(chunk), labels[rows], reduction="sum")
            (part,) = torch.autograd.grad(loss, chunk)
            if grad is None:
                return part
            grad[rows] = part
        return grad

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        box = self.feasible_box(x)
        x_adv = self.project(x + self.random_offset(x), x, box) if self.random_start else x.clone()
        momentum = torch.zeros_like(x)
        for _ in range(self.steps):
            grad = self.smooth_gradient(self.loss_gradient(x_adv, y))
            with torch.no_grad():
                if self.decay > 0:
                    grad = momentum.mul_(self.decay).add_(grad / (_per_sample(grad.abs(), "mean") + _TINY))
                if self.norm == "linf":
                    x_adv = x_adv + self.alpha * grad.sign()
                else:
                    x_adv = x_adv + self.alpha * grad / (_per_sample(grad.square(), "sum").sqrt() + _TINY)
                x_adv = self.project(x_adv, x, box)
        return x_adv.detach()

    def _generator_for(self, x: torch.Tensor) -> torch.Generator:
        if not self.draws_on_device:
            return self.generator
        return _generator_on(x.device, self.generator, self._device_generators)

    def _draw(self, sampler: Callable[..., torch.Tensor], shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        """``sampler`` (``torch.rand`` / ``torch.randn``) of ``shape`` from :meth:`_generator_for`, on x's device."""
        g = self._generator_for(x)
        return sampler(shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)

    def random_offset(self, x: torch.Tensor) -> torch.Tensor:
        """A random start: uniform in the ℓ∞ cube, or a uniform direction at a uniform radius for ℓ2."""
        if self.norm == "linf":
            return (self._draw(torch.rand, x.shape, x) * 2 - 1) * self.eps
        direction = self._draw(torch.randn, x.shape, x)
        direction /= _per_sample(direction.square(), "sum").sqrt() + _TINY
        radius = self._draw(torch.rand, (len(x),) + (1,) * (x.dim() - 1), x) * self.eps
        return direction * radius

    def feasible_box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel (lower, upper) bounds of [0, 1] ∩ (the ℓ∞ ball, or nothing more for ℓ2)."""
        if self.norm == "linf":
            return (x - self.eps).clamp_(min=0), (x + self.eps).clamp_(max=1)
        return torch.zeros_like(x), torch.ones_like(x)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, box: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Nearest point of B(x, ε) ∩ [0, 1] (ℓ∞: clip to ``box``); ℓ2: radial shrink into the ball, then
        clip to [0, 1], which only moves pixels towards x and so stays in the ball."""
        if self.norm == "l2":
            delta = x_adv - x
            length = _per_sample(delta.square(), "sum").sqrt()
            x_adv = x + delta * (self.eps / (length + _TINY)).clamp(max=1.0)
        return torch.clamp(x_adv, min=box[0], max=box[1])


def _generator_on(device: torch.device, cpu_generator: torch.Generator,
                  cache: dict[torch.device, torch.Generator]) -> torch.Generator:
    """The seeded generator on ``device``: CPU draws stay reproducible, GPU draws need no host-to-device
    copy (which would stall the queue at every call). Other devices get a generator seeded like
    ``cpu_generator``, created once and kept in ``cache``."""
    if device.type == "cpu":
        return cpu_generator
    if device not in cache:
        cache[device] = torch.Generator(device=device).manual_seed(cpu_generator.initial_seed())
    return cache[device]


def _per_sample(values: torch.Tensor, reduce: str) -> torch.Tensor:
    """Sum or mean over all but the batch axis, kept broadcastable against (N, C, H, W)."""
    dims = tuple(range(1, values.dim()))
    return values.sum(dims, keepdim=True) if reduce == "sum" else values.mean(dims, keepdim=True)


@ATTACKS.register("fgsm")
class FGSM(IterativeAttack):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ε (ℓ2: ε along ∇/‖∇‖₂)."""

    paper = "Goodfellow et al. 2015, 'Explaining and Harnessing Adversarial Examples' (ICLR)"
    summary = "one signed-gradient step of size ε"

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", seed: int = 0, compile: bool = False):
        super().__init__(model, eps=eps, alpha=eps, steps=1, norm=norm, seed=seed, compile=compile)


@ATTACKS.register("pgd")
class PGD(IterativeAttack):
    """Projected gradient descent (Madry et al. 2018) from a uniform random start in the ball.

    Default step α = 2.5 ε / steps, as in Madry et al.'s recipe.
    """

    alpha_factor = 2.5
    paper = "Madry et al. 2018, 'Towards Deep Learning Models Resistant to Adversarial Attacks' (ICLR)"
    summary = "projected gradient steps from a random start in the ε-ball"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 random_start: bool = True, norm: str = "linf", decay: float = 0.0, seed: int = 0,
                 compile: bool = False):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=random_start,
                         decay=decay, seed=seed, compile=compile)


@ATTACKS.register("pgd_l2")
class PGDL2(PGD):
    """PGD in the ℓ2 ball: steps along ∇/‖∇‖₂, projection by radial shrinking."""

    summary = "PGD in the ℓ2 ball"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 random_start: bool = True, decay: float = 0.0, seed: int = 0, compile: bool = False):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, norm="l2",
                         decay=decay, seed=seed, compile=compile)


@ATTACKS.register("mifgsm")
class MIFGSM(IterativeAttack):
    """Momentum iterative FGSM (Dong et al. 2018): m ← μ m + ∇ / mean|∇|, x ← x + α sign(m); α = ε / T."""

    paper = "Dong et al. 2018, 'Boosting Adversarial Attacks with Momentum' (CVPR)"
    summary = "iterative FGSM with gradient momentum, for transfer"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, norm: str = "linf", random_start: bool = False, seed: int = 0,
                 compile: bool = False):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=random_start,
                         decay=decay, seed=seed, compile=compile)


@ATTACKS.register("di")
class DI(MIFGSM):
    """Diverse inputs (Xie et al. 2019), on MI-FGSM unless ``decay=0``.

    With probability ``diversity_prob`` per step the batch is resized (nearest neighbour) to a random
    side in [⌊r·H⌋, H) and zero-padded at a random offset back to H × W, for ``resize_rate`` r < 1. For
    r > 1 (the paper's 299 → [299, 330) setting) it is enlarged and padded to ⌊r·H⌋, then resized
    back to H × W so that fixed-size classifiers accept it. One draw per step for the whole batch.
    """

    paper = "Xie et al. 2019, 'Improving Transferability of Adversarial Examples with Input Diversity' (CVPR)"
    summary = "MI-FGSM on randomly resized and padded inputs"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, resize_rate: float = 0.9, diversity_prob: float = 0.5, norm: str = "linf",
                 random_start: bool = False, seed: int = 0, compile: bool = False):
        if not resize_rate > 0 or resize_rate == 1:
            raise ValueError(f"resize_rate must be > 0 and != 1, got {resize_rate}")
        if not 0 <= diversity_prob <= 1:
            raise ValueError(f"diversity_prob must be in [0, 1], got {diversity_prob}")
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, decay=decay, norm=norm,
                         random_start=random_start, seed=seed, compile=compile)
        self.resize_rate, self.diversity_prob = float(resize_rate), float(diversity_prob)

    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(1, generator=self.generator).item() >= self.diversity_prob:
            return x
        h, w = x.shape[-2:]
        canvas_h, canvas_w = (h, w) if self.resize_rate < 1 else (int(h * self.resize_rate), int(w * self.resize_rate))
        side_lo, side_hi = sorted((int(h * self.resize_rate), h))
        if side_lo == side_hi:
            raise ValueError(f"resize_rate {self.resize_rate} changes no side of a {h}x{w} image")
        new_h = int(torch.randint(side_lo, side_hi, (1,), generator=self.generator))
        new_w = new_h if h == w else min(canvas_w - 1, max(1, round(new_h * w / h)))
        top = int(torch.randint(0, max(canvas_h - new_h, 1), (1,), generator=self.generator))
        left = int(torch.randint(0, max(canvas_w - new_w, 1), (1,), generator=self.generator))
        resized = F.interpolate(x, size=(new_h, new_w), mode="nearest")
        padded = F.pad(resized, (left, canvas_w - new_w - left, top, canvas_h - new_h - top))
        if (canvas_h, canvas_w) != (h, w):
            padded = F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)
        return padded


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Normalised (size, size) Gaussian with standard deviation ``sigma`` pixels."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-offsets.square() / (2 * sigma ** 2))
    kernel = torch.outer(profile, profile)
    return (kernel / kernel.sum()).float()


@ATTACKS.register("ti")
class TI(MIFGSM):
    """Translation-invariant attack (Dong et al. 2019), on MI-FGSM unless ``decay=0``: the gradient is
    convolved per channel with a ``kernel_size`` Gaussian before momentum and the step.

    ``kernel_sigma`` (pixels) defaults to kernel_size / 6, i.e. the kernel spans ±3σ as in the
    reference TF code (7 × 7 in the SVD-SSA code base).
    """

    paper = ("Dong et al. 2019, 'Evading Defenses to Transferable Adversarial Examples by Translation-Invariant "
             "Attacks' (CVPR)")
    summary = "MI-FGSM with a Gaussian-smoothed gradient"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, kernel_size: int = 7, kernel_sigma: float | None = None, norm: str = "linf",
                 random_start: bool = False, seed: int = 0, compile: bool = False):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, decay=decay, norm=norm,
                         random_start=random_start, seed=seed, compile=compile)
        self.kernel = gaussian_kernel(kernel_size, kernel_sigma if kernel_sigma is not None else kernel_size / 6)

    def smooth_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        channels = grad.shape[1]
        weight = self.kernel.to(grad).expand(channels, 1, *self.kernel.shape)
        return F.conv2d(grad, weight, padding=self.kernel.shape[-1] // 2, groups=channels)


@functools.lru_cache(maxsize=32)
def dct_matrix(n: int, device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n, n): D[k, i] = c_k cos(π (2i + 1) k / 2n), D⁻¹ = Dᵀ."""
    i = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=dtype)


def dct_2d(x: torch.Tensor) -> torch.Tensor:
    """2-D orthonormal DCT-II over the last two axes of (..., H, W)."""
    h, w = x.shape[-2:]
    return dct_matrix(h, x.device, x.dtype) @ x @ dct_matrix(w, x.device, x.dtype).T


def idct_2d(spectrum: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dct_2d`."""
    h, w = spectrum.shape[-2:]
    return dct_matrix(h, spectrum.device, spectrum.dtype).T @ spectrum @ dct_matrix(w, spectrum.device, spectrum.dtype)


@ATTACKS.register("ssa")
class SSA(MIFGSM):
    """Spectrum simulation attack, S²I-FGSM (Long et al. 2022), on MI-FGSM unless ``decay=0``.

    Each step averages the gradient over ``num_spectrum`` copies
    x_idct = IDCT(DCT(x + ξ) ⊙ M), ξ ~ N(0, σ²), M ~ U[1 − ρ, 1 + ρ] elementwise; σ = ``spectrum_sigma``,
    default ε (the official 16/255 at ε = 16/255). The DCT is orthonormal; the unnormalised DCT of the
    reference code gives the same x_idct because the per-frequency scale cancels against the mask.
    """

    paper = "Long et al. 2022, 'Frequency Domain Model Augmentation for Adversarial Attack' (ECCV)"
    summary = "MI-FGSM averaged over spectrum-transformed (DCT-domain noise and mask) copies"

    def __init__(self, model: nn.Module, *, eps: float, alpha: float | None = None, steps: int = 10,
                 decay: float = 1.0, num_spectrum: int = 20, rho: float = 0.5, spectrum_sigma: float | None = None,
                 norm: str = "linf", random_start: bool = False, seed: int = 0, compile: bool = False):
        if num_spectrum < 1:
            raise ValueError(f"num_spectrum must be >= 1, got {num_spectrum}")
        if not 0 <= rho <= 1:
            raise ValueError(f"rho must be in [0, 1], got {rho}")
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, decay=decay, norm=norm,
                         random_start=random_start, seed=seed, compile=compile)
        self.copies, self.rho = int(num_spectrum), float(rho)
        self.spectrum_sigma = float(spectrum_sigma) if spectrum_sigma is not None else self.eps

    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        noise = self._draw(torch.randn, x.shape, x) * self.spectrum_sigma
        mask = 1 - self.rho + 2 * self.rho * self._draw(torch.rand, x.shape, x)
        return idct_2d(dct_2d(x + noise) * mask)


def rank1_approximation(features: torch.Tensor, method: str = "power", iterations: int = 20,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Best rank-1 approximation σ₁ u₁ v₁ᵀ of each matrix in ``features`` (N, C, M), differentiable.

    ``method="power"``: ``iterations`` rounds of u = A v / ‖A v‖, v = Aᵀ u / ‖Aᵀ u‖ from a Gaussian v
    drawn from ``generator`` (on the generator's device; as in the SVD-SSA code), then A v vᵀ; the
    gradient flows through every round, as in that code. The rounds are computed as the same function
    v = normalize((AᵀA)ᵏ v₀), k = ``iterations``, with the smaller Gram matrix (AᵀA, or A Aᵀ via
    (AᵀA)ᵏ v₀ = Aᵀ (A Aᵀ)ᵏ⁻¹ A v₀) raised to the k-th power by repeated squaring: about log₂ k batched
    matrix products instead of 2k, which is what a GPU pays per kernel launch, forward and backward.
    ``method="exact"``: u₁ from ``torch.linalg.svd``, differentiated implicitly (below).
    """
    if method not in RANK1_METHODS:
        raise ValueError(f"rank-1 method {method!r} unknown; allowed: {list(RANK1_METHODS)}")
    if features.dim() != 3:
        raise ValueError(f"features must be (N, C, M), got shape {tuple(features.shape)}")
    if method == "exact":
        u = _top_left_singular_vector(features)
        return u @ (u.mT @ features)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    n, c, m = features.shape
    device = generator.device if generator is not None else features.device
    v = torch.randn((n, m, 1), generator=generator, device=device).to(features)
    if m <= c:
        v = _normalized_power_times(features.mT @ features, v, iterations)
    else:
        u = _normalized_power_times(features @ features.mT, F.normalize(features @ v, dim=1), iterations - 1)
        v = F.normalize(features.mT @ u, dim=1)
    return (features @ v) @ v.mT


def _normalized_power_times(gram: torch.Tensor, z: torch.Tensor, power: int) -> torch.Tensor:
    """normalize(Gᵖ z) per batch item, for G (N, D, D) and z (N, D, 1), by binary exponentiation; every
    intermediate power is rescaled to unit Frobenius norm (σ₁²ᵖ would overflow float32)."""
    while power:
        if power & 1:
            z = F.normalize(gram @ z, dim=1)
        power >>= 1
        if power:
            gram = gram @ gram
            gram = gram / torch.linalg.vector_norm(gram, dim=(1, 2), keepdim=True).clamp_min(_TINY)
    return z


RANK1_METHODS = ("power", "exact")


def _top_left_singular_vector(a: torch.Tensor) -> torch.Tensor:
    """u₁ (N, C, 1) of each A (N, C, M), with the derivative of the top singular vector only.

    ``torch.linalg.svd``'s backward divides by σᵢ² − σⱼ² for every pair and turns NaN whenever two
    singular values coincide (dead channels give repeated zeros), although u₁ depends only on the gaps
    to σ₁. From A Aᵀ u = λ u (λ = σ₁²): du = (λI − A Aᵀ)⁺ d(A Aᵀ) u on u's complement. The returned
    u + P K⁻¹ P (A Aᵀ − λI) u, with P = I − u uᵀ, K = λI − A Aᵀ + u uᵀ and everything but A held
    constant, has the value u and exactly that derivative (defined while σ₁ > σ₂).
    """
    with torch.no_grad():
        left, singular, _ = torch.linalg.svd(a, full_matrices=False)
        u = left[..., :1]
        lam = singular[..., :1, None].square().clamp_min(_TINY)
        eye = torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
        outer = u @ u.mT
        complement = eye - outer
        resolvent = torch.linalg.inv(lam * eye - a @ a.mT + outer)
        correction = complement @ resolvent @ complement
    return u + correction @ (a @ (a.mT @ u) - lam * u)


class SVDLogitFusion(nn.Module):
    """Logits β·f_back(X_l) + (1 − β)·f_back(rank1(X_l)) of a classifier split at ``layer`` (SVD-SSA).

    X_l = f_front(x) (N, C, H, W) is read per sample as a (C, H·W) matrix and replaced by its top
    singular component for the second term; a 2-D feature (N, D) is a (D, 1) column, whose rank-1 part
    is itself. ``model`` needs ``layer_names`` and ``split(layer) -> (front, back)`` (models.Classifier).
    β = 1 is the plain model. Each forward pass of ``method="power"`` draws its start from a generator
    seeded by ``seed``, so a sequence of calls is reproducible.
    """

    paradigm: str | None = None
    paper = ("Weng et al. 2023, 'Boosting Adversarial Transferability via Fusing Logits of Top-1 Decomposed "
             "Feature' (arXiv 2305.01361)")
    summary = ("SVD-SSA's logit fusion: the surrogate also scores the rank-1 part of a middle feature; "
               "wraps any attack (transfer.fusion)")

    def __init__(self, model: nn.Module, layer: str, beta: float = 0.5, method: str = "power",
                 iterations: int = 20, seed: int = 0):
        super().__init__()
        if not (hasattr(model, "layer_names") and hasattr(model, "split")):
            raise ValueError(f"SVD fusion needs a model with named split points (layer_names, split); "
                             f"{type(model).__name__} has none")
        layers = list(model.layer_names)[:-1]
        if layer not in layers:
            raise ValueError(f"split layer {layer!r} not in {type(model).__name__}; valid layers: {layers}")
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if method not in RANK1_METHODS:
            raise ValueError(f"rank-1 method {method!r} unknown; allowed: {list(RANK1_METHODS)}")
        self.model = model
        self.front, self.back = model.split(layer)
        self.layer, self.beta, self.method, self.iterations = layer, float(beta), method, int(iterations)
        self.generator = torch.Generator().manual_seed(seed)
        self._device_generators: dict[torch.device, torch.Generator] = {}
        self.training = model.training

    def rank1_feature(self, feature: torch.Tensor) -> torch.Tensor:
        matrices = feature.flatten(2) if feature.dim() > 2 else feature.unsqueeze(2)
        generator = _generator_on(feature.device, self.generator, self._device_generators)
        return rank1_approximation(matrices, self.method, self.iterations, generator).reshape(feature.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused logits; in eval mode both features go through ``back`` as one batch (half the launches)."""
        if self.beta == 1:
            return self.model(x)
        feature = self.front(x)
        rank1 = self.rank1_feature(feature)
        if self.beta == 0:
            return self.back(rank1)
        if any(module.training for module in self.back.modules()):  # batch statistics: keep the batches apart
            low, full = self.back(rank1), self.back(feature)
        else:
            low, full = self.back(torch.cat([rank1, feature])).split(len(x))
        return (1 - self.beta) * low + self.beta * full


@torch.no_grad()
def rank1_ablation_accuracy(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, *,
                            batch_size: int = 500) -> dict[str, float]:
    """SVD-SSA's premise, measured: accuracy of ``model`` on float images ``x`` (N, C, H, W) in [0, 1]
    with its ``layer`` feature kept ("full feature"), replaced by its exact rank-1 part σ₁u₁v₁ᵀ
    ("rank-1 part"), or by the residual ("residual"). Fusion can only help when the rank-1 part carries
    the class (paper: it keeps more accuracy than the residual)."""
    fusion = SVDLogitFusion(model.eval(), layer, method="exact")
    correct = {"full feature": 0, "rank-1 part": 0, "residual": 0}
    for i in range(0, len(x), batch_size):
        feature = fusion.front(x[i:i + batch_size])
        rank1 = fusion.rank1_feature(feature)
        for name, value in (("full feature", feature), ("rank-1 part", rank1), ("residual", feature - rank1)):
            correct[name] += int((fusion.back(value).argmax(1) == y[i:i + batch_size]).sum())
    return {name: c / max(len(x), 1) for name, c in correct.items()}


def _keyword_params(factory: Callable[..., Any]) -> list[str]:
    return [p.name for p in inspect.signature(factory).parameters.values() if p.kind is p.KEYWORD_ONLY
            or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "model"))]


def make_attack(name: str, model: nn.Module, *, svd: dict[str, Any] | None = None, **params: Any) -> IterativeAttack:
    """The attack ``ATTACKS[name]`` on ``model`` with ``params``; with ``svd`` (``layer`` and optionally
    ``beta``, ``method``, ``iterations``, ``seed`` — the attack's seed by default) the attack targets
    :class:`SVDLogitFusion` of the model instead. Unknown names and params are errors listing the valid ones.
    """
    if name not in ATTACKS:
        raise ValueError(f"attack {name!r} unknown; valid attacks: {sorted(ATTACKS)}")
    factory = ATTACKS[name]
    allowed = _keyword_params(factory)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"attack {name!r} got unknown params {unknown}; allowed: {sorted(allowed)}")
    if svd is not None:
        svd_allowed = _keyword_params(SVDLogitFusion)
        unknown = sorted(set(svd) - set(svd_allowed))
        if unknown or "layer" not in svd:
            raise ValueError(f"svd params {sorted(svd)} invalid: need 'layer', allowed: {sorted(svd_allowed)}")
        model = SVDLogitFusion(model, **{"seed": params.get("seed", 0), **svd})
    return factory(model, **params)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
             device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on float ``x`` in [0,1] (N,C,H,W) with labels ``y``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        correct += (model(xb).argmax(1) == yb).sum().item()
    model.train(was_training)
    return correct / max(len(x), 1)


def robust_accuracy(model: nn.Module, attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
                    device: torch.device | str = "cpu", desc: str = "attack") -> float:
    """Accuracy on adversarial examples made by ``attack`` batch by batch."""
    correct = 0
    for i in progress(range(0, len(x), batch_size), desc=desc, unit="batch"):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        x_adv = attack(xb, yb)
        with torch.no_grad():
            model.eval()
            correct += (model(x_adv).argmax(1) == yb).sum().item()
    return correct / max(len(x), 1)


@torch.no_grad()
def attack_success_rate(target: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *,
                        batch_size: int = 256, device: torch.device | str = "cpu") -> tuple[float, int]:
    """(success rate, count): among the inputs ``target`` classifies correctly when clean (count of
    them), the fraction whose adversarial version it misclassifies. Transfer attacks are scored this
    way on the plain target, whatever model (e.g. an SVD-fused surrogate) made ``x_adv``.
    """
    was_training = target.training
    target.eval()
    fooled, clean_correct = 0, 0
    for i in range(0, len(x), batch_size):
        yb = y[i:i + batch_size].to(device)
        correct = target(x[i:i + batch_size].to(device)).argmax(1) == yb
        wrong_adv = target(x_adv[i:i + batch_size].to(device)).argmax(1) != yb
        clean_correct += int(correct.sum())
        fooled += int((correct & wrong_adv).sum())
    target.train(was_training)
    return fooled / max(clean_correct, 1), clean_correct
