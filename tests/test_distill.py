"""Dataset distillation (repflow.families.image.distill): DM / DC losses, the three parameterisations, the distillation
loop, the baselines, cross-architecture evaluation, and the errors for data that does not fit."""
import pytest
import torch

from repflow.families.image.models import ConditionalGenerator
from repflow.families.image.distill import (DISTILL_PARAMS, Augment, FeatureParam, LatentParam, PixelParam, dc_loss,
                                            distill, dm_loss,
                             evaluate_distilled, generator_samples, gradient_distance, initial_latents,
                             random_real_subset, summarize, train_and_test)
from repflow.families.image.models.classifiers import build_classifier

K, SHAPE = 3, (1, 8, 8)
SMALL_NET = {"arch": "convnet", "width": 8, "depth": 2, "norm": "instance"}


def tiny_data(per_class: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose classes differ in brightness, so that there is something to distil."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(K).repeat_interleave(per_class)
    base = (labels.float() + 1) / (K + 1)
    x = (base.view(-1, 1, 1, 1) + 0.2 * torch.randn((len(labels), *SHAPE), generator=g)).clamp(0, 1)
    return x.mul(255).round().byte(), labels


def tiny_generator(num_classes: int = K, shape=SHAPE) -> ConditionalGenerator:
    torch.manual_seed(0)
    return ConditionalGenerator(num_classes, shape, z_dim=4, w_dim=8, channels=8).eval()


def net(config=SMALL_NET, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_classifier({**config, "in_shape": list(SHAPE), "num_classes": K})


def per_class(x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    return [x[y == c].float() / 255 for c in range(K)]


@pytest.mark.slow
@pytest.mark.parametrize("augment", [None, Augment()])
def test_dm_loss_is_zero_for_identical_sets_and_positive_otherwise(augment):
    x, y = tiny_data()
    real = per_class(x, y)
    embed, _ = net().split("block2")
    same = dm_loss(embed, real, [r.clone() for r in real], augment=augment, g=torch.Generator().manual_seed(1))
    assert same.item() == pytest.approx(0.0, abs=1e-10)
    other = dm_loss(embed, real, [r.flip(0)[:2] for r in real[::-1]], augment=augment,
                    g=torch.Generator().manual_seed(1))
    assert other.item() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("augment", [None, Augment()])
def test_dc_loss_is_zero_for_identical_sets_and_positive_otherwise(augment):
    x, y = tiny_data()
    real = per_class(x, y)
    model = net()
    same = dc_loss(model, real, [r.clone() for r in real], augment=augment, g=torch.Generator().manual_seed(1))
    assert same.item() == pytest.approx(0.0, abs=1e-4)
    other = dc_loss(model, real, [r[:1] for r in real[::-1]], augment=augment, g=torch.Generator().manual_seed(1))
    assert other.item() > 0.1


def test_gradient_distance_is_one_minus_cosine_per_output_row_and_skips_biases():
    real = [torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([5.0, 5.0])]
    syn = [torch.tensor([[0.0, 3.0], [0.0, 1.0]]), torch.tensor([-5.0, 1.0])]
    assert float(gradient_distance(real, syn)) == pytest.approx(1.0 + 0.0)
    opposite = [-real[0], real[1]]
    assert float(gradient_distance(real, opposite)) == pytest.approx(4.0)


def test_siamese_augmentation_transforms_both_batches_alike_and_is_differentiable():
    aug = Augment(shift=0.25, rotate=30.0)
    x = torch.rand(4, *SHAPE, requires_grad=True)
    a, b = aug.pair(x, x[:2], torch.Generator().manual_seed(3))
    assert torch.allclose(a[:2], b) and not torch.allclose(a, x)
    per_image = aug(x, torch.Generator().manual_seed(3))
    copies = aug(x[:1].detach().expand(4, *SHAPE), torch.Generator().manual_seed(3))
    assert not torch.allclose(copies[0], copies[1])
    per_image.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = aug(x.detach(), torch.Generator().manual_seed(3))
    assert torch.equal(per_image.detach(), again)


def _params(seed: int = 0):
    x, y = tiny_data()
    gen = tiny_generator()
    return x, y, [PixelParam.from_real(x, y, 2, seed), LatentParam(gen, 2, seed), FeatureParam(gen, 2, 1, seed)]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["dm", "dc"])
def test_gradients_reach_every_parameterisation(loss):
    x, y, params = _params()
    expected = {"pixel": {"pixels"}, "latent": {"latents"}, "feature": {"features", "styles"}}
    for param in params:
        assert set(param.groups()) == expected[param.kind]
        images = param.images()
        assert images.shape == (2 * K, *SHAPE) and images.min() >= 0 and images.max() <= 1
        real = per_class(x, y)
        if loss == "dm":
            embed, _ = net().split("block2")
            value = dm_loss(embed, real, param.by_class(images))
        else:
            value = dc_loss(net(), real, param.by_class(images))
        value.backward()
        for name, tensors in param.groups().items():
            for t in tensors:
                assert t.grad is not None and t.grad.abs().sum() > 0, (param.kind, name)
        if param.kind != "pixel":
            assert all(p.grad is None for p in param.generator.parameters())


@pytest.mark.slow
def test_feature_param_at_init_renders_exactly_the_generator_samples():
    gen = tiny_generator()
    z, c = initial_latents(gen, 3, seed=5)
    with torch.no_grad():
        expected = gen(z, c)
    for layer in gen.layers:
        assert torch.equal(FeatureParam(gen, 3, layer, seed=5).images().detach(), expected)
    assert torch.equal(LatentParam(gen, 3, seed=5).images().detach(), expected)
    images, labels = generator_samples(gen, 3, seed=5)
    assert torch.equal(images, expected) and torch.equal(labels, c)


def test_pixel_starts_real_generator_and_noise_are_the_sets_they_name():
    x, y = tiny_data(per_class=40)
    gen = tiny_generator()
    build = DISTILL_PARAMS["pixel"].build
    real = build(x, y, gen, ipc=3, seed=4, pixel_init="real").snapshot()
    assert torch.equal(real[0], random_real_subset(x, y, 3, seed=4)[0])
    from_gen = build(x, y, gen, ipc=3, seed=4, pixel_init="generator")
    assert torch.equal(from_gen.snapshot()[0], LatentParam(gen, 3, seed=4).snapshot()[0])
    assert torch.equal(from_gen.labels, LatentParam(gen, 3, seed=4).labels)
    noise = build(x, y, gen, ipc=20, seed=4, pixel_init="noise").snapshot()[0]
    unit = x.float() / 255
    assert noise.min() >= 0 and noise.max() <= 1
    assert abs(float(noise.mean()) - float(unit.mean())) < 0.05
    assert torch.equal(noise, build(x, y, gen, ipc=20, seed=4, pixel_init="noise").snapshot()[0])
    assert not torch.equal(noise, build(x, y, gen, ipc=20, seed=5, pixel_init="noise").snapshot()[0])
    with pytest.raises(ValueError, match="allowed: \\['real', 'noise', 'generator'\\]"):
        build(x, y, gen, ipc=1, seed=0, pixel_init="zeros")


def test_gaussian_pixel_noise_has_the_channel_statistics_it_is_given():
    images = PixelParam.from_noise((2, 16, 16), 4, 25, seed=0, mean=[0.2, 0.7], std=[0.05, 0.1]).snapshot()[0]
    per_channel = images.transpose(0, 1).flatten(1)
    assert per_channel.mean(1).tolist() == pytest.approx([0.2, 0.7], abs=0.01)
    assert per_channel.std(1).tolist() == pytest.approx([0.05, 0.1], abs=0.01)
    with pytest.raises(ValueError, match="both mean and std"):
        PixelParam.from_noise((1, 4, 4), 2, 1, seed=0, mean=[0.5])


@pytest.mark.slow
def test_parameterisations_do_not_touch_the_callers_generator():
    gen = tiny_generator()
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    x, y = tiny_data()
    distill(FeatureParam(gen, 1, 2, 0), x, y, loss="dm", iterations=2, net_config=SMALL_NET)
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())
    assert all(p.requires_grad for p in gen.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pixel", "latent", "feature"])
def test_distillation_reduces_the_dm_loss(kind):
    x, y = tiny_data(per_class=8)
    gen = tiny_generator()
    param = {"pixel": lambda: PixelParam.from_noise(SHAPE, K, 2, seed=0), "latent": lambda: LatentParam(gen, 2, 0),
             "feature": lambda: FeatureParam(gen, 2, 1, 0)}[kind]()
    embed, _ = net(seed=7).split("block2")
    real = per_class(x, y)

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(dm_loss(embed, real, param.by_class(param.images())))

    before = fixed_loss()
    history = distill(param, x, y, loss="dm", iterations=15, real_per_class=8, net_config=SMALL_NET, augment=None,
                      lr={"pixels": 0.3, "latents": 10.0, "features": 1.0}, seed=0)
    assert len(history) == 15
    assert fixed_loss() < 0.7 * before
    images = param.images()
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.slow
def test_a_snapshot_taken_mid_run_keeps_the_set_of_that_iteration():
    x, y = tiny_data()
    param = PixelParam.from_noise(SHAPE, K, 1, seed=0)
    kept = {}
    distill(param, x, y, loss="dm", iterations=4, net_config=SMALL_NET, lr={"pixels": 1.0}, seed=0,
            on_step=lambda row: kept.setdefault(row["iteration"], param.snapshot()[0]))
    assert not torch.equal(kept[2], kept[4])
    assert torch.equal(kept[4], param.snapshot()[0])


@pytest.mark.slow
def test_dc_distillation_runs_with_an_inner_loop_and_pixels_stay_in_range():
    x, y = tiny_data()
    param = PixelParam.from_noise(SHAPE, K, 1, seed=0)
    history = distill(param, x, y, loss="dc", iterations=3, outer_loop=2, inner_steps=2, net_config=SMALL_NET,
                      lr={"pixels": 10.0}, seed=0)
    assert [row["iteration"] for row in history] == [1, 2, 3] and all(row["loss"] > 0 for row in history)
    assert param.pixels.min() >= 0 and param.pixels.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["dm", "dc"])
def test_the_same_seed_gives_the_same_distilled_set(loss):
    x, y = tiny_data()
    gen = tiny_generator()
    runs = []
    for seed in (0, 0, 1):
        param = FeatureParam(gen, 1, 1, seed)
        history = distill(param, x, y, loss=loss, iterations=3, net_config=SMALL_NET, seed=seed)
        runs.append((param.snapshot()[0], [row["loss"] for row in history]))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not torch.equal(runs[0][0], runs[2][0])


def test_random_real_subset_is_class_major_seeded_and_real():
    x, y = tiny_data()
    images, labels = random_real_subset(x, y, 2, seed=3)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2] and images.dtype == torch.float32
    assert torch.equal(images, random_real_subset(x, y, 2, seed=3)[0])
    assert not torch.equal(images, random_real_subset(x, y, 2, seed=4)[0])
    pool = (x.float() / 255).flatten(1)
    for img, label in zip(images, labels):
        match = (pool == img.flatten()).all(1).nonzero().flatten()
        assert len(match) and int(y[match[0]]) == int(label)


