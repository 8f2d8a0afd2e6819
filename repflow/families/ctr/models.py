"""The CTR family's models: a DIN-style user-interest network whose item representation is built from the
item's modalities in one of three ways: the comparison of MARN (Li, Wang, Tan, Zeng, Ou and Zheng, "Adversarial
Multimodal Representation Learning for Click-Through Rate Prediction", WWW 2020).

Every model: ``forward(user (N,), item (N,), history (N, H)) -> CtrOutput`` on the rows of
:class:`~repflow.families.ctr.features.CtrTensors` (history row 0 = padding), ``output.logits`` (N,) the click
logit. The item features are buffers of the model (copied from a
:class:`~repflow.families.ctr.features.FeatureTensors`), so a checkpoint carries them.

Shared parts:
- :class:`ModalityEmbeddings`: item rows → one ``dim``-vector per modality (:data:`MODALITIES`): ``id``
  (embedding of the training-item token), ``title`` (the small text encoder trained here: mean of the title's
  word embeddings, then a linear layer and tanh), ``genres`` (mean of the item's genre embeddings), ``year``
  (bucket embedding), ``stats`` (sum of the popularity-bucket and click-rate-bucket embeddings). Items absent
  from training share an ID token, and have no statistics; those tokens' vectors (and the unseen users') are
  zero at the start (the unseen click-rate token is also what a training row gets when its item has no
  out-of-fold impressions, so that vector does train).
- :class:`DinHead`: DIN's local activation unit (Zhou et al., KDD 2018): each history item h is scored by an
  MLP on [h, t, h − t, h ⊙ t] against the target t; the interest is Σ score·h over real history items (DIN
  keeps the scores unnormalised so the interest's size says how much history is relevant; an empty history
  gives a zero interest); an MLP on [user embedding, t, interest] gives the logit.

Item representations (what differs):
- ``din_concat``: the modality vectors concatenated (fixed weights per modality, the paper's baseline).
- ``man``: modality-specific features s_m = ReLU(W_m x_m + b_m), weighted by α_m = softmax_m(vᵀ tanh(W_a s_m +
  b_a)) and summed; α of the target items is returned for reporting.
- ``marn``: MAN plus a modality-invariant part c_m = G(P_m x_m) (P_m per modality, G shared). A first modality
  classifier D1 is trained on detached c_m; ω_m = 1 − D1(c_m)[m] (detached) is high where D1 cannot tell the
  modality, and c = Σ ω_m c_m / Σ ω_m. A second classifier D2 sees c_m through a gradient reversal layer
  (:func:`grad_reverse`) and is trained with ω-weighted cross-entropy, so G learns to make the modalities
  indistinguishable (the IWAN double-discriminator recipe). The item is [s; c].
- ``marn_single_disc``: the ablation: one classifier through gradient reversal, unweighted, c = mean_m c_m.

Reconstructed, not read: the paper's Sec. 3 (the method) was not available; the layout above follows the three
parts its abstract names (attention over modality-specific features, a double-discriminator adversarial
network for the modality-invariant part, their combination), with IWAN's double discriminator (Zhang et al.,
CVPR 2018) as the recipe; to be checked against Sec. 3. The paper also uses image features; ml-100k has none.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.families.ctr.features import UNKNOWN, FeatureTensors
from repflow.registry import Listed, Registry

__all__ = ["MODALITIES", "CtrOutput", "ModalityEmbeddings", "DinHead", "CtrModel", "ConcatItems", "ManItems",
           "MarnItems", "grad_reverse", "CtrModelEntry", "CTR_MODELS", "build_ctr_model"]

MODALITIES = ("id", "title", "genres", "year", "stats")


@dataclass
class CtrOutput:
    """``logits`` (N,). ``modality_attention`` (N, M): α of each target item (MAN / MARN, else None).
    Adversarial models also give, for the target items' invariant features: ``d1_logits`` (N, M, M) of D1 on
    detached features (None for one discriminator), ``d2_logits`` (N, M, M) of the classifier behind the
    gradient reversal, ``omega`` (N, M) the detached importance weights (ones for one discriminator)."""

    logits: torch.Tensor
    modality_attention: torch.Tensor | None = None
    d1_logits: torch.Tensor | None = None
    d2_logits: torch.Tensor | None = None
    omega: torch.Tensor | None = None


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by −``scale`` (Ganin & Lempitsky 2015)."""
    return _GradReverse.apply(x, float(scale))


