"""Per-family device checks for ``benchmarks/gpu_check.py``: one training step and one evaluation of every
family's models (and the transfer attacks), run on two devices from identical state and inputs and compared.

Each entry of :data:`FAMILY_CHECKS` is a function ``run(device) -> StepResult``: it builds the family's model(s)
on the CPU from a fixed seed (``torch.manual_seed(0)``), makes a small synthetic batch with a CPU generator,
trains ONE step with the family's own loss and optimiser settings (the defaults of its ``params.py``) on
``device``, then runs one eval-mode forward pass on fixed inputs. It returns the step's loss, the model state
after the step (parameters and buffers) and the evaluation outputs, all copied to the CPU. :func:`run_check`
runs one entry on two devices and :func:`compare` the results. A new family (or model) is one more
``FAMILY_CHECKS.register(name, FamilyCheck(...))`` call.

Where the family's own loop takes a device (image ``train_contrastive``, audio ``train_audio_ssl``, SR
``train_sr``, CTR ``train_ctr`` with its data moved, av ``train_vqvae``), the step IS that loop run for one
batch. Differences from the family's own runs, named:

- dropout is 0 in the checked models (audio encoder, text seq2seq): dropout masks come from the device's
  global generator, whose stream differs between CPU and CUDA;
- video and text: their training loops have no device argument (they train on the CPU only), so the step is
  written here from the family's public pieces (``model.embed`` / ``extract``, the distortion layer,
  ``fidelity_loss`` + ``message_loss`` with the ``VideoTrainParams`` weights; text ``mle_loss``, Adam and
  the gradient clip of ``train_mle``). AMI's adversarial fine-tuning is not covered (same reason);
- av sequence models (MDVAE and its baselines): ``train_sequence_model`` draws the reparameterisation noise
  from a generator on the device, whose stream differs from the CPU's, so the step uses the posterior
  means (``terms(..., generator=None)``), i.e. the same negative ELBO without the sampling;
- av VQ-VAEs: the codebook initialisation of the first ``train_vqvae`` step draws codes on the device, so
  that first step runs on the CPU for both arms; the compared step is the second (no draws);
- attacks: they draw their random start and SSA's spectrum noise from the CPU generator for this check
  (``attack.draws_on_device = False``), so both devices start from the same point.

Tolerance (``rtol``): each compared part (the loss, the state after the step pooled over all tensors, the
eval outputs pooled) must satisfy ‖a − b‖₂ ≤ rtol · max(‖a‖₂, ‖b‖₂); integer tensors must be equal. TF32 is
switched off, so both devices compute in IEEE fp32 and differ only by summation order (cuBLAS / cuDNN vs
oneDNN / MKL): about 1e-6 relative per op, grown through a few layers to ~1e-5. Adam's first step moves every
weight by about lr·sign(g), so an element whose gradient is ~0 may move the other way on the other device
(2·lr for that element, ~1e-3 of a layer's norm at lr 1e-3 if every element flipped). ``RTOL = 1e-3`` leaves
that room while a real fault (a tensor on the wrong device, a different random stream, a missed ``.eval()``,
a device-dependent branch) moves these norms by 1e-2 to 1. Attacks take ``sign`` of the input gradient at
every step, and a flipped sign moves a pixel by 2α and the later steps from there, so their
perturbations get ``ATTACK_RTOL = 5e-2``; an independent random start differs by ~1. CPU against CPU must
agree exactly (rtol 0): the check is then a self-test of the harness and of the families' determinism.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from repflow.attacks import make_attack
from repflow.families.audio.models import AudioNTT, projection_head
from repflow.families.audio.params import AudioTrainParams
from repflow.families.audio.ssl import AUDIO_METHODS, train_audio_ssl
from repflow.families.av.baselines import SEQUENCE_MODELS, build_sequence_model
from repflow.families.av.params import AvTrainParams, AvVqvaeParams
from repflow.families.av.vqvae import FrameVQVAE, SpectrumVQVAE, train_vqvae
from repflow.families.ctr.features import CtrTensors
from repflow.families.ctr.models import CTR_MODELS, build_ctr_model
from repflow.families.ctr.params import CtrTrainParams
from repflow.families.ctr.synthetic import synthetic_ctr
from repflow.families.ctr.training import predict, train_ctr
from repflow.families.image.contrastive import train_contrastive
from repflow.families.image.models import build_classifier, build_encoder
from repflow.families.image.models.encoders import ENCODERS
from repflow.families.image.params import TrainParams
from repflow.families.image.train_methods import TRAIN_METHODS, build_training_head
from repflow.families.sr.models import SR_MODELS, build_sr_model
from repflow.families.sr.params import SRTrainParams
from repflow.families.sr.training import train_sr
from repflow.families.text.ami import make_batches, mle_loss
from repflow.families.text.models import SEQ2SEQ, build_seq2seq
from repflow.families.text.params import TextTrainParams
from repflow.families.video.distortions import DISTORTIONS, Combined
from repflow.families.video.losses import fidelity_loss, message_loss
from repflow.families.video.models import WATERMARKERS, build_watermarker
from repflow.families.video.params import TRAIN_DISTORTIONS, VideoTrainParams
from repflow.families.video.training import as_float_clips, random_messages
from repflow.registry import Registry

__all__ = ["ATTACK_RTOL", "FAMILY_CHECKS", "RTOL", "FamilyCheck", "StepResult", "compare", "family_table",
           "relative_difference", "run_check", "strict_fp32"]

RTOL = 1e-3
ATTACK_RTOL = 5e-2
_TINY = 1e-12


@dataclass
class StepResult:
    """What one device produced: ``loss`` (1-D float, the step's loss terms), ``state`` (name → tensor after
    the step: parameters and buffers of every trained module) and ``outputs`` (name → eval-mode outputs)."""

    loss: torch.Tensor
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyCheck:
    """``run(device)``: the check; ``rtol``: its tolerance across devices (see the module docstring)."""

    run: Callable[[torch.device], StepResult]
    rtol: float = RTOL


FAMILY_CHECKS: Registry[FamilyCheck] = Registry("GPU check")


def strict_fp32() -> None:
    """No TF32 on CUDA: matmuls and convolutions in IEEE fp32, as on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


