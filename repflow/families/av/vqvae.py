"""Stage 1: a VQ-VAE per modality, frame by frame (no temporal model), whose **pre-quantisation** latents are
what the MDVAE models (the two training stages of Sadok et al., Neural Networks 2024; sizes and losses from
the official code, ``samsad35/code-mdvae``).

- :class:`FrameVQVAE`: 64×64 RGB face frames. Encoder three stride-2 4×4 convs (64 → 8 px), a 3×3 conv, a
  residual stack and a 1×1 conv to the code dim; the decoder mirrors it with transposed convs. Pixels in
  [−0.5, 0.5] (the official normalisation), MSE reconstruction.
- :class:`SpectrumVQVAE`: one speech power-spectrum frame of F bins as a 1-channel 1-D signal. Encoder
  Conv1d k4/k4/k3, stride 2, tanh (F → ⌈F/8⌉ positions), a residual layer, a 1×1 conv to the code dim.
  It reads log(power) standardised by one mean and std fitted on training spectra. For ``spectrum="power"``
  the decoder's output is a log-power whose exp is the spectrum (official: the decoder ends in exp) and the
  reconstruction is the Itakura–Saito divergence of the power spectra; for ``"log_power"`` inputs (already
  in dB-like units) the output is the log-power itself and the loss its MSE.
- :class:`VectorQuantizer`: nearest code, straight-through gradient, commitment loss β‖z_e − sg(e)‖²
  (β = 0.25), codebook by EMA (decay 0.99, Laplace-smoothed counts; official) or by the codebook loss
  ‖sg(z_e) − e‖² (``ema_decay=None``). Codes are initialised from encoder outputs of the first batch and
  dead codes (fewer than ``dead_count`` assignments since the last check, counted in ``hits``) restarted
  from current ones (both from the run's seed; not in the official code, which keeps nn.Embedding's uniform
  ±1/K init: at CPU scale most codes then stay unused). Before issue 33 "dead" meant an EMA usage below
  0.01, which a code starting at usage 1 only reaches after ~460 steps (0.99^460): no code was ever
  restarted in a 500–1500-step run and the speech codebook collapsed to a perplexity of 3–5 of 64.

Sizes (official → default here): faces conv widths 64/128/128 → 32/64/64, residual hidden 32 → 16 (2
layers), code dim 32 → 8, K 512 → 128, latent 32×8×8 = 2048 → 8×8×8 = 512 per frame; speech conv widths
16/32/32, 1 residual layer, code dim 8, K 64 (all kept), latent 8×⌈F/8⌉ (513 bins → 8×64 = 512 official;
F = 257 → 8×33 = 264 here).

A VQ-VAE's ``config()`` rebuilds it (:func:`build_vqvae`) and names the frame shape it was trained on;
:func:`check_frame_size` compares that with the frames given before any work starts.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from repflow.checkpoints import load_state_strict, load_tensors, save_tensors
from repflow.families.av.training import cycle
from repflow.progress import progress

__all__ = ["VQOutput", "VectorQuantizer", "VQVAE", "FrameVQVAE", "SpectrumVQVAE", "build_vqvae",
           "save_vqvae", "load_vqvae", "check_frame_size", "train_vqvae", "itakura_saito"]

LOG_EPS = 1e-8
"""Added to power spectra before their log (and to both sides of the IS divergence): silence is exactly 0."""


class VQOutput(NamedTuple):
    """``quantized`` (same shape as z_e, straight-through), ``indices`` (z_e's shape without the code dim),
    ``commitment`` = β·mean‖z_e − sg(e)‖², ``codebook`` = mean‖sg(z_e) − e‖² (the codebook's own loss, used
    only without EMA), ``perplexity`` = exp(entropy of code use in the batch)."""

    quantized: torch.Tensor
    indices: torch.Tensor
    commitment: torch.Tensor
    codebook: torch.Tensor
    perplexity: torch.Tensor


class VectorQuantizer(nn.Module):
    """Codebook of ``num_codes`` vectors of ``code_dim``; quantises z_e (N, code_dim, *positions)."""

    def __init__(self, num_codes: int, code_dim: int, *, beta: float = 0.25, ema_decay: float | None = 0.99,
                 usage_decay: float = 0.99, smoothing: float = 1e-5):
        super().__init__()
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay!r}")
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, beta
        self.ema_decay, self.usage_decay, self.smoothing = ema_decay, usage_decay, smoothing
        init = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if ema_decay is None:
            self.codebook = nn.Parameter(init)
        else:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_sum", init.clone())
        self.register_buffer("usage", torch.ones(num_codes))
        self.register_buffer("initialised", torch.tensor(False))
        self.register_buffer("hits", torch.zeros(num_codes), persistent=False)
        """Assignments per code in training batches since the last dead-code check (not saved)."""

    @staticmethod
    def flatten(z_e: torch.Tensor) -> torch.Tensor:
        """(N, D, *positions) → (M, D), one row per position."""
        return z_e.movedim(1, -1).reshape(-1, z_e.shape[1])

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        if z_e.shape[1] != self.code_dim:
            raise ValueError(f"z_e must have {self.code_dim} channels in dim 1, got shape {tuple(z_e.shape)}")
        flat = self.flatten(z_e)
        codebook = self.codebook
        distances = (flat.square().sum(1, keepdim=True) - 2 * flat @ codebook.t()
                     + codebook.square().sum(1).unsqueeze(0))
        indices = distances.argmin(1)
        codes = codebook[indices]
        commitment = self.beta * F.mse_loss(flat, codes.detach())
        codebook_loss = F.mse_loss(flat.detach(), codes)
        counts = torch.bincount(indices, minlength=self.num_codes).to(flat.dtype)
        if self.training:
            self._update(flat.detach(), indices, counts)
        quantized_flat = flat + (codes - flat).detach()
        quantized = quantized_flat.reshape(*z_e.movedim(1, -1).shape).movedim(-1, 1)
        share = counts / counts.sum()
        perplexity = torch.exp(-(share * torch.log(share.clamp_min(1e-12))).sum())
        return VQOutput(quantized, indices.reshape(z_e.movedim(1, -1).shape[:-1]), commitment, codebook_loss,
                        perplexity)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        decay = self.ema_decay if self.ema_decay is not None else self.usage_decay
        self.hits.add_(counts)
        self.usage.mul_(decay).add_(counts, alpha=1 - decay)
        if self.ema_decay is None:
            return
        sums = torch.zeros_like(self.ema_sum).index_add_(0, indices, flat)
        self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
        total = self.usage.sum()
        smoothed = (self.usage + self.smoothing) / (total + self.num_codes * self.smoothing) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))

    @torch.no_grad()
    def reset_codes(self, which: torch.Tensor, flat: torch.Tensor, generator: torch.Generator) -> int:
        """Set the codes where ``which`` (K,) is True to encoder outputs drawn from ``flat`` (M, D); their usage
        restarts at 1 and every code's ``hits`` at 0. Returns how many codes were reset."""
        chosen = torch.nonzero(which).flatten()
        self.hits.zero_()
        if len(chosen) == 0:
            return 0
        picks = flat[torch.randint(len(flat), (len(chosen),), generator=generator, device=generator.device)]
        self.codebook.data[chosen] = picks
        if self.ema_decay is not None:
            self.ema_sum[chosen] = picks
        self.usage[chosen] = 1.0
        return len(chosen)


class _Residual(nn.Module):
    """x + conv1×1(act(conv_k(act(x)))) (the official VQ-VAE residual layer), for 1-D or 2-D signals."""

    def __init__(self, conv: type[nn.Module], channels: int, hidden: int, activation: type[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(activation(), conv(channels, hidden, 3, padding=1), activation(),
                                  conv(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _residual_stack(conv: type[nn.Module], channels: int, hidden: int, layers: int,
                    activation: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(*(_Residual(conv, channels, hidden, activation) for _ in range(layers)), activation())


def _check_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner} {name} must be an int >= {minimum}, got {value!r}")


class VQVAE(nn.Module):
    """The interface of both VQ-VAEs. "Raw" frames are what the data holds (uint8 (N, H, W, 3) faces, float
    (N, F) spectra); ``prepare`` turns them into the network's input, ``encode_prequant`` gives the
    continuous latents z_e (N, code_dim, *positions) the MDVAE models, ``decode`` maps latents (quantised
    first by default) back to the network's output space and ``to_raw`` to raw units (faces float in [0, 1]
    (N, H, W, 3), spectra in the input's units)."""

    kind: str
    frame_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    encoder: nn.Module
    decoder: nn.Module
    quantizer: VectorQuantizer

    @property
    def latent_dim(self) -> int:
        """Size of one frame's flattened pre-quantisation latent."""
        size = 1
        for s in self.latent_shape:
            size *= s
        return size

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def check_raw(self, raw: torch.Tensor, leading: int = 1) -> None:
        """ValueError unless ``raw`` is (``leading`` dims, *frame_shape)."""
        if raw.dim() != leading + len(self.frame_shape) or tuple(raw.shape[leading:]) != self.frame_shape:
            raise ValueError(f"this {self.kind} VQ-VAE takes frames of shape {self.frame_shape} (after {leading} "
                             f"leading dims), got {tuple(raw.shape)}")

    def prepare(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to_raw(self, output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruction_loss(self, output: torch.Tensor, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit_input_scale(self, raw: torch.Tensor) -> None:
        """Fit any input normalisation on training frames (nothing to fit by default)."""

    def input_scale_fitted(self) -> bool:
        return True

    def encode_prequant(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z_e: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        if quantize:
            z_e = self.quantizer(z_e).quantized
        return self.decoder(z_e)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, VQOutput]:
        vq = self.quantizer(self.encode_prequant(x))
        return self.decoder(vq.quantized), vq

    def losses(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """``reconstruction``, ``commitment``, ``codebook``, ``perplexity`` and ``loss`` (what to minimise:
        reconstruction + commitment, + codebook when the codebook is not EMA-updated)."""
        x = self.prepare(raw)
        output, vq = self(x)
        terms = {"reconstruction": self.reconstruction_loss(output, raw, x), "commitment": vq.commitment,
                 "codebook": vq.codebook, "perplexity": vq.perplexity}
        terms["loss"] = terms["reconstruction"] + vq.commitment
        if self.quantizer.ema_decay is None:
            terms["loss"] = terms["loss"] + vq.codebook
        return terms

    @torch.no_grad()
    def encode_sequence(self, raw: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Clips of raw frames (B, T, *frame_shape) → flattened pre-quantisation latents (B, T, latent_dim),
        in eval mode (the frozen stage-1 model), computed on the model's device and returned on the input's."""
        self.check_raw(raw, leading=2)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        frames = raw.reshape(-1, *self.frame_shape)
        latents = torch.cat([self.encode_prequant(self.prepare(frames[i:i + batch_size].to(device))).flatten(1)
                             for i in range(0, len(frames), batch_size)])
        self.train(was_training)
        return latents.reshape(*raw.shape[:2], self.latent_dim).to(raw.device)

    @torch.no_grad()
    def decode_sequence(self, latents: torch.Tensor, quantize: bool = True, batch_size: int = 1024) -> torch.Tensor:
        """(B, T, latent_dim) latents (e.g. an MDVAE's reconstruction) → raw-unit frames (B, T, *frame_shape)."""
        if latents.dim() != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(f"latents must be (B, T, {self.latent_dim}), got {tuple(latents.shape)}")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        flat = latents.reshape(-1, *self.latent_shape)
        frames = torch.cat([self.to_raw(self.decode(flat[i:i + batch_size].to(device), quantize))
                            for i in range(0, len(flat), batch_size)])
        self.train(was_training)
        return frames.reshape(*latents.shape[:2], *self.frame_shape).to(latents.device)


class FrameVQVAE(VQVAE):
    """VQ-VAE of ``size``×``size`` RGB frames (size a multiple of 8); latent (code_dim, size/8, size/8)."""

    kind = "frames"

    def __init__(self, size: int = 64, *, hidden: int = 64, residual_hidden: int = 16, residual_layers: int = 2,
                 code_dim: int = 8, num_codes: int = 128, beta: float = 0.25, ema_decay: float | None = 0.99):
        super().__init__()
        for name, value in (("hidden", hidden), ("residual_hidden", residual_hidden), ("code_dim", code_dim),
                            ("num_codes", num_codes)):
            _check_int("FrameVQVAE", name, value)
        _check_int("FrameVQVAE", "residual_layers", residual_layers, 0)
        if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 8:
            raise ValueError(f"FrameVQVAE size must be a multiple of 8 (three stride-2 convs), got {size!r}")
        if hidden % 2:
            raise ValueError(f"FrameVQVAE hidden must be even, got {hidden}")
        self._config = {"kind": self.kind, "size": size, "hidden": hidden, "residual_hidden": residual_hidden,
                        "residual_layers": residual_layers, "code_dim": code_dim, "num_codes": num_codes,
                        "beta": beta, "ema_decay": ema_decay}
        self.frame_shape = (size, size, 3)
        self.latent_shape = (code_dim, size // 8, size // 8)
        half = hidden // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(3, half, 4, 2, 1), nn.ReLU(), nn.Conv2d(half, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, 1, 1),
            _residual_stack(nn.Conv2d, hidden, residual_hidden, residual_layers, nn.ReLU),
            nn.Conv2d(hidden, code_dim, 1))
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, ema_decay=ema_decay)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, hidden, 3, 1, 1),
            _residual_stack(nn.Conv2d, hidden, residual_hidden, residual_layers, nn.ReLU),
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(hidden, half, 4, 2, 1),
            nn.ReLU(), nn.ConvTranspose2d(half, 3, 4, 2, 1))

    def config(self) -> dict[str, Any]:
        return {**self._config, "frame_shape": list(self.frame_shape)}

    def prepare(self, raw: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) frames (or float ones in [0, 1]) → float (N, 3, H, W) in [−0.5, 0.5]."""
        self.check_raw(raw)
        x = raw.float().div(255) if raw.dtype == torch.uint8 else raw.float()
        return x.permute(0, 3, 1, 2) - 0.5

    def to_raw(self, output: torch.Tensor) -> torch.Tensor:
        return (output + 0.5).clamp(0, 1).permute(0, 2, 3, 1)

    def reconstruction_loss(self, output: torch.Tensor, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """MSE in pixel units of [0, 1]."""
        return F.mse_loss(output, x)


def itakura_saito(power: torch.Tensor, log_estimate: torch.Tensor) -> torch.Tensor:
    """Mean over bins and frames of D_IS(x ‖ y) = x/y − log(x/y) − 1, with x = ``power`` + LOG_EPS and
    y = exp(``log_estimate``) (the estimate given as a log so the ratio never divides by a rounded 0)."""
    log_ratio = torch.log(power + LOG_EPS) - log_estimate
    return (torch.exp(log_ratio) - log_ratio - 1).mean()


class SpectrumVQVAE(VQVAE):
    """VQ-VAE of one spectrum frame of ``bins`` values; latent (code_dim, ⌈bins/8⌉). The frame is padded
    (replicating its last bin) to a multiple of 8 and the output cropped back."""

    kind = "spectra"

    def __init__(self, bins: int, *, spectrum: str = "power", channels: tuple[int, int] = (16, 32),
                 residual_hidden: int = 16, residual_layers: int = 1, code_dim: int = 8, num_codes: int = 64,
                 beta: float = 0.25, ema_decay: float | None = 0.99):
        super().__init__()
        if spectrum not in ("power", "log_power"):
            raise ValueError(f"spectrum must be 'power' or 'log_power', got {spectrum!r}")
        _check_int("SpectrumVQVAE", "bins", bins, 2)
        for name, value in (("residual_hidden", residual_hidden), ("code_dim", code_dim), ("num_codes", num_codes)):
            _check_int("SpectrumVQVAE", name, value)
        _check_int("SpectrumVQVAE", "residual_layers", residual_layers, 0)
        c1, c2 = channels
        self._config = {"kind": self.kind, "bins": bins, "spectrum": spectrum, "channels": [c1, c2],
                        "residual_hidden": residual_hidden, "residual_layers": residual_layers,
                        "code_dim": code_dim, "num_codes": num_codes, "beta": beta, "ema_decay": ema_decay}
        self.spectrum = spectrum
        self.frame_shape = (bins,)
        self.padded = -(-bins // 8) * 8
        self.latent_shape = (code_dim, self.padded // 8)
        self.register_buffer("log_mean", torch.tensor(0.0))
        self.register_buffer("log_std", torch.tensor(1.0))
        self.register_buffer("scale_fitted", torch.tensor(False))
        self.encoder = nn.Sequential(
            nn.Conv1d(1, c1, 4, 2, 1), nn.Tanh(), nn.Conv1d(c1, c2, 4, 2, 1), nn.Tanh(),
            nn.Conv1d(c2, c2, 3, 2, 1), _residual_stack(nn.Conv1d, c2, residual_hidden, residual_layers, nn.Tanh),
            nn.Conv1d(c2, code_dim, 1))
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, ema_decay=ema_decay)
        self.decoder = nn.Sequential(
            nn.Conv1d(code_dim, c2, 3, 1, 1), _residual_stack(nn.Conv1d, c2, residual_hidden, residual_layers, nn.Tanh),
            nn.ConvTranspose1d(c2, c2, 4, 2, 1), nn.Tanh(), nn.ConvTranspose1d(c2, c1, 4, 2, 1), nn.Tanh(),
            nn.ConvTranspose1d(c1, 1, 4, 2, 1))

    def config(self) -> dict[str, Any]:
        return {**self._config, "frame_shape": list(self.frame_shape)}

    def _log(self, raw: torch.Tensor) -> torch.Tensor:
        raw = raw.float()
        return torch.log(raw + LOG_EPS) if self.spectrum == "power" else raw

    @torch.no_grad()
    def fit_input_scale(self, raw: torch.Tensor) -> None:
        """One mean and std of the (log-)spectrum values over all frames and bins of (N, F) training frames."""
        self.check_raw(raw)
        if self.spectrum == "power" and bool((raw < 0).any()):
            raise ValueError("spectrum='power' needs non-negative spectra; these have negative values "
                             "(log-power frames? build the VQ-VAE with spectrum='log_power')")
        logs = self._log(raw)
        self.log_mean.fill_(logs.mean().item())
        self.log_std.fill_(max(logs.std(correction=0).item(), 1e-6))
        self.scale_fitted.fill_(True)

    def input_scale_fitted(self) -> bool:
        return bool(self.scale_fitted)

    def prepare(self, raw: torch.Tensor) -> torch.Tensor:
        """(N, F) spectra → standardised log-spectra (N, 1, padded F)."""
        self.check_raw(raw)
        x = ((self._log(raw) - self.log_mean) / self.log_std).unsqueeze(1)
        return F.pad(x, (0, self.padded - self.frame_shape[0]), mode="replicate")

    def _log_output(self, output: torch.Tensor) -> torch.Tensor:
        return output[:, 0, :self.frame_shape[0]] * self.log_std + self.log_mean

    def to_raw(self, output: torch.Tensor) -> torch.Tensor:
        logs = self._log_output(output)
        return torch.exp(logs) if self.spectrum == "power" else logs

    def reconstruction_loss(self, output: torch.Tensor, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """IS divergence per bin for power spectra; MSE of the standardised log-power otherwise."""
        if self.spectrum == "power":
            return itakura_saito(raw.float(), self._log_output(output))
        return F.mse_loss(output[..., :self.frame_shape[0]], x[..., :self.frame_shape[0]])


_VQVAE_CLASSES: dict[str, type[VQVAE]] = {"frames": FrameVQVAE, "spectra": SpectrumVQVAE}


def build_vqvae(config: Mapping[str, Any]) -> VQVAE:
    """The VQ-VAE a ``config()`` describes (weights not loaded). Unknown kinds raise ValueError."""
    kind = config.get("kind")
    if kind not in _VQVAE_CLASSES:
        raise ValueError(f"VQ-VAE config kind {kind!r} unknown; allowed: {sorted(_VQVAE_CLASSES)}")
    kwargs = {k: v for k, v in config.items() if k not in ("kind", "frame_shape", "checkpoint")}
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    return _VQVAE_CLASSES[kind](**kwargs)


def save_vqvae(model: VQVAE, path: str | Path, extra: Mapping[str, Any] | None = None) -> None:
    """Write the weights to ``path`` (safetensors) with ``config()`` and ``extra`` (e.g. training stats)
    embedded, so :func:`load_vqvae` rebuilds it and :func:`check_frame_size` knows its frame shape."""
    save_tensors(Path(path), model.state_dict(), {**model.config(), **(extra or {})})


def load_vqvae(path: str | Path) -> tuple[VQVAE, dict[str, Any]]:
    """(model in eval mode, its metadata with ``checkpoint`` = ``path``) from a :func:`save_vqvae` file;
    a missing file, a foreign config or weights that do not fit raise CheckpointError (a ValueError)
    naming the file."""
    tensors, meta = load_tensors(Path(path))
    meta = {**meta, "checkpoint": str(path)}
    try:
        model = build_vqvae({k: v for k, v in meta.items() if k in _config_keys(meta)})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"VQ-VAE checkpoint {path}: its config does not build a VQ-VAE ({exc})") from None
    load_state_strict(model, tensors, path)
    return model.eval(), meta


def _config_keys(meta: Mapping[str, Any]) -> set[str]:
    cls = _VQVAE_CLASSES.get(meta.get("kind"))
    return {"kind"} | (set(inspect.signature(cls.__init__).parameters) - {"self"} if cls else set())


def check_frame_size(model_meta: Mapping[str, Any], frames: torch.Tensor, *, leading: int | None = None,
                     checkpoint: str | None = None) -> None:
    """ValueError naming the checkpoint, its frame shape and the frames' shape unless the trailing dims of
    ``frames`` equal the ``frame_shape`` the VQ-VAE in ``model_meta`` (its ``config()``, as stored with the
    checkpoint) was trained on. ``leading``: how many leading dims ``frames`` has (default: all but the
    frame's). ``checkpoint`` (or ``model_meta["checkpoint"]``) names it in the message."""
    if "frame_shape" not in model_meta:
        raise ValueError(f"VQ-VAE checkpoint {checkpoint or model_meta.get('checkpoint', '<unnamed>')}: its "
                         f"metadata has no 'frame_shape' (keys: {sorted(model_meta)})")
    expected = tuple(int(s) for s in model_meta["frame_shape"])
    name = checkpoint or model_meta.get("checkpoint", "<unnamed>")
    leading = frames.dim() - len(expected) if leading is None else leading
    actual = tuple(frames.shape[leading:]) if leading >= 0 else tuple(frames.shape)
    if leading < 0 or actual != expected:
        raise ValueError(f"VQ-VAE checkpoint {name} was trained on {model_meta.get('kind', 'frames')} of shape "
                         f"{expected} per frame, but got frames of shape {actual} (input {tuple(frames.shape)}); "
                         f"resample the frames to {expected} or train stage 1 at this size")


def train_vqvae(model: VQVAE, batches: Iterable[torch.Tensor], *, steps: int, lr: float, seed: int,
                restart_every: int = 100, dead_count: float = 1.0, device: torch.device | str = "cpu",
                on_step: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Adam at ``lr`` for ``steps`` steps on raw frames from ``batches`` (an endless iterator such as
    ``training.random_batches(frames, B, seed)``, or a list cycled). On the first batch: the input scale is
    fitted if it was not, and the codebook is set to encoder outputs of that batch. Every ``restart_every``
    steps codes assigned fewer than ``dead_count`` times since the last check (all positions of all batches
    in between) are reset to current encoder outputs. Both draw from ``seed``. The model and each batch are
    moved to ``device``. Returns one dict per step: ``step``, the loss terms, ``restarted`` (codes reset)."""
    _check_int("train_vqvae", "steps", steps)
    stream = cycle(batches)
    generator = torch.Generator(device=device).manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in progress(range(steps), desc=f"av.vqvae {model.kind}", unit="step"):
        raw = next(stream).to(device)
        if not model.input_scale_fitted():
            model.fit_input_scale(raw)
        quantizer = model.quantizer
        restarted = 0
        if not bool(quantizer.initialised) or (restart_every > 0 and step > 0 and step % restart_every == 0):
            with torch.no_grad():
                flat = quantizer.flatten(model.encode_prequant(model.prepare(raw)))
            if not bool(quantizer.initialised):
                restarted = quantizer.reset_codes(torch.ones(quantizer.num_codes, dtype=torch.bool), flat, generator)
                quantizer.initialised.fill_(True)
            else:
                restarted = quantizer.reset_codes(quantizer.hits < dead_count, flat, generator)
        terms = model.losses(raw)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        record = {"step": step + 1, "restarted": restarted} | {k: v.item() for k, v in terms.items()}
        history.append(record)
        if on_step is not None:
            on_step(step + 1, record)
    model.eval()
    return history