def _check_size(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class ModalityEmbeddings(nn.Module):
    """item rows (...) → (..., M, ``dim``), one vector per modality of :data:`MODALITIES`; padding rows give
    zeros in every modality."""

    def __init__(self, features: FeatureTensors, dim: int):
        super().__init__()
        _check_size("dim", dim)
        for name in ("item_token", "title", "genres", "year", "popularity", "click_rate"):
            self.register_buffer(name, getattr(features, name).clone(), persistent=True)
        s = features.sizes
        self.id = nn.Embedding(s["item_token"], dim, padding_idx=0)
        self.word = nn.Embedding(s["word"], dim, padding_idx=0)
        self.title_proj = nn.Linear(dim, dim)
        self.genre = nn.Parameter(torch.randn(s["genre"], dim) * 0.1)
        self.year_emb = nn.Embedding(s["year"], dim, padding_idx=0)
        self.popularity_emb = nn.Embedding(s["popularity"], dim, padding_idx=0)
        self.click_rate_emb = nn.Embedding(s["click_rate"], dim, padding_idx=0)
        _zero_unknown(self.id, self.popularity_emb, self.click_rate_emb)
        self.dim = dim

    def forward(self, rows: torch.Tensor, click_rate: torch.Tensor | None = None) -> torch.Tensor:
        """``click_rate`` (same shape as ``rows``): click-rate tokens to use instead of the item table's (a
        training row's out-of-fold statistic)."""
        words = self.title[rows]
        present = (words > 0).unsqueeze(-1).float()
        word_mean = (self.word(words) * present).sum(-2) / present.sum(-2).clamp(min=1.0)
        title = torch.tanh(self.title_proj(word_mean)) * (present.sum(-2) > 0).float()
        multi_hot = self.genres[rows]
        genres = multi_hot @ self.genre / multi_hot.sum(-1, keepdim=True).clamp(min=1.0)
        stats = self.popularity_emb(self.popularity[rows]) + self.click_rate_emb(
            self.click_rate[rows] if click_rate is None else click_rate)
        parts = [self.id(self.item_token[rows]), title, genres, self.year_emb(self.year[rows]), stats]
        return torch.stack(parts, dim=-2)


def _zero_unknown(*tables: nn.Embedding) -> None:
    """Start the UNKNOWN row of tables whose unknown token never occurs in training (unseen users and items,
    and their missing statistics) at zero, where it stays: "no information" rather than a random vector."""
    with torch.no_grad():
        for table in tables:
            table.weight[UNKNOWN].zero_()


def _mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DinHead(nn.Module):
    """(user vector (N, U), target (N, D), history (N, H, D), mask (N, H)) → logits (N,)."""

    def __init__(self, item_dim: int, user_dim: int, attention_hidden: int = 32, hidden: tuple[int, ...] = (64, 32)):
        super().__init__()
        self.attention = _mlp([4 * item_dim, attention_hidden, 1])
        self.mlp = _mlp([user_dim + 2 * item_dim, *hidden, 1])

    def forward(self, user: torch.Tensor, target: torch.Tensor, history: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        t = target.unsqueeze(1).expand_as(history)
        scores = self.attention(torch.cat([history, t, history - t, history * t], dim=-1)).squeeze(-1)
        interest = ((scores * mask).unsqueeze(-1) * history).sum(1)
        return self.mlp(torch.cat([user, target, interest], dim=-1)).squeeze(-1)


class ConcatItems(nn.Module):
    """(..., M, d) → (..., M·d): the modalities side by side."""

    def __init__(self, dim: int, modalities: int):
        super().__init__()
        self.out_dim = dim * modalities

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return x.flatten(-2), {}


class _PerModalityLinear(nn.Module):
    """(..., M, d_in) → (..., M, d_out), a separate affine map per modality."""

    def __init__(self, modalities: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(modalities, d_in, d_out) / d_in ** 0.5)
        self.bias = nn.Parameter(torch.zeros(modalities, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...md,mde->...me", x, self.weight) + self.bias


class ManItems(nn.Module):
    """Modality-specific features and attention over modalities: (..., M, d) → (..., specific_dim), with
    ``{"alpha": (..., M)}``."""

    def __init__(self, dim: int, modalities: int, specific_dim: int = 32, attention_dim: int = 16):
        super().__init__()
        self.specific = _PerModalityLinear(modalities, dim, specific_dim)
        self.score = nn.Sequential(nn.Linear(specific_dim, attention_dim), nn.Tanh(),
                                   nn.Linear(attention_dim, 1, bias=False))
        self.out_dim = specific_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = F.relu(self.specific(x))
        alpha = torch.softmax(self.score(s).squeeze(-1), dim=-1)
        return (alpha.unsqueeze(-1) * s).sum(-2), {"alpha": alpha}


class MarnItems(nn.Module):
    """MAN plus the modality-invariant branch: (..., M, d) → (..., specific_dim + invariant_dim) = [s; c],
    with ``alpha``, ``invariant`` (..., M, invariant_dim) and ``omega`` (..., M). ``discriminators`` 2 is
    MARN (D1 gives the weights, D2 is fooled), 1 the single-discriminator ablation."""

    def __init__(self, dim: int, modalities: int, specific_dim: int = 32, invariant_dim: int = 32,
                 attention_dim: int = 16, discriminator_hidden: int = 32, discriminators: int = 2):
        super().__init__()
        if discriminators not in (1, 2):
            raise ValueError(f"discriminators must be 1 or 2, got {discriminators!r}")
        self.man = ManItems(dim, modalities, specific_dim, attention_dim)
        self.project = _PerModalityLinear(modalities, dim, invariant_dim)
        self.shared = nn.Sequential(nn.ReLU(), nn.Linear(invariant_dim, invariant_dim), nn.ReLU())
        self.d2 = _mlp([invariant_dim, discriminator_hidden, modalities])
        self.d1 = _mlp([invariant_dim, discriminator_hidden, modalities]) if discriminators == 2 else None
        self.modalities = modalities
        self.out_dim = specific_dim + invariant_dim
        self.grl_scale = 1.0
        """The gradient reversal's factor; the training loop ramps it 0 → 1 (DANN's schedule)."""

    def importance(self, invariant: torch.Tensor) -> torch.Tensor:
        """ω (..., M) = 1 − D1's probability of each feature's true modality, detached; ones without D1."""
        if self.d1 is None:
            return torch.ones(invariant.shape[:-1], device=invariant.device)
        with torch.no_grad():
            probs = torch.softmax(self.d1(invariant), dim=-1)
            own = torch.diagonal(probs, dim1=-2, dim2=-1)
        return 1.0 - own

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        specific, aux = self.man(x)
        invariant = self.shared(self.project(x))
        omega = self.importance(invariant.detach())
        pooled = (omega.unsqueeze(-1) * invariant).sum(-2) / omega.sum(-1, keepdim=True).clamp(min=1e-6)
        return torch.cat([specific, pooled], dim=-1), {**aux, "invariant": invariant, "omega": omega}

    def discriminate(self, invariant: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(D1 logits on detached features or None, D2 logits behind the gradient reversal), each (..., M, M)."""
        d1 = self.d1(invariant.detach()) if self.d1 is not None else None
        return d1, self.d2(grad_reverse(invariant, self.grl_scale))


class CtrModel(nn.Module):
    """Modality embeddings → an item representation (``items``) for the target and every history item → DIN
    head with a user-ID embedding (unseen users share one token). Representations are computed once per
    distinct item row of the batch; with ``click_rate`` (N,) (each row's own click-rate token for its target,
    out-of-fold in training) the targets are represented per row, the history items still per distinct row."""

    def __init__(self, features: FeatureTensors, items: Callable[[int, int], nn.Module], *, dim: int = 16,
                 user_dim: int = 16, attention_hidden: int = 32, hidden: tuple[int, ...] = (64, 32)):
        super().__init__()
        _check_size("user_dim", user_dim)
        self.embeddings = ModalityEmbeddings(features, dim)
        self.register_buffer("user_token", features.user_token.clone(), persistent=True)
        self.user = nn.Embedding(features.sizes["user_token"], user_dim, padding_idx=0)
        _zero_unknown(self.user)
        self.items = items(dim, len(MODALITIES))
        self.head = DinHead(self.items.out_dim, user_dim, attention_hidden, tuple(hidden))

    def forward(self, user: torch.Tensor, item: torch.Tensor, history: torch.Tensor,
                click_rate: torch.Tensor | None = None) -> CtrOutput:
        n = item.shape[0]
        if click_rate is None:
            rows, inverse = torch.unique(torch.cat([item, history.reshape(-1)]), return_inverse=True)
            represented, aux = self.items(self.embeddings(rows))
            target, past = represented[inverse[:n]], represented[inverse[n:]].reshape(*history.shape, -1)
            aux = {k: v[inverse[:n]] for k, v in aux.items()}
        else:
            target, aux = self.items(self.embeddings(item, click_rate))
            rows, inverse = torch.unique(history.reshape(-1), return_inverse=True)
            past = self.items(self.embeddings(rows))[0][inverse].reshape(*history.shape, -1)
        logits = self.head(self.user(self.user_token[user]), target, past, (history > 0).float())
        out = CtrOutput(logits)
        if "alpha" in aux:
            out.modality_attention = aux["alpha"]
        if "invariant" in aux:
            out.d1_logits, out.d2_logits = self.items.discriminate(aux["invariant"])
            out.omega = aux["omega"]
        return out


@dataclass(frozen=True, kw_only=True)
class CtrModelEntry(Listed):
    """``items(dim, modalities, **kw)`` builds the item representation; ``fixed`` are its keywords the entry pins.
    ``discriminators``: 0 (no adversarial loss), 1 or 2."""

    items: Callable[..., nn.Module]
    discriminators: int = 0
    fixed: dict[str, Any] = field(default_factory=dict)


CTR_MODELS: Registry[CtrModelEntry] = Registry("CTR model")
_DIN = "Zhou et al. 2018, 'Deep Interest Network for Click-Through Rate Prediction' (KDD)"
_MARN = ("Li et al. 2020, 'Adversarial Multimodal Representation Learning for Click-Through Rate Prediction' "
         "(WWW; MARN)")
CTR_MODELS.register("din_concat", CtrModelEntry(
    items=ConcatItems, paper=_DIN,
    summary="DIN target attention over the history, each item the concatenation of its modality embeddings "
            "(fixed weights per modality: the baseline MARN improves on)"))
CTR_MODELS.register("man", CtrModelEntry(
    items=ManItems, paper=_MARN,
    summary="multimodal attention network: modality-specific features weighted per item by attention over "
            "modalities, then DIN"))
CTR_MODELS.register("marn", CtrModelEntry(
    items=MarnItems, discriminators=2, fixed={"discriminators": 2}, paradigm="generative-contrastive", paper=_MARN,
    summary="MAN plus a modality-invariant branch learned adversarially with two discriminators (D1 weights "
            "features by how invariant they look, D2 is fooled through gradient reversal)"))
CTR_MODELS.register("marn_single_disc", CtrModelEntry(
    items=MarnItems, discriminators=1, fixed={"discriminators": 1}, paradigm="generative-contrastive", paper=_MARN,
    summary="ablation: MARN with one unweighted discriminator behind gradient reversal"))

_MODEL_OPTIONS = ("dim", "user_dim", "attention_hidden", "hidden")


def build_ctr_model(name: str, features: FeatureTensors, **kw: Any) -> CtrModel:
    """The registered model ``name`` over ``features``. ``kw``: the shared sizes (``dim`` per modality,
    ``user_dim``, ``attention_hidden``, ``hidden`` MLP widths) and the item representation's own
    (``specific_dim``, ``invariant_dim``, ``attention_dim``, ``discriminator_hidden``, where it has them).
    An unknown name or option, or a pinned one, raises ValueError naming it."""
    entry = CTR_MODELS[name]
    own = [p for p in inspect.signature(entry.items).parameters if p not in ("dim", "modalities")]
    item_kw = {}
    for key, value in kw.items():
        if key in entry.fixed:
            raise ValueError(f"CTR model {name!r} pins {key}={entry.fixed[key]!r}; it cannot be set")
        if key in own:
            _check_size(key, value)
            item_kw[key] = value
        elif key not in _MODEL_OPTIONS:
            allowed = list(_MODEL_OPTIONS) + [p for p in own if p not in entry.fixed]
            raise ValueError(f"CTR model {name!r} has no option {key!r}; allowed: {allowed}")
    model_kw = {k: v for k, v in kw.items() if k in _MODEL_OPTIONS}
    items = lambda dim, modalities: entry.items(dim, modalities, **item_kw, **entry.fixed)
    return CtrModel(features, items, **model_kw)
