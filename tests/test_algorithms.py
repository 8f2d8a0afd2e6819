"""Pure algorithms: NT-Xent, view augmentation, PGD, linear probe, SimCLR training."""
import math

import pytest
import torch
from torch import nn

from repflow.families.image.models import ProbedEncoder, ProjectionHead, build_encoder
from repflow.attacks import PGD, accuracy, robust_accuracy
from repflow.families.image.augment import random_views
from repflow.families.image.contrastive import nt_xent_loss, train_contrastive
from repflow.families.image.probes import embed
from repflow.probe import fit_linear_probe


def nt_xent_direct(z1, z2, t):
    """SimCLR's loss written out anchor by anchor, as in the paper."""
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        num = math.exp(float(z[i] @ z[pos]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(num / den)
    return total / n2


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_direct_computation(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert nt_xent_loss(z1, z2, t).item() == pytest.approx(nt_xent_direct(z1, z2, t), rel=1e-5)


def test_nt_xent_prefers_aligned_views():
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    assert nt_xent_loss(z, z + 0.01 * torch.randn_like(z)) < nt_xent_loss(z, torch.randn_like(z))


def test_random_views_are_seeded_and_in_range():
    x = torch.rand(5, 3, 16, 16)
    a = random_views(x, torch.Generator().manual_seed(3), noise_std=0.05)
    b = random_views(x, torch.Generator().manual_seed(3), noise_std=0.05)
    c = random_views(x, torch.Generator().manual_seed(4), noise_std=0.05)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def classifier(in_ch=1, seed=0):
    torch.manual_seed(seed)
    enc = build_encoder({"name": "small_cnn", "in_channels": in_ch, "width": 4})
    return ProbedEncoder(enc, nn.Linear(enc.out_dim, 3)).eval()


@pytest.mark.slow
def test_pgd_stays_in_ball_and_raises_loss():
    model = classifier()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 12, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
    eps = 4 / 255
    x_adv = PGD(model, eps=eps, steps=5)(x, y)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        assert ce(model(x_adv), y) > ce(model(x), y)


@pytest.mark.slow
def test_pgd_restores_training_mode_and_is_seeded():
    model = classifier().train()
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    a = PGD(model, eps=0.1, steps=2, seed=5)(x, y)
    assert model.training
    b = PGD(model, eps=0.1, steps=2, seed=5)(x, y)
    assert torch.equal(a, b)


def test_pgd_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps must be > 0"):
        PGD(classifier(), eps=0.0)


@pytest.mark.slow
def test_pgd_agrees_with_torchattack():
    """Robust accuracy of our PGD vs torchattack's PGD on the same model and inputs (no random start)."""
    torchattack = pytest.importorskip("torchattack")
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 1, 12, 12, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # all clean-correct, so robust accuracy is the attack's failure rate
    eps, steps, alpha = 0.03, 10, 0.0075
    ours = robust_accuracy(model, PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False), x, y)
    theirs_atk = torchattack.PGD(model, normalize=None, device=torch.device("cpu"), eps=eps, steps=steps,
                                 alpha=alpha, random_start=False)
    x_theirs = theirs_atk(x, y)
    with torch.no_grad():
        theirs = (model(x_theirs).argmax(1) == y).float().mean().item()
    assert ours < 0.9  # the attack does something here
    assert abs(ours - theirs) <= 0.01


@pytest.mark.slow
def test_linear_probe_learns_separable_features():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=g) * 4
    y = torch.randint(0, 3, (300,), generator=g)
    feats = centers[y] + torch.randn(300, 8, generator=g)
    probe = fit_linear_probe(feats, y, 3, epochs=30, lr=0.05, batch_size=64, seed=0)
    assert (probe(feats).argmax(1) == y).float().mean() > 0.95


@pytest.mark.slow
def test_simclr_lowers_the_loss_and_is_deterministic():
    from repflow.families.image.sources import read_source

    digits = read_source("mnist5k").images[::40]  # 125 real digits, every class
    images = torch.from_numpy(digits).unsqueeze(1)[:, :, ::2, ::2].contiguous()

    def fit(epochs):
        torch.manual_seed(0)
        enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4})
        head = ProjectionHead(enc.out_dim, 8)
        hist = train_contrastive(enc, head, images, epochs=epochs, batch_size=64, lr=3e-3, weight_decay=0.0,
                            temperature=0.5, augment={"crop_scale_min": 0.6}, device=torch.device("cpu"), seed=1)
        return enc, hist

    enc_a, hist = fit(8)
    assert hist[-1]["loss"] < hist[0]["loss"] - 0.05
    enc_b, _ = fit(8)
    for (k, a), b in zip(enc_a.state_dict().items(), enc_b.state_dict().values()):
        assert torch.equal(a, b), k
    assert embed(enc_a, images).shape == (len(images), enc_a.out_dim)


