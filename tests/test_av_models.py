"""The audio-visual family's models and algorithms: the VQ layer against a direct computation, the ELBO's
terms against torch.distributions, every registered sequence model's shapes and gradients, a toy check that
MDVAE's w takes the static factor, the probes on data with a known answer, swaps and denoising plumbing,
the frame-size guard and determinism. Tiny sizes throughout."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from repflow.checkpoints import save_tensors
from repflow.families.av.baselines import SEQUENCE_MODELS, DVAE, build_sequence_model
from repflow.families.av.mdvae import MDVAE, elbo
from repflow.families.av.probes import linear_information, mutual_information, per_frame_samples
from repflow.probe import few_label_accuracy
from repflow.families.av.swaps import (corrupt_frames, denoising_psnr, image_strip, psnr, render_latents,
                                       spectra_to_waveform, swap_static)
from repflow.families.av.training import evaluate_sequence_model, random_batches, train_sequence_model
from repflow.families.av.vqvae import (FrameVQVAE, SpectrumVQVAE, VectorQuantizer, build_vqvae, check_frame_size,
                                       load_vqvae, save_vqvae, train_vqvae)
from repflow.registry import UnknownName

pytestmark = pytest.mark.usefixtures("one_thread")

B, T, DA, DV = 3, 6, 10, 12
TINY = {"hidden_dim": 16, "visual_feature_dim": 8}
TINY_DYNAMIC = {"gru_dim": 8, "w_gru_dim": 8, "w_dim": 4}


def latents(seed: int = 0, b: int = B, t: int = T) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, t, DA, generator=g), "visual": torch.randn(b, t, DV, generator=g) * 3 + 1}


def tiny_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    sizes = dict(TINY) | (TINY_DYNAMIC if name != "frame_vae" else {"z_dim": 4})
    return build_sequence_model(name, audio_dim=DA, visual_dim=DV, **sizes)


def direct_gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    return kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()), Normal(mu_p, (0.5 * logvar_p).exp())).sum(-1)


# --- stage 1: the VQ layer and the VQ-VAEs -------------------------------------------------------------------

def test_vq_picks_nearest_codes_with_straight_through_gradients_and_commitment():
    torch.manual_seed(0)
    vq = VectorQuantizer(6, 3, beta=0.25, ema_decay=None)
    z_e = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = vq(z_e)
    rows = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    codebook = vq.codebook.detach()
    nearest = torch.tensor([min(range(6), key=lambda k: float((r - codebook[k]).square().sum())) for r in rows])
    assert torch.equal(out.indices.flatten(), nearest)
    codes = codebook[nearest]
    assert torch.allclose(out.quantized.detach().permute(0, 2, 3, 1).reshape(-1, 3), codes, atol=1e-6)
    assert torch.allclose(out.commitment, 0.25 * (rows - codes).square().mean())
    assert torch.allclose(out.codebook, (rows - codes).square().mean())
    weights = torch.randn_like(z_e)
    (out.quantized * weights).sum().backward(retain_graph=True)
    assert torch.equal(z_e.grad, weights)  # straight-through: dL/dz_e = dL/dquantized
    assert vq.codebook.grad is None
    z_e.grad = None
    out.commitment.backward(retain_graph=True)
    assert torch.allclose(z_e.grad, 0.25 * 2 * (z_e.detach() - out.quantized.detach()) / z_e.numel())
    assert vq.codebook.grad is None  # the commitment loss moves the encoder only
    out.codebook.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0


def test_ema_codebook_moves_to_the_mean_of_its_vectors():
    torch.manual_seed(0)
    vq = VectorQuantizer(2, 2, ema_decay=0.8).train()
    vq.codebook.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    vq.ema_sum.copy_(vq.codebook)
    points = torch.tensor([[-3.0, 1.0], [-2.0, 1.0], [2.0, -1.0], [4.0, -1.0]])
    for _ in range(100):
        vq(points.t().reshape(1, 2, 4))
    assert torch.allclose(vq.codebook, torch.tensor([[-2.5, 1.0], [3.0, -1.0]]), atol=1e-3)


@pytest.mark.parametrize("kind", ["frames", "spectra"])
def test_vqvae_shapes_and_sequence_roundtrip(kind):
    torch.manual_seed(0)
    if kind == "frames":
        vq = FrameVQVAE(32, hidden=8, residual_hidden=4, code_dim=4, num_codes=16)
        raw = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
        assert vq.latent_shape == (4, 4, 4)
    else:
        vq = SpectrumVQVAE(129, code_dim=4, num_codes=16)
        raw = torch.rand(2, 3, 129) ** 4
        assert vq.latent_shape == (4, 17)
    z = vq.encode_sequence(raw)
    assert z.shape == (2, 3, vq.latent_dim)
    back = vq.decode_sequence(z)
    assert back.shape == raw.shape and back.dtype == torch.float32
    rebuilt = build_vqvae(vq.config())
    rebuilt.load_state_dict(vq.state_dict())
    assert torch.equal(rebuilt.encode_sequence(raw), z)


@pytest.mark.slow
def test_spectrum_vqvae_learns_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    tilt = torch.linspace(0, -6, 65)
    spectra = torch.exp(tilt + torch.randn(256, 1, generator=g) + 0.3 * torch.randn(256, 65, generator=g))

    def run():
        torch.manual_seed(1)
        vq = SpectrumVQVAE(65, code_dim=4, num_codes=16)
        return vq, train_vqvae(vq, random_batches(spectra, 32, seed=2), steps=40, lr=5e-3, seed=3)

    (vq, first), (vq2, _) = run(), run()
    assert first[-1]["reconstruction"] < 0.5 * first[0]["reconstruction"], (first[0], first[-1])
    assert all(torch.equal(a, b) for a, b in zip(vq.state_dict().values(), vq2.state_dict().values()))


@pytest.mark.slow
def test_dead_code_restarts_raise_the_codebook_perplexity():
    """Spectra that are mostly near-silence (as speech clips with pauses): without restarts (dead_count 0, what
    the old EMA-usage < 0.01 rule amounted to in any run under ~460 steps) the codebook collapses onto a few
    codes; restarting codes unused since the last check spreads the use."""
    g = torch.Generator().manual_seed(0)
    loud = torch.rand(512, 1, generator=g) < 0.3
    logs = torch.where(loud, 4 + 2 * torch.randn(512, 65, generator=g), -8 + 0.1 * torch.randn(512, 65, generator=g))
    spectra = torch.exp(torch.linspace(0, -6, 65) + logs)

    def perplexity(dead_count: float) -> tuple[float, int]:
        torch.manual_seed(1)
        vq = SpectrumVQVAE(65, code_dim=4, num_codes=16)
        history = train_vqvae(vq, random_batches(spectra, 32, seed=2), steps=100, lr=5e-3, seed=3, restart_every=20,
                              dead_count=dead_count)
        return sum(h["perplexity"] for h in history[-20:]) / 20, sum(h["restarted"] for h in history[1:])

    (collapsed, none), (used, restarted) = perplexity(0.0), perplexity(1.0)
    assert none == 0 and restarted > 0
    assert collapsed < 5 and used > 1.5 * collapsed, (collapsed, used)


def test_saved_vqvae_loads_and_its_frame_size_guard_names_the_file(tmp_path):
    torch.manual_seed(0)
    vq = SpectrumVQVAE(33, spectrum="log_power", code_dim=2, num_codes=8)
    vq.fit_input_scale(torch.randn(16, 33))
    path = tmp_path / "speech_vq.safetensors"
    save_vqvae(vq, path, {"steps": 3})
    loaded, meta = load_vqvae(path)
    spectra = torch.randn(2, 4, 33)
    assert meta["steps"] == 3 and torch.equal(loaded.encode_sequence(spectra), vq.encode_sequence(spectra))
    with pytest.raises(ValueError, match=r"speech_vq\.safetensors.*\(33,\).*\(65,\)"):
        check_frame_size(meta, torch.zeros(2, 4, 65))
    save_tensors(path, SpectrumVQVAE(33, code_dim=2).state_dict(), SpectrumVQVAE(33, code_dim=4).config())
    with pytest.raises(ValueError, match=r"speech_vq\.safetensors.*shape mismatch"):
        load_vqvae(path)


def test_power_spectrum_vqvae_rejects_negative_spectra():
    with pytest.raises(ValueError, match="log_power"):
        SpectrumVQVAE(9).fit_input_scale(torch.randn(4, 9))


def test_wrong_frame_size_checkpoint_is_a_clear_error():
    meta = FrameVQVAE(32, hidden=8).config() | {"checkpoint": "artifacts/av/vq_faces.safetensors"}
    check_frame_size(meta, torch.zeros(2, 5, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"vq_faces\.safetensors.*\(32, 32, 3\).*\(64, 64, 3\)"):
        check_frame_size(meta, torch.zeros(2, 5, 64, 64, 3, dtype=torch.uint8))
    spectra_meta = SpectrumVQVAE(257).config()
    with pytest.raises(ValueError, match=r"speech_vq\.safetensors.*\(257,\).*\(129,\)"):
        check_frame_size(spectra_meta, torch.zeros(4, 30, 129), checkpoint="speech_vq.safetensors")
    with pytest.raises(ValueError, match=r"frame_shape"):
        check_frame_size({"kind": "frames"}, torch.zeros(1, 8, 8, 3), checkpoint="old.safetensors")


# --- stage 2: the ELBO and every registered model -------------------------------------------------------------

def test_mdvae_elbo_terms_equal_a_direct_per_frame_computation():
    model = tiny_model("mdvae")
    model.fit_standardisation(latents(1))
    batch = latents()
    terms = elbo(model, batch, beta=0.3, generator=torch.Generator().manual_seed(5))
    post = model.infer(batch, generator=torch.Generator().manual_seed(5))
    standard = Normal(torch.zeros_like(post.q_w.mu), torch.ones_like(post.q_w.mu))
    kl_w = kl_divergence(Normal(post.q_w.mu, (0.5 * post.q_w.logvar).exp()), standard).sum(-1)
    assert torch.allclose(terms["kl_w"], kl_w.mean() / T)  # KL(w) per frame: ÷T, not the official ÷1
    for name in ("z_av", "z_a", "z_v"):
        latent = getattr(post, name)
        per_clip = direct_gaussian_kl(latent.q.mu, latent.q.logvar, latent.p.mu, latent.p.logvar).sum(1)
        assert torch.allclose(terms["kl_" + name[2:]], per_clip.mean() / T, atol=1e-6), name
    xa = (batch["audio"] - model.audio_mean) / model.audio_std
    xa_hat, xv_hat = model.decode_standardised(post.w, post.z_av.sample, post.z_a.sample, post.z_v.sample)
    rec = -Normal(xa_hat, 1.0).log_prob(xa).sum(-1).sum(1).mean() / T
    assert torch.allclose(terms["rec_audio"], rec, atol=1e-5)
    kl = terms["kl_w"] + terms["kl_av"] + terms["kl_a"] + terms["kl_v"]
    assert torch.allclose(terms["loss"], terms["rec_audio"] + terms["rec_visual"] + 0.3 * kl)


def test_dvae_kl_terms_equal_a_direct_computation():
    model = tiny_model("dvae_visual")
    batch = latents()
    terms = model.terms(batch, generator=torch.Generator().manual_seed(2))
    q_w, _, q_z, p_z, _ = model.infer(batch, generator=torch.Generator().manual_seed(2))
    assert isinstance(model, DVAE) and model.modalities == ("visual",)
    direct = direct_gaussian_kl(q_z.mu, q_z.logvar, p_z.mu, p_z.logvar).sum(1).mean() / T
    assert torch.allclose(terms["kl_z"], direct, atol=1e-6)
    zero = torch.zeros_like(q_w.mu)
    assert torch.allclose(terms["kl_w"], direct_gaussian_kl(q_w.mu, q_w.logvar, zero, zero).mean() / T)


def test_prior_is_fed_the_previous_posterior_sample():
    model = tiny_model("mdvae")
    post = model.infer(latents(), generator=torch.Generator().manual_seed(0))
    cell, z = model.chain_av.cell, post.z_av.sample
    h = cell(torch.zeros(B, 16), torch.zeros(B, 8))  # h_1 from z_0 = 0, h_0 = 0
    assert torch.allclose(model.chain_av.prior(h).mu, post.z_av.p.mu[:, 0], atol=1e-6)
    h = cell(z[:, 1], cell(z[:, 0], h))  # h_3 = GRU(z_2, GRU(z_1, h_1)), with the posterior samples
    assert torch.allclose(model.chain_av.prior(h).mu, post.z_av.p.mu[:, 2], atol=1e-6)


@pytest.mark.parametrize("name", list(SEQUENCE_MODELS))
def test_registered_model_shapes_and_gradients(name):
    model = tiny_model(name)
    entry = SEQUENCE_MODELS[name]
    assert entry.paper and entry.summary and set(entry.modalities) == set(model.modalities)
    batch = latents()
    terms = model.terms(batch, generator=torch.Generator().manual_seed(0))
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
    assert min(v.item() for k, v in terms.items() if k.startswith("kl")) >= 0
    terms["loss"].backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    static, dynamic = model.static(batch), model.dynamic(batch)
    assert static.shape == (B, 4) and dynamic.dim() == 3 and dynamic.shape[:2] == (B, T)
    recon = model.reconstruct(batch)
    assert set(recon) == set(model.modalities)
    assert all(recon[m].shape == batch[m].shape for m in recon)


def test_build_and_input_errors_name_the_problem():
    with pytest.raises(UnknownName, match="allowed"):
        build_sequence_model("mdave", audio_dim=4, visual_dim=4)
    with pytest.raises(ValueError, match="no option 'z_dim'.*w_dim"):
        build_sequence_model("mdvae", audio_dim=4, visual_dim=4, z_dim=3)
    model = tiny_model("mdvae")
    with pytest.raises(ValueError, match=r"audio latents must be \(B, T, 10\)"):
        model.terms({"audio": torch.zeros(2, 5, 9), "visual": torch.zeros(2, 5, DV)})
    with pytest.raises(ValueError, match="needs the 'visual' latents"):
        model.terms({"audio": torch.zeros(2, 5, DA)})
    with pytest.raises(ValueError, match="share"):
        model.terms({"audio": torch.zeros(2, 5, DA), "visual": torch.zeros(2, 6, DV)})


def toy_sequences(n: int, seed: int, t: int = 8) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The toy built for MDVAE's claim (Sadok et al., Neural Networks 2024): class c ∈ {0..3}, bit 0 shifting the
    audio latents and bit 1 the visual ones for the whole clip (static); a shared 2-D random walk drives both
    modalities, and each modality has its own 1-D random walk (dynamic); plus small noise."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.Generator().manual_seed(99)
    mix_a, mix_v = torch.randn(2, DA, generator=proj), torch.randn(2, DV, generator=proj)
    own_a, own_v = torch.randn(1, DA, generator=proj), torch.randn(1, DV, generator=proj)
    offset_a, offset_v = torch.randn(DA, generator=proj), torch.randn(DV, generator=proj)
    labels = torch.randint(0, 4, (n,), generator=g)

    def walk(dims: int) -> torch.Tensor:
        return torch.randn(n, t, dims, generator=g).mul(0.5).cumsum(1)

    shared = walk(2)
    audio = shared @ mix_a + walk(1) @ own_a + 1.5 * (labels % 2).float().view(-1, 1, 1) * offset_a
    visual = shared @ mix_v + walk(1) @ own_v + 1.5 * (labels // 2).float().view(-1, 1, 1) * offset_v
    audio = audio + 0.1 * torch.randn(audio.shape, generator=g)
    visual = visual + 0.1 * torch.randn(visual.shape, generator=g)
    return {"audio": audio, "visual": visual}, labels


@pytest.mark.slow
def test_toy_mdvae_w_takes_the_static_class_and_the_dynamics_do_not():
    """200 steps: w's few-label accuracy (10 labels per class) 0.97–1.00 over model seeds 0–3, the
    time-averaged dynamic latents' 0.29–0.47 (chance 0.25)."""
    train, train_labels = toy_sequences(256, seed=0)
    test, test_labels = toy_sequences(128, seed=1)
    torch.manual_seed(0)
    model = MDVAE(DA, DV, w_dim=4, z_av_dim=2, z_a_dim=1, z_v_dim=1, gru_dim=16, w_gru_dim=16, hidden_dim=32,
                  visual_feature_dim=16)
    model.fit_standardisation(train)
    history = train_sequence_model(model, random_batches(train, 32, seed=0), steps=200, lr=1e-2, seed=0)
    assert history[-1]["loss"] < history[0]["loss"]
    with torch.no_grad():
        w_train, w_test = model.static(train), model.static(test)
        dyn_train, dyn_test = model.dynamic(train).mean(1), model.dynamic(test).mean(1)
    from_w = few_label_accuracy(w_train, train_labels, w_test, test_labels, ks=(10,), draws=3)[10]["mean"]
    from_dynamics = few_label_accuracy(dyn_train, train_labels, dyn_test, test_labels, ks=(10,), draws=3)[10]["mean"]
    assert from_w > 0.85 and from_w > from_dynamics + 0.3, (from_w, from_dynamics)
    validation = evaluate_sequence_model(model, [test], seed=0)
    assert validation["loss"] < history[0]["loss"]


