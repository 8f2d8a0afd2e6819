"""Generative (masked_ae) and generative-contrastive (bigan) pretext methods: their losses against direct
computations, BiGAN's one-backward gradient split, training inside the shared loop, its CPU-seconds
budget, the head builders, the params checks, and select → train → evaluate on the tiny digits."""
from __future__ import annotations

import json

import pytest
import torch

from repflow.config import ParamsError
from repflow.family import parse_params
from repflow.families.image.contrastive import PretextHead, train_contrastive
from repflow.families.image.train_methods import TRAIN_METHODS, build_training_head, load_training_head
from repflow.families.image.bigan import BiGANHead  # after train_methods: the registry keeps its listing order
from repflow.families.image.masked_ae import (MaskedAutoencoderHead, masked_patch_mse, patchify, random_patch_mask,
                                              spatial_features, unpatchify)
from repflow.families.image.models import ProjectionHead, build_encoder
from tests.conftest import tiny_params

PLAIN = {"crop_scale_min": 0.8, "flip": True, "brightness": 0.1, "contrast": 0.1, "noise_std": 0.0}
PRETEXTS = [name for name, m in TRAIN_METHODS.items() if m.pretext is not None]


def encoder(seed: int = 0, width: int = 4):
    torch.manual_seed(seed)
    return build_encoder({"name": "small_cnn", "in_channels": 1, "width": width})


def images(n: int = 32, size: int = 8, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 1, size, size): a bright square at a random place on a dark background, so that images
    share structure a model can learn (pure noise has nothing to reconstruct from a pooled code)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 40, (n, 1, size, size), generator=g, dtype=torch.uint8)
    for i, (r, c) in enumerate(torch.randint(0, size - 3, (n, 2), generator=g).tolist()):
        x[i, :, r:r + 3, c:c + 3] = 220
    return x


def test_pretext_methods_are_registered_with_their_paradigms():
    assert TRAIN_METHODS["masked_ae"].paradigm == "generative"
    assert TRAIN_METHODS["bigan"].paradigm == "generative-contrastive"
    assert set(PRETEXTS) == {"masked_ae", "bigan"}


# ---------------------------------------------------------------- masked autoencoder


def test_mask_ratio_is_honoured_per_image_and_follows_the_generator():
    mask = random_patch_mask(6, 49, 0.75, torch.Generator().manual_seed(3))
    assert mask.shape == (6, 49) and mask.sum(1).tolist() == [49 - int(49 * 0.25)] * 6  # 12 kept, 37 masked
    assert len({tuple(row.tolist()) for row in mask}) == 6  # each image its own mask
    assert torch.equal(mask, random_patch_mask(6, 49, 0.75, torch.Generator().manual_seed(3)))
    assert not torch.equal(mask, random_patch_mask(6, 49, 0.75, torch.Generator().manual_seed(4)))
    assert random_patch_mask(2, 16, 0.5, torch.Generator().manual_seed(0)).sum(1).tolist() == [8, 8]


@pytest.mark.slow
def test_masked_ae_loss_is_the_mse_over_masked_patches_of_the_per_patch_decoding_of_the_spatial_map():
    enc = encoder()
    head = MaskedAutoencoderHead(enc.out_dim, (1, 8, 8), patch=2)
    x = images(6).float() / 255
    loss = head.loss(enc, x, x.flip(3), generator=torch.Generator().manual_seed(1))

    mask = random_patch_mask(6, 16, 0.75, torch.Generator().manual_seed(1))
    pixel_mask = mask.view(6, 1, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)
    filled = x * (1 - pixel_mask) + 0.5 * pixel_mask  # small_cnn's normaliser mean is 0.5
    feature_map = enc.features(enc.normalize(filled))  # the trunk, unpooled: (6, 16, 1, 1) on 8 px
    pred = head.decoder(feature_map)  # (6, 16 patches, 4 pixels)
    target = x.view(6, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(6, 16, 4)
    direct = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, direct)


def test_spatial_features_are_the_map_the_encoder_pools():
    for name in ("small_cnn", "small_cnn_s2"):
        torch.manual_seed(0)
        enc = build_encoder({"name": name, "in_channels": 1, "width": 4}).eval()
        x = torch.rand(3, 1, 28, 28)
        fmap = spatial_features(enc, x)
        assert fmap.shape == (3, enc.out_dim, 4 if name == "small_cnn" else 2) + fmap.shape[-1:]
        torch.testing.assert_close(fmap.mean((2, 3)), enc(x))
    with pytest.raises(ValueError, match="ends in a global `pool` module; Linear has none"):
        spatial_features(torch.nn.Linear(4, 4), torch.rand(2, 4))