@pytest.mark.slow
@pytest.mark.parametrize("name, channels, size", [("small_cnn", 1, 28), ("small_cnn", 3, 32), ("small_cnn_s2", 1, 28),
                                                  ("small_cnn_s2", 3, 7), ("resnet18", 3, 32), ("resnet18", 1, 20)])
def test_encoders_take_any_channels_and_size(name, channels, size):
    enc = build_encoder({"name": name, "in_channels": channels, "width": 8}).eval()
    assert enc(torch.rand(2, channels, size, size)).shape == (2, enc.out_dim)


def test_unknown_encoder_lists_allowed():
    with pytest.raises(ValueError, match="allowed: \\['resnet18', 'small_cnn', 'small_cnn_s2'\\]"):
        build_encoder({"name": "vit"})


@pytest.mark.slow
def test_strided_stem_cuts_the_flops_to_about_a_quarter():
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}
    for name in ("small_cnn", "small_cnn_s2"):
        enc = build_encoder({"name": name, "in_channels": 1, "width": 8}).eval()
        with FlopCounterMode(display=False) as counter:
            enc(torch.rand(1, 1, 28, 28))
        flops[name] = counter.get_total_flops()
    assert 0.2 < flops["small_cnn_s2"] / flops["small_cnn"] < 0.35


def test_accuracy_of_constant_model():
    class Const(nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 1.0]]).repeat(len(x), 1)

    assert accuracy(Const(), torch.rand(4, 1, 2, 2), torch.tensor([1, 1, 0, 1])) == 0.75


def test_linear_reconstruction_r2_matches_ridge_regression():
    """R² (out of sample: against the training mean image) of the closed-form ridge map equals that of
    scikit-learn's Ridge (unpenalised intercept) on the same standardised features and downsized pixels;
    features that are the pixels themselves score ~1, noise ~0."""
    import torch.nn.functional as F
    from sklearn.linear_model import Ridge

    from repflow.families.image.probes import linear_reconstruction_r2

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (120, 1, 8, 8), generator=g, dtype=torch.uint8)
    features = torch.randn(120, 6, generator=g)
    tr, te = slice(0, 90), slice(90, 120)
    mean, std = features[tr].double().mean(0), features[tr].double().std(0) + 1e-8
    z = ((features.double() - mean) / std).numpy()
    pixels = F.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1).double().numpy()
    fit = Ridge(alpha=2.0).fit(z[tr], pixels[tr])
    residual = ((pixels[te] - fit.predict(z[te])) ** 2).sum()
    expected = 1 - residual / ((pixels[te] - pixels[tr].mean(0)) ** 2).sum()
    got = linear_reconstruction_r2(features[tr], images[tr], features[te], images[te], size=4, ridge=2.0)
    assert got == pytest.approx(expected, abs=1e-9)
    batched = linear_reconstruction_r2(features[tr], images[tr].split(7), features[te], iter(images[te].split(11)),
                                       size=4, ridge=2.0)  # batches as a split streamed from shards
    assert batched == pytest.approx(got, rel=1e-12, abs=1e-12)
    with pytest.raises(ValueError, match="differ in length: test 30 vs 29"):
        linear_reconstruction_r2(features[tr], images[tr], features[te], images[91:120])
    own = images.float().flatten(1) / 255
    assert linear_reconstruction_r2(own[tr], images[tr], own[te], images[te], ridge=1e-6) > 0.999
    assert linear_reconstruction_r2(features[tr], images[tr], features[te], images[te]) < 0.05


@pytest.mark.slow
def test_calibrate_batch_norm_measures_the_images_statistics():
    """After calibration the first batch norm's running mean and (unbiased) variance are those of the first
    convolution's outputs over all the images, whatever the batch size; the weights are untouched."""
    from repflow.families.image.models import build_encoder
    from repflow.families.image.probes import calibrate_batch_norm

    torch.manual_seed(0)
    encoder = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4, "mean": [0.5], "std": [0.5],
                             "input_shape": [1, 12, 12]})
    images = torch.randint(0, 256, (50, 1, 12, 12), dtype=torch.uint8)
    weights = {k: v.clone() for k, v in encoder.state_dict().items() if "running" not in k and "num_batches" not in k}
    calibrate_batch_norm(encoder, images, batch_size=50)
    bn = next(m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    conv = next(m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        out = conv((images.float() / 255 - 0.5) / 0.5)
    assert torch.allclose(bn.running_mean, out.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, out.var((0, 2, 3), unbiased=True), atol=1e-4)
    assert not encoder.training and bn.momentum == 0.1
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in weights.items())