@pytest.mark.slow
def test_training_is_deterministic():
    batch = latents(3, b=4)
    states = []
    for seed in (0, 0, 1):
        model = tiny_model("mdvae")
        history = train_sequence_model(model, [batch], steps=4, lr=1e-2, seed=seed, kl_warmup=2)
        assert [h["beta"] for h in history] == [0.5, 1.0, 1.0, 1.0]
        states.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(states[0], states[1])
    assert not torch.equal(states[0], states[2])


def test_batches_cover_every_clip_once_per_pass_and_repeat_with_the_seed():
    data = {"audio": torch.arange(10.0).view(10, 1, 1), "visual": torch.arange(10.0).view(10, 1, 1) * 2}
    stream = random_batches(data, 3, seed=4)
    first_pass = [next(stream) for _ in range(3)]  # 10 rows, batches of 3: the 10th row waits for the next pass
    rows = torch.cat([b["audio"].flatten() for b in first_pass])
    assert len(set(rows.tolist())) == 9 and all(torch.equal(b["visual"], 2 * b["audio"]) for b in first_pass)
    again = random_batches(data, 3, seed=4)
    assert all(torch.equal(next(again)["audio"], b["audio"]) for b in first_pass)
    with pytest.raises(ValueError, match="ran out after 1 batches"):
        train_sequence_model(tiny_model("frame_vae"), iter([latents()]), steps=2, lr=1e-3, seed=0)