@pytest.mark.slow
def test_cross_architecture_evaluation_rows_and_summary():
    x, y = tiny_data(per_class=10)
    archs = {"convnet": SMALL_NET, "mlp": {"arch": "mlp", "width": 16, "depth": 1},
             "convnet-bn": {**SMALL_NET, "norm": "batch"}, "resnet": {"arch": "resnet", "width": 4}}
    images, labels = random_real_subset(x, y, 3, seed=0)
    rows = evaluate_distilled(images, labels, x, y, archs=archs, seeds=[0, 1], epochs=30, lr=0.05)
    assert [(r["arch"], r["seed"]) for r in rows] == [(a, s) for a in archs for s in (0, 1)]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in rows)
    assert max(r["test_acc"] for r in rows) > 1 / K + 0.2  # brightness separates the classes
    again = train_and_test(SMALL_NET, images, labels, x, y, seed=1, epochs=30, lr=0.05)
    assert again == rows[1]["test_acc"]
    summary = summarize(rows)
    means = {a: sum(r["test_acc"] for r in rows if r["arch"] == a) / 2 for a in archs}
    assert summary["same_arch"] == pytest.approx(means["convnet"])
    assert summary["cross_arch"] == pytest.approx((means["mlp"] + means["convnet-bn"] + means["resnet"]) / 3)