def test_masked_input_pixels_never_reach_the_prediction_and_visible_ones_do():
    enc = encoder().eval()
    head = MaskedAutoencoderHead(enc.out_dim, (1, 28, 28)).eval()  # default: 7 px patches, a 4x4 grid
    assert head.patch == 7 and head.num_patches == 16
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mask = random_patch_mask(2, 16, 0.75, torch.Generator().manual_seed(2))
    base = head.predict_patches(enc, x, mask)
    for patch, changes in (((mask[0] == 1).nonzero()[0].item(), False), ((mask[0] == 0).nonzero()[0].item(), True)):
        edited = x.clone()
        r, c = 7 * (patch // 4), 7 * (patch % 4)
        edited[0, 0, r:r + 7, c:c + 7] = 1 - edited[0, 0, r:r + 7, c:c + 7]
        assert bool((head.predict_patches(enc, edited, mask) != base).any()) is changes
    assert torch.equal(unpatchify(patchify(x, 7), 7, (1, 28, 28)), x)
    assert torch.equal(head.reconstruct(enc, x, mask), unpatchify(base, 7, (1, 28, 28)))


def test_changing_an_unmasked_pixel_of_the_reconstruction_leaves_the_loss_alone():
    g = torch.Generator().manual_seed(0)
    target, pred = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    mask = random_patch_mask(2, 16, 0.75, g)
    base = masked_patch_mse(pred, target, mask, 2)
    visible = (mask[0] == 0).nonzero()[0].item()  # a kept patch of image 0; its top-left pixel:
    hidden = (mask[0] == 1).nonzero()[0].item()
    for patch, changes in ((visible, False), (hidden, True)):
        edited = pred.clone()
        edited[0, 0, 2 * (patch // 4), 2 * (patch % 4)] += 1.0
        assert bool(masked_patch_mse(edited, target, mask, 2) != base) is changes


def test_patchify_orders_patches_row_major_and_norm_pix_normalises_each_target_patch():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert patchify(x, 2)[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]
    target = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ones = torch.ones(1, 4)
    # predicting the normalised target exactly gives zero loss; the raw target does not
    normalised = patchify(target, 2)
    normalised = (normalised - normalised.mean(-1, keepdim=True)) / (normalised.var(-1, keepdim=True) + 1e-6).sqrt()
    as_image = normalised.view(1, 2, 2, 1, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 1, 4, 4)
    assert masked_patch_mse(as_image, target, ones, 2, norm_pix=True).item() < 1e-10
    assert masked_patch_mse(target, target, ones, 2, norm_pix=True).item() > 0.1


def test_masked_ae_refuses_patches_that_do_not_tile_the_image():
    with pytest.raises(ValueError, match="patch = 3: must divide the image height and width"):
        MaskedAutoencoderHead(16, (1, 8, 8), patch=3)
    with pytest.raises(ValueError, match="mask_ratio = 0.99: keeps 0 of 16 patches"):
        MaskedAutoencoderHead(16, (1, 8, 8), patch=2, mask_ratio=0.99)
    with pytest.raises(ValueError, match="needs a square image whose side is a multiple of 4, got 30x30"):
        MaskedAutoencoderHead(16, (1, 30, 30))
    assert MaskedAutoencoderHead(16, (3, 32, 32)).patch == 8


# ---------------------------------------------------------------- BiGAN


@pytest.mark.slow
def test_bigan_single_backward_gives_each_player_exactly_the_gradient_of_its_own_loss():
    enc = encoder()
    head = BiGANHead(enc.out_dim, (1, 8, 8), z_dim=8, width=4)
    x = images(8).float() / 255
    d_params = list(head.discriminator.parameters())
    eg_params = list(enc.parameters()) + list(head.to_z.parameters()) + list(head.image_generator.parameters())
    assert len(d_params) + len(eg_params) == len(list(enc.parameters()) + list(head.parameters()))

    head.loss(enc, x, x, generator=torch.Generator().manual_seed(5)).backward()
    got_d = [p.grad.clone() for p in d_params]
    got_eg = [p.grad.clone() for p in eg_params]

    # the two players' losses written out with nothing detached, differentiated separately
    z_real = head.to_z(enc(x))
    z_prior = torch.randn(8, 8, generator=torch.Generator().manual_seed(5))
    fake = head.image_generator(z_prior)
    d_real, d_fake = head.discriminator(x, z_real), head.discriminator(fake, z_prior)
    loss_d = torch.nn.functional.softplus(-d_real).mean() + torch.nn.functional.softplus(d_fake).mean()
    loss_eg = torch.nn.functional.softplus(d_real).mean() + torch.nn.functional.softplus(-d_fake).mean()
    want_d = torch.autograd.grad(loss_d, d_params, retain_graph=True)
    want_eg = torch.autograd.grad(loss_eg, eg_params, allow_unused=True)
    for got, want in zip(got_d + got_eg, list(want_d) + list(want_eg)):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want)
    assert any(g.abs().sum() > 0 for g in got_eg[:len(list(enc.parameters()))])  # the encoder does learn
    stats = head.batch_stats()
    assert 0.0 <= stats["d_accuracy"] <= 1.0 and stats["d_loss"] == pytest.approx(loss_d.item(), rel=1e-5)


def test_bigan_reconstruction_is_an_image_and_the_discriminator_needs_room():
    enc = encoder()
    head = BiGANHead(enc.out_dim, (1, 12, 8), z_dim=4, width=4)
    out = head.reconstruct(enc, images(3, 8).float().repeat(1, 1, 2, 1)[:, :, :12] / 255)
    assert out.shape == (3, 1, 12, 8) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="too small"):
        BiGANHead(16, (1, 2, 2))


# ---------------------------------------------------------------- inside the training loop


def _train(name: str, seed: int = 0, epochs: int = 3, **kwargs):
    enc = encoder(seed)
    head, _ = build_training_head(name, enc.out_dim, (1, 8, 8), proj_dim=8, dual_bn=False)
    history = train_contrastive(enc, head, images(48), epochs=epochs, batch_size=16, lr=3e-3, weight_decay=0.0,
                                temperature=0.5, augment=PLAIN, device=torch.device("cpu"), seed=seed, **kwargs)
    return enc, head, history


@pytest.mark.slow
@pytest.mark.parametrize("name", PRETEXTS)
def test_a_pretext_head_trains_in_the_shared_loop_deterministically(name):
    enc_a, head_a, hist_a = _train(name)
    enc_b, head_b, hist_b = _train(name)
    assert [h["loss"] for h in hist_a] == [h["loss"] for h in hist_b]
    for a, b in zip(list(enc_a.parameters()) + list(head_a.parameters()),
                    list(enc_b.parameters()) + list(head_b.parameters())):
        assert torch.equal(a, b)
    assert all(h["seconds"] > 0 and h["steps"] == 3 for h in hist_a)
    if name == "masked_ae":
        enc, _, long = _train(name, epochs=8)  # on 8 px the trunk's map is 1x1: a square's place comes from
        assert long[-1]["loss"] < 0.8 * long[0]["loss"]  # the pooled content + the decoder's position embedding
    else:
        assert all(0.0 <= h["d_accuracy"] <= 1.0 and "eg_loss" in h for h in hist_a)


@pytest.mark.slow
def test_the_loop_uses_the_heads_adam_betas():
    betas = {}
    for name in PRETEXTS:
        _train(name, epochs=1, max_seconds=1e-6, on_epoch=lambda e, s, opt: betas.update({name: opt.defaults["betas"]}))
    assert betas == {"masked_ae": (0.9, 0.999), "bigan": (0.5, 0.999)}


def test_a_pretext_head_refuses_labels_and_an_adversary():
    with pytest.raises(ValueError, match="pretext head .* no adversary and no class labels"):
        _train("masked_ae", labels=torch.zeros(48, dtype=torch.long))


@pytest.mark.slow
def test_the_cpu_budget_stops_the_loop_after_a_batch():
    _, _, full = _train("masked_ae", epochs=2)
    _, _, cut = _train("masked_ae", epochs=2, max_seconds=1e-6)
    assert "stopped_by_budget" not in full[-1] and sum(h["steps"] for h in full) == 6
    assert len(cut) == 1 and cut[0]["stopped_by_budget"] and cut[0]["steps"] == 1 and cut[0]["trained"] == 16
    assert cut[0]["loss"] == pytest.approx(_train("masked_ae", epochs=1, max_seconds=1e-6)[2][0]["loss"])
    with pytest.raises(ValueError, match="max_seconds must be > 0"):
        _train("masked_ae", max_seconds=0)


# ---------------------------------------------------------------- builders


@pytest.mark.parametrize("name", list(TRAIN_METHODS))
def test_build_training_head_config_is_json_and_rebuilds_the_same_head(name):
    torch.manual_seed(0)
    head, config = build_training_head(name, 16, (1, 8, 8), proj_dim=8, dual_bn=False)
    assert isinstance(head, PretextHead) == (TRAIN_METHODS[name].pretext is not None)
    assert isinstance(head, ProjectionHead) != isinstance(head, PretextHead)
    config = json.loads(json.dumps(config))
    rebuilt = load_training_head(config, head.state_dict(), "head.safetensors")
    assert type(rebuilt) is type(head) and rebuilt.state_dict().keys() == head.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), head.state_dict().values()))