# --- probes --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("classifier", ["logistic", "centroid"])
def test_few_label_probe_is_exact_on_separable_data(classifier):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(30)
    features = torch.nn.functional.one_hot(labels, 4).float() * 10 + 0.1 * torch.randn(120, 4, generator=g)
    result = few_label_accuracy(features[:80], labels[:80], features[80:], labels[80:], ks=(2, 5, 10), draws=4,
                                classifier=classifier)
    assert set(result) == {2, 5, 10}
    assert all(r["mean"] == 1.0 and r["std"] == 0.0 for r in result.values())
    noise = torch.randn(120, 4, generator=g)
    chance = few_label_accuracy(noise[:80], labels[:80], noise[80:], labels[80:], ks=(2,), draws=10,
                                classifier=classifier)[2]
    assert chance["mean"] < 0.6 and chance["std"] > 0


def test_few_label_probe_rejects_too_few_labels():
    with pytest.raises(ValueError, match=r"k=5.*\{1: 3\}"):
        few_label_accuracy(torch.randn(8, 2), torch.tensor([0, 0, 0, 0, 0, 1, 1, 1]), torch.randn(2, 2),
                           torch.tensor([0, 1]), ks=(5,))


def test_mutual_information_is_higher_for_an_informative_representation():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=g)
    informative = labels.float().unsqueeze(1) + 0.3 * torch.randn(400, 3, generator=g)
    unrelated = torch.randn(400, 3, generator=g)
    mi_good, mi_bad = mutual_information(informative, labels), mutual_information(unrelated, labels)
    assert mi_good["mean"] > 0.5 and mi_bad["max"] < 0.1, (mi_good, mi_bad)
    rows, frame_labels = per_frame_samples(torch.randn(5, 7, 3), torch.arange(5))
    assert rows.shape == (35, 3) and torch.equal(frame_labels[:8], torch.tensor([0] * 7 + [1]))