# ---------------------------------------------------------------- bad input


def test_ipc_larger_than_the_smallest_class_is_an_error():
    x, y = tiny_data(per_class=6)
    keep = torch.cat([torch.arange(0, 6), torch.arange(6, 10), torch.arange(12, 18)])  # class 1 has 4 images
    x, y = x[keep], y[keep]
    with pytest.raises(ValueError, match=r"ipc 5 .*class 1\) has 4 images; allowed: 1\.\.4"):
        random_real_subset(x, y, 5, seed=0)
    with pytest.raises(ValueError, match=r"ipc 5 .*class 1\) has 4 images"):
        PixelParam.from_real(x, y, 5, seed=0)
    with pytest.raises(ValueError, match=r"ipc 5 .*class 1\) has 4 images"):
        distill(LatentParam(tiny_generator(), 5, 0), x, y, iterations=1)


def test_a_layer_the_generator_does_not_have_is_an_error():
    with pytest.raises(ValueError, match=r"layer 4 .*valid layers: \[0, 1, 2, 3\]"):
        FeatureParam(tiny_generator(), 1, 4, 0)
    with pytest.raises(ValueError, match=r"layer -1 .*valid layers"):
        FeatureParam(tiny_generator(), 1, -1, 0)


def test_a_generator_trained_on_other_classes_or_shapes_is_an_error():
    x, y = tiny_data()
    with pytest.raises(ValueError, match="generator was trained on 5 classes, the data has 3"):
        distill(FeatureParam(tiny_generator(num_classes=5), 1, 1, 0), x, y, iterations=1)
    with pytest.raises(ValueError, match=r"shape \(1, 8, 8\).*\(1, 12, 12\)"):
        distill(LatentParam(tiny_generator(shape=(1, 12, 12)), 1, 0), x, y, iterations=1)
    with pytest.raises(ValueError, match="loss 'mtt' unknown; allowed: \\['dc', 'dm'\\]"):
        distill(LatentParam(tiny_generator(), 1, 0), x, y, loss="mtt", iterations=1)