def test_load_training_head_names_the_file_when_the_state_does_not_fit():
    head, config = build_training_head("masked_ae", 16, (1, 8, 8), proj_dim=8, dual_bn=False)
    with pytest.raises(ValueError, match="run/head.safetensors: training head config"):
        load_training_head({**config, "in_dim": 32}, head.state_dict(), "run/head.safetensors")
    with pytest.raises(ValueError, match="has a pretext head, which has no dual batch norm"):
        build_training_head("bigan", 16, (1, 8, 8), proj_dim=8, dual_bn=True)


@pytest.mark.slow
def test_held_out_divergence_skips_a_pretext_head(tmp_path):
    from repflow.checkpoints import save_tensors
    from repflow.families.image.stages.evaluate import held_out_divergence

    enc = encoder()
    head, config = build_training_head("bigan", enc.out_dim, (1, 8, 8), proj_dim=8, dual_bn=False)
    save_tensors(tmp_path / "head.safetensors", head.state_dict(), config)
    assert held_out_divergence(enc, tmp_path, torch.rand(4, 1, 8, 8), eps=0.03, steps=1, seed=0, batch_size=4,
                               device="cpu") is None


# ---------------------------------------------------------------- params


@pytest.mark.parametrize("name", PRETEXTS)
@pytest.mark.parametrize("sections, match", [
    ({"train": {"data": "both"}}, r"train: data = 'both': method '\w+' is a .* pretext task on real images; "
                                  r"allowed: 'real'"),
    ({"train": {"loss": "supcon"}}, r"train: loss = 'supcon': .* allowed: 'ntxent'"),
    ({"train": {"adversarial": {"eps": 0.1}}}, r"train: adversarial.eps = 0.1: only adversarial methods "
                                               r"\(acl, dynacl\) read it"),
    ({"select": {"method": "rcs"}}, r"select.method = 'rcs': scores images by contrastive gradients .* "
                                    r"allowed with it: \['full', 'random'\]"),
])
def test_params_that_a_pretext_method_cannot_honour_are_refused(name, sections, match):
    sections = {k: dict(v) for k, v in sections.items()}
    sections.setdefault("train", {})["method"] = name
    with pytest.raises(ParamsError, match=match):
        parse_params(tiny_params(**sections))