@pytest.mark.slow
def test_linear_information_counts_only_what_holds_across_groups():
    """Identity in 4 coordinates; emotion in 4 more, the same code for every speaker (shared) or a speaker's
    own code per emotion (entangled): kNN MI sees both; the read-out on held-out speakers only the shared one."""
    g = torch.Generator().manual_seed(0)
    speakers, emotions = torch.arange(12).repeat_interleave(40), torch.arange(4).repeat(120)
    identity = torch.randn(12, 4, generator=g)[speakers] * 5
    codes = {"shared": 3 * torch.nn.functional.one_hot(emotions, 4).float(),
             "entangled": 3 * torch.randn(12, 4, 4, generator=g)[speakers, emotions]}
    noise = 0.3 * torch.randn(480, 8, generator=g)
    held_out = {name: linear_information(torch.cat([identity, code], 1) + noise, emotions, groups=speakers, folds=4)
                for name, code in codes.items()}
    assert held_out["shared"] > 1.0 and held_out["entangled"] < 0.3, held_out
    assert mutual_information(torch.cat([identity, codes["entangled"]], 1) + noise, emotions)["max"] > 0.3
    assert linear_information(torch.randn(480, 4, generator=g), emotions) < 0.05


def test_linear_information_with_clips_keeps_a_clips_frames_on_one_side():
    """Per-frame rows whose label is unrelated to anything but the clip (each clip a random point, a random
    label): folds over frames let the read-out recognise the clip and score its label; folds of whole clips
    give ~0. A label that really shows in the frames still counts with clip folds."""
    g = torch.Generator().manual_seed(0)
    n_clips, frames = 48, 10
    clip_labels = torch.randint(0, 4, (n_clips,), generator=g)
    clip_points = 3 * torch.randn(n_clips, 60, generator=g)
    rows, labels = per_frame_samples(clip_points.unsqueeze(1) + 0.1 * torch.randn(n_clips, frames, 60, generator=g),
                                     clip_labels)
    clips = torch.arange(n_clips).repeat_interleave(frames)
    leaked, grouped = linear_information(rows, labels), linear_information(rows, labels, clips=clips)
    assert leaked > 0.5 and grouped < 0.1, (leaked, grouped)
    cue = 3 * torch.nn.functional.one_hot(labels, 4).float() + 0.5 * torch.randn(len(labels), 4, generator=g)
    assert linear_information(cue, labels, clips=clips) > 0.5
    with pytest.raises(ValueError, match="groups or clips"):
        linear_information(rows, labels, groups=clips, clips=clips)