def _state(**modules: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for prefix, m in modules.items() for k, v in _cpu(m.state_dict()).items()}


def _loss(*values: float | torch.Tensor) -> torch.Tensor:
    return torch.tensor([float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in values],
                        dtype=torch.float64)


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    """(‖a − b‖ / max(‖a‖, ‖b‖) pooled over the float tensors, the tensor with the largest share of ‖a − b‖).
    Differing names, shapes or integer values give inf."""
    if a.keys() != b.keys():
        return math.inf, f"names differ: {sorted(set(a) ^ set(b))[:3]}"
    diff = norm_a = norm_b = 0.0
    worst, worst_diff = "", -1.0
    for name in a:
        x, y = a[name], b[name]
        if x.shape != y.shape:
            return math.inf, name
        if not x.is_floating_point():
            if not torch.equal(x, y):
                return math.inf, name
            continue
        x, y = x.double(), y.double()
        d = float((x - y).square().sum())
        diff, norm_a, norm_b = diff + d, norm_a + float(x.square().sum()), norm_b + float(y.square().sum())
        if d > worst_diff:
            worst, worst_diff = name, d
    if not math.isfinite(diff):
        return math.inf, worst
    scale = math.sqrt(max(norm_a, norm_b))
    return (0.0 if diff == 0 else math.sqrt(diff) / max(scale, _TINY)), worst


def compare(a: StepResult, b: StepResult, rtol: float) -> dict:
    """Relative differences of loss, state and outputs, the worst tensor, and ``agree`` (each ≤ rtol)."""
    row: dict = {}
    worst = ""
    for part in ("loss", "state", "outputs"):
        x, y = getattr(a, part), getattr(b, part)
        rel, name = relative_difference({"loss": x}, {"loss": y}) if part == "loss" else relative_difference(x, y)
        row[part] = rel
        if rel > rtol and not worst:
            worst = f"{part}:{name}"
    row["rtol"] = rtol
    row["agree"] = all(row[p] <= rtol for p in ("loss", "state", "outputs"))
    row["first over"] = worst or "-"
    return row