def test_a_pretext_method_accepts_the_default_adversarial_block_and_a_random_coreset():
    p = parse_params(tiny_params(train={"method": "bigan", "adversarial": {"eps": 8 / 255, "reweight": 0.6667}},
                                 select={"method": "random", "warmup_epochs": 1}))
    assert p.train.training_method.pretext is not None and not p.train.adversarial_training


# ---------------------------------------------------------------- the stages


@pytest.mark.slow
def test_masked_ae_select_train_evaluate(tiny_shards, tmp_path, mlflow_tmp, ray_session):
    from repflow.checkpoints import load_tensors
    from repflow.stage import run_stage

    p = parse_params(tiny_params(train={"method": "masked_ae", "epochs": 2},
                                 evaluate={"alf": False, "probe_epochs": 5}))
    sel = run_stage("image.select", p, {"shards": tiny_shards, "views": None}, tmp_path / "select")
    out = run_stage("image.train", p, {"shards": tiny_shards, "views": None, "selection": sel}, tmp_path / "train")
    _, head_config = load_tensors(out / "head.safetensors")
    assert head_config["pretext"] == "masked_ae" and head_config["image_shape"] == [1, 28, 28]
    hist = json.loads((out / "history.json").read_text())["history"]
    assert len(hist) == 2 and hist[-1]["loss"] < hist[0]["loss"]
    ev = run_stage("image.evaluate", p, {"shards": tiny_shards, "encoder": out}, tmp_path / "evaluate")
    metrics = json.loads((ev / "metrics.json").read_text())
    assert "clean_acc" in metrics and "representational_divergence" not in metrics