# --- swaps and denoising --------------------------------------------------------------------------------------

def test_swap_keeps_b_dynamics_and_a_static():
    model = tiny_model("mdvae")
    a, b = latents(1), latents(2)
    same = swap_static(model, a, a)
    post = model.infer(a)
    expected = model.decode(post.q_w.mu, post.z_av.q.mu, post.z_a.q.mu, post.z_v.q.mu)
    assert torch.allclose(same["visual"], expected["visual"])
    swapped = swap_static(model, a, b)
    post_b = model.infer(b)
    assert torch.allclose(swapped["audio"], model.decode(post.q_w.mu, post_b.z_av.q.mu, post_b.z_a.q.mu,
                                                         post_b.z_v.q.mu)["audio"])
    assert not torch.allclose(swapped["audio"], swap_static(model, b, b)["audio"])


def test_rendering_strips_audio_and_denoising_plumbing():
    torch.manual_seed(0)
    vq_v = FrameVQVAE(16, hidden=8, residual_hidden=4, residual_layers=1, code_dim=2, num_codes=8)
    vq_a = SpectrumVQVAE(33, code_dim=2, num_codes=8)
    frames = torch.randint(0, 256, (2, 4, 16, 16, 3), dtype=torch.uint8)
    spectra = torch.rand(2, 4, 33)
    za, zv = vq_a.encode_sequence(spectra), vq_v.encode_sequence(frames)
    rendered = render_latents({"audio": za, "visual": zv}, vq_audio=vq_a, vq_visual=vq_v)
    assert rendered["frames"].shape == frames.shape and rendered["spectra"].shape == spectra.shape
    strip = image_strip([frames[0], rendered["frames"][0]], every=2, gap=1)
    assert strip.shape == (33, 33, 3) and (strip[:16, :16] == frames[0, 0].numpy()).all()
    wave = spectra_to_waveform(spectra[0], sample_rate=8000, fps=25, n_iter=2)
    assert wave.dim() == 1 and abs(len(wave) - 4 * 8000 / 25) <= 64 and wave.abs().max() == pytest.approx(0.9)
    masked = corrupt_frames(frames, kind="mask", strength=0.25)
    assert (masked[..., 12:, :, :] == 128).all() and torch.equal(masked[..., :12, :, :], frames[..., :12, :, :])
    assert psnr(frames, frames) == pytest.approx(100.0)
    torch.manual_seed(0)
    models = {"mdvae": MDVAE(za.shape[-1], zv.shape[-1], **TINY, **TINY_DYNAMIC),
              "dvae_visual": build_sequence_model("dvae_visual", audio_dim=za.shape[-1], visual_dim=zv.shape[-1],
                                                  **TINY, **TINY_DYNAMIC)}
    scores = denoising_psnr(models, frames, spectra, vq_visual=vq_v, vq_audio=vq_a, kind="noise", strength=0.2)
    assert set(scores) == {"corrupted", "vq_visual", "mdvae", "dvae_visual"}
    assert all(0 < v < 100 for v in scores.values())
    with pytest.raises(ValueError, match="cannot reconstruct faces"):
        denoising_psnr({"a": build_sequence_model("dvae_audio", audio_dim=za.shape[-1], visual_dim=1, **TINY,
                                                  **TINY_DYNAMIC)}, frames, spectra, vq_visual=vq_v, vq_audio=vq_a)