def run_check(name: str, device_a: torch.device | str, device_b: torch.device | str,
              rtol: float | None = None) -> dict:
    """Run ``FAMILY_CHECKS[name]`` on both devices and compare; ``rtol`` defaults to the entry's."""
    check = FAMILY_CHECKS[name]
    a, b = check.run(torch.device(device_a)), check.run(torch.device(device_b))
    return {"check": name, "devices": f"{device_a} vs {device_b}",
            **compare(a, b, check.rtol if rtol is None else rtol)}


def family_table(device_b: torch.device | str, names: list[str] | None = None, exact: bool = False) -> list[dict]:
    """One row per check, CPU against ``device_b``; ``exact``: rtol 0 (CPU against CPU must agree bitwise).
    A check that raises gets a row with the error instead of stopping the table."""
    strict_fp32()
    rows = []
    for name in names if names is not None else list(FAMILY_CHECKS):
        try:
            rows.append(run_check(name, "cpu", device_b, rtol=0.0 if exact else None))
        except Exception as exc:  # a family that fails on a device is a result of the check, not its end
            rows.append({"check": name, "devices": f"cpu vs {device_b}", "loss": math.nan, "state": math.nan,
                         "outputs": math.nan, "rtol": 0.0 if exact else FAMILY_CHECKS[name].rtol, "agree": False,
                         "first over": f"error: {type(exc).__name__}: {str(exc)[:200]}"})
        print(f"{rows[-1]['check']}: agree={rows[-1]['agree']}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ image

def _blobs(n: int, size: int = 16, seed: int = 1) -> torch.Tensor:
    """uint8 (n, 1, size, size): noise plus a bright square at a place drawn per image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g) * 0.3
    corner = torch.randint(0, size // 2, (n, 2), generator=g)
    for i, (r, c) in enumerate(corner.tolist()):
        x[i, :, r:r + size // 2, c:c + size // 4] += 0.6
    return (x.clamp(0, 1) * 255).to(torch.uint8)


def _image_check(method: str, encoder: str = "small_cnn") -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        entry, p = TRAIN_METHODS[method], TrainParams()
        images = _blobs(8)
        torch.manual_seed(0)
        enc = build_encoder({"name": encoder, "in_channels": 1, "width": 8, "dual_bn": entry.adversarial})
        head, _ = build_training_head(method, enc.out_dim, tuple(images.shape[1:]), proj_dim=16,
                                      dual_bn=entry.adversarial)
        partners = _blobs(16, seed=2).view(8, 2, *images.shape[1:]) if entry.latent_views else None
        adversary = entry.adversary(p.adversarial, 1) if entry.adversarial else None
        hist = train_contrastive(enc, head, images, epochs=1, batch_size=len(images), lr=p.lr,
                                 weight_decay=p.weight_decay, temperature=p.temperature,
                                 augment=p.augment.model_dump(), device=device, seed=0, partners=partners,
                                 adversary=adversary)
        enc.eval()
        with torch.no_grad():
            features = enc(images.to(device).float().div(255))
        return StepResult(_loss(hist[0]["loss"]), _state(encoder=enc, head=head), _cpu({"features": features}))
    return run


for _method in TRAIN_METHODS:
    FAMILY_CHECKS.register(f"image/{_method}", FamilyCheck(_image_check(_method)))
for _encoder in ENCODERS:
    if _encoder != "small_cnn":
        FAMILY_CHECKS.register(f"image/simclr/{_encoder}", FamilyCheck(_image_check("simclr", _encoder)))


# ------------------------------------------------------------------------------------------------ attacks

def _attack_check(name: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        torch.manual_seed(0)
        model = build_classifier({"arch": "convnet", "in_shape": [1, 16, 16], "num_classes": 4, "width": 8,
                                  "depth": 2}).to(device).eval()
        g = torch.Generator().manual_seed(3)
        x, y = _blobs(8).float().div(255), torch.randint(0, 4, (8,), generator=g)
        extra = {"num_spectrum": 4} if name == "ssa" else {}
        attack = make_attack(name, model, eps=8 / 255, steps=5, seed=0, **extra)
        attack.draws_on_device = False
        x_adv = attack(x.to(device), y.to(device))
        with torch.no_grad():
            logits = model(x_adv)
            loss = nn.functional.cross_entropy(logits, y.to(device))
        return StepResult(_loss(loss), {}, _cpu({"perturbation": x_adv - x.to(device), "logits": logits}))
    return run


for _attack in ("pgd", "mifgsm", "di", "ssa"):
    FAMILY_CHECKS.register(f"attacks/{_attack}", FamilyCheck(_attack_check(_attack), rtol=ATTACK_RTOL))


# ------------------------------------------------------------------------------------------------ audio

def _audio_check(method: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        p = AudioTrainParams()
        logmel = torch.randn(8, 1, 64, 32, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(0)
        enc = AudioNTT(n_mels=64, channels=8, blocks=3, dim=32, dropout=0.0)
        head = projection_head(32, 16)
        hist = train_audio_ssl(enc, head, logmel, method=method, epochs=1, batch_size=len(logmel), lr=p.lr,
                               weight_decay=p.weight_decay, temperature=p.temperature,
                               augment=p.augment.model_dump(), negatives=p.negatives.model_dump(), seed=0,
                               device=device)
        enc.eval()
        with torch.no_grad():
            embedding = enc(logmel.to(device))
        return StepResult(_loss(hist[0]["loss"]), _state(encoder=enc, head=head), _cpu({"embedding": embedding}))
    return run


for _method in AUDIO_METHODS:
    FAMILY_CHECKS.register(f"audio/{_method}", FamilyCheck(_audio_check(_method)))


# ------------------------------------------------------------------------------------------------ sr

_SR_SIZES = {"channels": 8, "blocks": 2}


def _sr_check(name: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        p, scale = SRTrainParams(), 2
        g = torch.Generator().manual_seed(1)
        hr = torch.randint(0, 256, (4, 3, 24, 24), generator=g, dtype=torch.uint8)
        lr_images = nn.functional.avg_pool2d(hr.float(), scale).round().to(torch.uint8)
        torch.manual_seed(0)
        own = inspect.signature(SR_MODELS[name].factory).parameters
        model = build_sr_model(name, scale, **{k: v for k, v in _SR_SIZES.items()
                                              if k in own and k not in SR_MODELS[name].fixed})
        loss = math.nan
        if any(True for _ in model.parameters()):
            loss = train_sr(model, lr_images, hr, epochs=1, batch_size=len(hr), lr=p.lr,
                            lr_half_every=p.lr_half_every, seed=0, device=device)[0]["loss"]
        model.to(device).eval()
        with torch.no_grad():
            sr = model(lr_images.to(device).float().div(255))
        return StepResult(_loss(0.0 if math.isnan(loss) else loss), _state(model=model), _cpu({"sr": sr}))
    return run


for _name in SR_MODELS:
    FAMILY_CHECKS.register(f"sr/{_name}", FamilyCheck(_sr_check(_name)))


# ------------------------------------------------------------------------------------------------ video

def _video_check(name: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        p, bits = VideoTrainParams(), 8
        g = torch.Generator().manual_seed(1)
        clips = torch.randint(0, 256, (2, 4, 16, 16, 3), generator=g, dtype=torch.uint8)
        torch.manual_seed(0)
        model = build_watermarker(name, 4, bits, width=8, encoder_blocks=1, decoder_blocks=1).to(device)
        distortion = Combined([DISTORTIONS[d]() for d in TRAIN_DISTORTIONS], seed=0).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
        clip = as_float_clips(clips).to(device)
        msg = random_messages(len(clip), bits, g).to(device)
        model.train()
        marked = model.embed(clip, msg)
        logits = model.extract(distortion(marked, g))
        fidelity, message = fidelity_loss(marked, clip), message_loss(logits, msg)
        loss = p.fidelity_weight * fidelity + p.message_weight * message  # frame loss: off in the warm-up epochs
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            marked = model.embed(clip, msg)
            logits = model.extract(marked)
        return StepResult(_loss(fidelity, message), _state(model=model),
                          _cpu({"marked": marked, "logits": logits}))
    return run


for _name in WATERMARKERS:
    FAMILY_CHECKS.register(f"video/{_name}", FamilyCheck(_video_check(_name)))


# ------------------------------------------------------------------------------------------------ ctr

def _ctr_check(name: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        p = CtrTrainParams()
        task = synthetic_ctr(0, items=40, users=8, impressions_per_item=2)
        train = task.splits["train"]
        data = CtrTensors(*(None if t is None else t.to(device) for t in
                            (train.user, train.item, train.history, train.history_len, train.label,
                             train.click_rate)))
        torch.manual_seed(0)
        model = build_ctr_model(name, task.features, dim=8, user_dim=8, attention_hidden=8, hidden=(16, 8)).to(device)
        hist = train_ctr(model, data, epochs=1, batch_size=len(data), lr=p.lr, seed=0,
                         adv_weight=p.adversarial_weight, weight_decay=p.weight_decay)
        probs = predict(model, data)
        terms = [hist[0][k] for k in ("loss", "bce", "d1", "d2") if k in hist[0]]
        return StepResult(_loss(*terms), _state(model=model), _cpu({"click_prob": probs}))
    return run


for _name in CTR_MODELS:
    FAMILY_CHECKS.register(f"ctr/{_name}", FamilyCheck(_ctr_check(_name)))


# ------------------------------------------------------------------------------------------------ text

def _text_check(name: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        p, vocab = TextTrainParams(), 24
        g = torch.Generator().manual_seed(1)
        pairs = [(torch.randint(4, vocab, (3 + i % 4,), generator=g).tolist(),
                  torch.randint(4, vocab, (2 + i % 3,), generator=g).tolist()) for i in range(8)]
        source, target = next(make_batches(pairs, len(pairs), g))
        source, target = source.to(device), target.to(device)
        torch.manual_seed(0)
        model = build_seq2seq(name, vocab, embed=16, hidden=16, layers=p.layers, dropout=0.0).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
        model.train()
        loss = mle_loss(model, source, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # train_mle's max_grad_norm
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(source, target)
        return StepResult(_loss(loss), _state(model=model), _cpu({"logits": logits}))
    return run


for _name in SEQ2SEQ:
    FAMILY_CHECKS.register(f"text/{_name}", FamilyCheck(_text_check(_name)))


# ------------------------------------------------------------------------------------------------ av

def _vqvae_check(kind: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        p = AvVqvaeParams()
        g = torch.Generator().manual_seed(1)
        if kind == "frames":
            raw = torch.randint(0, 256, (8, 16, 16, 3), generator=g, dtype=torch.uint8)
            torch.manual_seed(0)
            model = FrameVQVAE(16, hidden=8, residual_hidden=4, residual_layers=1, code_dim=4, num_codes=16)
        else:
            raw = torch.rand(8, 20, generator=g).square() + 1e-3
            torch.manual_seed(0)
            model = SpectrumVQVAE(20, channels=(4, 8), residual_hidden=4, code_dim=4, num_codes=16)
        train_vqvae(model, [raw], steps=1, lr=p.lr, seed=0, device="cpu")  # codebook set up from CPU draws
        hist = train_vqvae(model, [raw], steps=1, lr=p.lr, seed=0, device=device)
        terms = [v for k, v in sorted(hist[0].items()) if k not in ("step", "restarted")]
        with torch.no_grad():
            latents = model.encode_prequant(model.prepare(raw.to(device)))
            output = model.decode(latents)
        return StepResult(_loss(*terms), _state(model=model), _cpu({"latents": latents, "output": output}))
    return run


def _sequence_check(name: str) -> Callable[[torch.device], StepResult]:
    def run(device: torch.device) -> StepResult:
        p = AvTrainParams()
        g = torch.Generator().manual_seed(1)
        batch = {"audio": torch.randn(4, 6, 5, generator=g), "visual": torch.randn(4, 6, 7, generator=g)}
        torch.manual_seed(0)
        model = build_sequence_model(name, audio_dim=5, visual_dim=7).to(device)
        batch = {k: v.to(device) for k, v in batch.items()}
        model.fit_standardisation(batch)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr)
        model.train()
        terms = model.terms(batch, beta=1.0, generator=None)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            evaluation = model.terms(batch, beta=1.0, generator=None)
        return StepResult(_loss(*(terms[k] for k in sorted(terms))), _state(model=model),
                          _cpu({k: v.reshape(-1) for k, v in evaluation.items()}))
    return run


for _kind in ("frames", "spectra"):
    FAMILY_CHECKS.register(f"av/vqvae_{_kind}", FamilyCheck(_vqvae_check(_kind)))
for _name in SEQUENCE_MODELS:
    FAMILY_CHECKS.register(f"av/{_name}", FamilyCheck(_sequence_check(_name)))
