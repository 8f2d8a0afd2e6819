"""Generator model, GenRep latent views, VAE training, Fréchet distance, SupCon, and the generate stage."""
import json

import numpy as np
import pytest
import torch

from repflow.families.image.models import ConditionalGenerator, GeneratorSampler
from repflow.checkpoints import CheckpointError, load_tensors
from repflow.families.image.contrastive import nt_xent_loss, supcon_loss
from repflow.family import parse_params
from repflow.manifest import read_manifest
from repflow.families.image.generative import frechet_distance, genrep_latents, train_cvae, truncated_normal
from repflow.shards import ShardSet
from tests.conftest import tiny_params


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_generator_stops_and_restarts_at_every_layer(shape):
    torch.manual_seed(0)
    gen = ConditionalGenerator(5, shape, z_dim=8, w_dim=16, channels=16).eval()
    z, c = torch.randn(4, 8), torch.tensor([0, 1, 2, 4])
    x = gen(z, c)
    assert x.shape == (4, *shape) and x.min() >= 0 and x.max() <= 1
    w = gen.mapping(z, c)
    assert w.shape == (4, gen.num_layers, 16)
    sizes = []
    for layer in gen.layers:
        feat = gen.features(w, layer)
        sizes.append(feat.shape[-1])
        assert torch.allclose(gen.render_from(feat, w, layer), x, atol=1e-6)
    assert sizes == [shape[2] // 4, shape[2] // 4, shape[2] // 2, shape[2]]
    assert torch.allclose(GeneratorSampler(gen)(torch.cat([z, c[:, None].float()], 1)), x)


def test_editing_styles_after_the_split_changes_the_image():
    gen = ConditionalGenerator(3, (1, 8, 8), z_dim=4, w_dim=8, channels=8).eval()
    w = gen.mapping(torch.randn(2, 4), torch.tensor([0, 1])).clone()
    feat = gen.features(w, 1)
    w2 = w.clone()
    w2[:, 2:] += 1.0
    assert not torch.allclose(gen.render_from(feat, w, 1), gen.render_from(feat, w2, 1))


def test_unknown_layer_lists_valid_ones():
    gen = ConditionalGenerator(3, (1, 8, 8), z_dim=4, w_dim=8, channels=8)
    with pytest.raises(ValueError, match=r"no layer 7; valid layers: \[0, 1, 2, 3\]"):
        gen.features(gen.mapping(torch.randn(1, 4), torch.tensor([0])), 7)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConditionalGenerator(3, (1, 10, 10))


def test_truncated_normal_is_bounded_and_seeded():
    a = truncated_normal((5000,), torch.Generator().manual_seed(0))
    assert a.abs().max() <= 2.0 and 0.7 < a.std() < 0.95
    assert torch.equal(a, truncated_normal((5000,), torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("sigma", [0.1, 1.0])
def test_gaussian_views_stay_in_the_anchor_neighbourhood(sigma):
    z = genrep_latents(200, 3, 16, sigma=sigma, g=torch.Generator().manual_seed(0), truncation=0.8)
    assert z.shape == (200, 4, 16)
    delta = z[:, 1:] - z[:, :1]
    assert delta.abs().max() <= 2 * sigma * 0.8 + 1e-6
    assert delta.std().item() == pytest.approx(0.8 * sigma * 0.88, rel=0.1)  # std of TN(-2, 2) ≈ 0.88


def test_independent_views_are_not_neighbours():
    z = genrep_latents(200, 3, 16, sigma=0.1, g=torch.Generator().manual_seed(0), mode="independent")
    assert (z[:, 1:] - z[:, :1]).std() > 1.0
    with pytest.raises(ValueError, match="allowed: gaussian, independent"):
        genrep_latents(2, 1, 4, sigma=0.1, g=torch.Generator(), mode="steer")


def test_frechet_distance_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 2, generator=g)
    b = torch.randn(20000, 2, generator=g) * 2 + torch.tensor([1.0, 0.0])
    # N(0, I) vs N((1, 0), 4I): |Δμ|² + Σ_d (σa - σb)² = 1 + 2 · (1 - 2)² = 3
    assert frechet_distance(a, b) == pytest.approx(3.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_supcon_reduces_to_nt_xent_and_uses_labels():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    assert supcon_loss(z1, z2, torch.arange(8), 0.5).item() == pytest.approx(nt_xent_loss(z1, z2, 0.5).item(), rel=1e-6)
    # same-class samples pulled together: a batch whose classes cluster scores lower than one that does not
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    clustered = torch.cat([torch.ones(4, 4), -torch.ones(4, 4)]) + 0.1 * torch.randn(8, 4, generator=g)
    assert supcon_loss(clustered, clustered, labels) < supcon_loss(z1, z2, labels)


@pytest.mark.slow
def test_cvae_training_lowers_the_loss():
    from repflow.families.image.sources import read_source

    src = read_source("mnist5k")
    x = torch.from_numpy(src.images[::25]).unsqueeze(1)
    y = torch.from_numpy(src.labels[::25])
    torch.manual_seed(0)
    from repflow.families.image.models import ConditionalEncoder

    gen, enc = ConditionalGenerator(10, (1, 28, 28), 8, 16, 16), ConditionalEncoder(10, (1, 28, 28), 8, 16)
    hist = train_cvae(gen, enc, x, y, epochs=4, batch_size=50, lr=3e-3, beta=1.0, device=torch.device("cpu"), seed=0)
    assert hist[-1]["loss"] < hist[0]["loss"] * 0.9


@pytest.fixture(scope="module")
def generated(tiny_shards, tmp_path_factory):
    from repflow import tracking
    from repflow.stage import run_stage

    root = tmp_path_factory.mktemp("gen")
    tracking.configure(root)
    params = parse_params(tiny_params())
    return params, run_stage("image.generate", params, {"shards": tiny_shards}, root / "data" / "generate")


def test_generate_stage_writes_views_with_latents(generated):
    params, out = generated
    views = ShardSet(out)
    cfg = params.generate
    assert views.count("views") == cfg.anchors * (cfg.views + 1)
    x, y, latents, metas = views.load("views", extras=("latent.npy", "json"))
    assert metas[0] == {"anchor": 0, "view": 0} and metas[cfg.views + 1] == {"anchor": 1, "view": 0}
    z = torch.from_numpy(np.stack(latents)).view(cfg.anchors, cfg.views + 1, cfg.z_dim)
    assert (z[:, 1:] - z[:, :1]).abs().max() <= 2 * cfg.sigma * cfg.truncation + 1e-5
    assert (y.view(cfg.anchors, -1) == y.view(cfg.anchors, -1)[:, :1]).all()  # views share their anchor's class
    quality = json.loads((out / "quality.json").read_text())
    assert quality["frechet_distance"] >= 0 and len(quality["judge_acc_per_class"]) == 10
    assert (out / "views.png").exists() and (out / "samples.png").exists()
    assert views.meta["registered"].startswith("models:/repflow-generator/")


def test_generator_checkpoint_must_fit_the_data(generated):
    from repflow.families.image.stages.generate import load_generator

    _, out = generated
    gen, config = load_generator(out, (1, 28, 28), 10)
    assert config["num_classes"] == 10
    with pytest.raises(CheckpointError, match=r"makes images of shape \(1, 28, 28\), the data has shape \(3, 32, 32\)"):
        load_generator(out, (3, 32, 32), 10)
    with pytest.raises(CheckpointError, match="trained on 10 classes, the data has 4"):
        load_generator(out, (1, 28, 28), 4)


def test_loaded_judge_scores_the_real_images_as_the_stage_did(generated, tiny_shards):
    """The judge's features are the space the GenRep benchmark measures view distances in: the loaded copy
    must be the classifier the stage scored with (same accuracy on the same held-out real images)."""
    from repflow.families.image.stages.generate import load_judge

    _, out = generated
    judge = load_judge(out)
    data = ShardSet(tiny_shards)
    x, y = data.load("val") if data.count("val") else data.load("test")
    with torch.no_grad():
        acc = float((judge(x.float() / 255).argmax(1) == y).float().mean())
    assert not judge.training
    assert acc == pytest.approx(json.loads((out / "quality.json").read_text())["judge_acc_real"], abs=1e-6)


def test_generate_reuses_a_given_checkpoint(generated, tiny_shards, tmp_path):
    from repflow.stage import run_stage

    params, out = generated
    p2 = parse_params(tiny_params(generate={"checkpoint": str(out), "sigma": 1.5}))
    out2 = run_stage("image.generate", p2, {"shards": tiny_shards}, tmp_path / "g2")
    a, _ = load_tensors(out / "generator.safetensors")
    b, _ = load_tensors(out2 / "generator.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out2 / "history.json").read_text()) == []  # no training


@pytest.mark.parametrize("method, data, loss", [("genrep", "generated", "ntxent"), ("genrep", "both", "supcon"),
                                                ("simclr", "generated", "ntxent")])
def test_train_on_generated_views(generated, tiny_shards, tmp_path, method, data, loss):
    from repflow.stage import run_stage

    _, views = generated
    p = parse_params(tiny_params(train={"method": method, "data": data, "loss": loss, "epochs": 1}))
    selection = run_stage("image.select", p, {"shards": tiny_shards, "views": views}, tmp_path / "select")
    out = run_stage("image.train", p, {"shards": tiny_shards, "views": views, "selection": selection},
                    tmp_path / "train")
    meta = read_manifest(out)["meta"]
    n_real = ShardSet(tiny_shards).count("train")
    assert meta["images"] == {"generated": 60, "both": 60 + n_real}[data]
    assert "views" in read_manifest(out)["lineage"]["inputs"]


def test_distill_stage_writes_a_loadable_set_and_its_cross_arch_table(generated, tiny_shards, tmp_path):
    import polars as pl

    from repflow.stage import run_stage

    params, gen_out = generated
    p = parse_params(tiny_params(distill={"param": "latent", "ipc": 3}))
    out = run_stage("image.distill", p, {"shards": tiny_shards, "generator": gen_out}, tmp_path / "distill")
    x, y = ShardSet(out).load("distilled")
    assert x.shape == (30, 1, 28, 28) and torch.bincount(y).tolist() == [3] * 10
    table = pl.read_parquet(out / "eval.parquet")
    assert set(table["set"]) == {"latent-dm", "random-real", "generator-samples"}
    assert table.height == 3 * 2 * 1  # sets × eval_archs × eval_seeds
    m = json.loads((out / "metrics.json").read_text())
    assert m["distilled"] == "latent-dm" and 0 <= m["cross_arch"] <= 1
    started = next(s for s in m["sets"] if s["set"] == "generator-samples")
    assert m["start_set"] == "generator-samples"
    assert m["gain_cross_arch"] == pytest.approx(m["cross_arch"] - started["cross_arch"])
    assert read_manifest(out)["meta"]["generator"].startswith("models:/repflow-generator/")


def test_distill_stage_evaluates_a_noise_start_as_its_own_set(generated, tiny_shards, tmp_path):
    import polars as pl

    from repflow.stage import run_stage

    _, gen_out = generated
    p = parse_params(tiny_params(distill={"param": "pixel", "pixel_init": "noise", "ipc": 1}))
    out = run_stage("image.distill", p, {"shards": tiny_shards, "generator": gen_out}, tmp_path / "distill")
    assert set(pl.read_parquet(out / "eval.parquet")["set"]) == {"pixel-dm", "random-real", "generator-samples",
                                                                  "start"}
    m = json.loads((out / "metrics.json").read_text())
    started = next(s for s in m["sets"] if s["set"] == "start")
    assert m["start_set"] == "start"
    assert m["gain_same_arch"] == pytest.approx(m["same_arch"] - started["same_arch"])


@pytest.mark.parametrize("section, match", [
    ({"ipc": 500}, "distill.ipc = 500: ipc 500 does not fit the data"),
    ({"param": "feature", "layer": 7}, r"distill.layer = 7: .*valid layers: \[0, 1, 2, 3\]"),
])
def test_distill_rejects_bad_input_before_work(generated, tiny_shards, tmp_path, section, match):
    from repflow.stage import run_stage

    _, gen_out = generated
    with pytest.raises(ValueError, match=match):
        run_stage("image.distill", parse_params(tiny_params(distill=section)),
                  {"shards": tiny_shards, "generator": gen_out}, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_distill_rejects_a_generator_of_other_classes(generated, tmp_path):
    from repflow import tracking
    from repflow.stage import run_stage

    _, gen_out = generated
    tracking.configure(tmp_path)
    p = parse_params(tiny_params(prep={"source": "fashion-mnist", "per_class": 5, "test_per_class": 2}))
    other = run_stage("image.prep", p, {}, tmp_path / "fashion")
    with pytest.raises(CheckpointError, match="generator was trained on classes"):
        run_stage("image.distill", p, {"shards": other, "generator": gen_out}, tmp_path / "d")
