"""Attacks (FGSM, PGD ℓ∞/ℓ2, MI-FGSM, DI, TI, SSA), SVD logit fusion, success rate, PGD training, zoo."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repflow.families.image.models import build_classifier
from repflow.attacks import (ATTACKS, DI, MIFGSM, PGD, SSA, TI, IterativeAttack, SVDLogitFusion,
                             attack_success_rate, dct_2d, dct_matrix, gaussian_kernel, idct_2d, make_attack,
                             rank1_ablation_accuracy, rank1_approximation)
from repflow.families.image.supervised import train_classifier
from repflow.families.image.zoo import ZOO_SPECS, ZooSpec, member_role, train_zoo_member
from repflow.families.image.params import TransferParams, ZooParams


@pytest.fixture(scope="module")
def digits():
    """MNIST-5k digits (28×28) shuffled once: 1500 training and 400 test images, uint8 and [0, 1]."""
    from repflow.families.image.sources import read_source

    src = read_source("mnist5k")
    order = torch.randperm(len(src.labels), generator=torch.Generator().manual_seed(0))
    images = torch.from_numpy(src.images.copy()).unsqueeze(1)[order]
    labels = torch.from_numpy(src.labels.copy()).long()[order]
    return {"x_train": images[:1500], "y_train": labels[:1500],
            "x_test": images[1500:1900].float() / 255, "y_test": labels[1500:1900]}


@pytest.fixture(scope="module")
def surrogate(digits):
    """A 3-block ConvNet (width 8) trained for two epochs: about 80 % test accuracy."""
    torch.manual_seed(0)
    model = build_classifier({"arch": "convnet", "in_shape": [1, 28, 28], "num_classes": 10, "width": 8})
    train_classifier(model, digits["x_train"], digits["y_train"], epochs=2, lr=3e-3, batch_size=64, seed=0)
    return model.eval()


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_classifier({"arch": "convnet", "in_shape": [1, 12, 12], "num_classes": 3, "width": 4}).eval()


def random_batch(n=8, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.randint(0, 3, (n,), generator=g)


def quick_params(name, **extra):
    params = {} if name == "fgsm" else {"steps": 3}
    if name == "ssa":
        params["num_spectrum"] = 2
    return {**params, **extra}


@pytest.mark.slow
@pytest.mark.parametrize("name,norm", [(name, norm) for name in sorted(ATTACKS) for norm in ("linf", "l2")
                                       if not (name == "pgd_l2" and norm == "linf")])
def test_every_attack_stays_in_the_ball_and_box_and_raises_the_loss(name, norm):
    model = tiny_model()
    x, y = random_batch()
    eps = 0.05 if norm == "linf" else 0.5
    params = quick_params(name, **({} if name == "pgd_l2" else {"norm": norm}))
    x_adv = make_attack(name, model, eps=eps, **params)(x, y)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (size <= eps * (1 + 1e-5)).all() and size.max() > eps / 2
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)


def robust_acc(model, x_adv, y):
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pgd", "mifgsm", "di"])
def test_robust_accuracy_matches_torchattack(surrogate, digits, name):
    """Same model, inputs and params (no random start; torchattack's DI draws from the global RNG, which
    is seeded like ours, so both make the same draws): robust accuracy within one point."""
    torchattack = pytest.importorskip("torchattack")
    x, y = digits["x_test"], digits["y_test"]
    eps, steps, cpu = 0.1, 5, torch.device("cpu")
    if name == "pgd":
        ours = PGD(surrogate, eps=eps, alpha=eps / 4, steps=steps, random_start=False)
        theirs = torchattack.PGD(surrogate, device=cpu, eps=eps, alpha=eps / 4, steps=steps, random_start=False)
    elif name == "mifgsm":
        ours = MIFGSM(surrogate, eps=eps, steps=steps)
        theirs = torchattack.MIFGSM(surrogate, device=cpu, eps=eps, steps=steps, decay=1.0)
    else:
        ours = DI(surrogate, eps=eps, steps=steps, diversity_prob=0.7, resize_rate=0.9, seed=7)
        theirs = torchattack.DIFGSM(surrogate, device=cpu, eps=eps, steps=steps, decay=1.0, diversity_prob=0.7,
                                    resize_rate=0.9)
        torch.manual_seed(7)
    theirs_acc = robust_acc(surrogate, theirs(x, y).detach(), y)
    ours_acc = robust_acc(surrogate, ours(x, y), y)
    print(f"{name}: clean {robust_acc(surrogate, x, y):.4f}, ours {ours_acc:.4f}, torchattack {theirs_acc:.4f}")
    assert robust_acc(surrogate, x, y) > 0.7
    assert ours_acc < 0.5  # the attack works here
    assert abs(ours_acc - theirs_acc) <= 0.01


@pytest.mark.slow
def test_input_transforms_reduce_to_mi_fgsm_when_switched_off():
    model = tiny_model()
    x, y = random_batch()
    base = MIFGSM(model, eps=0.05, steps=4)(x, y)
    assert torch.equal(DI(model, eps=0.05, steps=4, diversity_prob=0.0)(x, y), base)
    assert torch.equal(TI(model, eps=0.05, steps=4, kernel_size=1)(x, y), base)
    assert not torch.equal(TI(model, eps=0.05, steps=4, kernel_size=5)(x, y), base)
    assert not torch.equal(MIFGSM(model, eps=0.05, steps=4, decay=0.0)(x, y), base)  # momentum matters


@pytest.mark.slow
def test_attacks_are_seeded_and_restore_every_module_mode():
    model = tiny_model().train()
    model.stages[0].eval()  # a mixed state must come back as it was
    x, y = random_batch()
    a = make_attack("ssa", model, eps=0.05, steps=2, num_spectrum=2, seed=3, svd={"layer": "block2"})(x, y)
    b = make_attack("ssa", model, eps=0.05, steps=2, num_spectrum=2, seed=3, svd={"layer": "block2"})(x, y)
    c = make_attack("ssa", model, eps=0.05, steps=2, num_spectrum=2, seed=4, svd={"layer": "block2"})(x, y)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training and not model.stages[0].training and model.stages[1].training


def test_dct_is_orthonormal_and_matches_scipy():
    scipy_fft = pytest.importorskip("scipy.fft")
    d = dct_matrix(7)
    assert torch.allclose(d @ d.T, torch.eye(7), atol=1e-6)
    x = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    expected = torch.from_numpy(scipy_fft.dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1)))
    assert torch.allclose(dct_2d(x), expected, atol=1e-10)
    assert torch.allclose(idct_2d(dct_2d(x)), x, atol=1e-10)


def test_ssa_copies_are_the_spectrum_transform_and_averaged():
    model = tiny_model()
    x, _ = random_batch()
    quiet = SSA(model, eps=0.05, rho=0.0, spectrum_sigma=1e-9)
    assert torch.allclose(quiet.transform_input(x), x, atol=1e-5)  # no noise, M = 1: identity
    noisy = SSA(model, eps=0.05, rho=0.5)
    assert not torch.allclose(noisy.transform_input(x), x, atol=1e-2) and noisy.copies == 20


def test_gaussian_kernel_is_a_normalised_symmetric_blur():
    k = gaussian_kernel(7, 1.5)
    assert k.shape == (7, 7) and torch.isclose(k.sum(), torch.tensor(1.0))
    assert torch.equal(k, k.T) and torch.equal(k, k.flip(0)) and k[3, 3] == k.max()


def test_rank1_of_a_rank1_matrix_is_itself():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, 1, generator=g) @ torch.randn(3, 1, 9, generator=g)
    assert torch.allclose(rank1_approximation(a, "exact"), a, atol=1e-5)
    assert torch.allclose(rank1_approximation(a, "power", 3, g), a, atol=1e-5)


def test_power_iteration_matches_exact_svd_and_is_reproducible():
    g = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(4, 8, 8, generator=g))
    v, _ = torch.linalg.qr(torch.randn(4, 12, 8, generator=g))
    s = torch.tensor([5.0, 2.0, 1.5, 1.0, 0.5, 0.2, 0.1, 0.0])
    a = (u * s) @ v.mT
    best = (s[0] * u[..., :1]) @ v[..., :1].mT
    assert torch.allclose(rank1_approximation(a, "exact"), best, atol=1e-5)
    power = rank1_approximation(a, "power", 20, torch.Generator().manual_seed(5))
    assert torch.allclose(power, best, atol=1e-5)
    assert torch.equal(power, rank1_approximation(a, "power", 20, torch.Generator().manual_seed(5)))


def test_exact_rank1_gradient_is_the_svd_gradient_and_finite_on_repeated_singular_values():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(2, 6, 10, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 6, 10, generator=g, dtype=torch.float64)
    left, singular, right = torch.linalg.svd(a, full_matrices=False)
    reference = (singular[:, :1, None] * left[..., :1]) @ right[:, :1, :]
    (expected,) = torch.autograd.grad((reference * weight).sum(), a)
    (ours,) = torch.autograd.grad((rank1_approximation(a, "exact") * weight).sum(), a)
    assert torch.allclose(ours, expected, atol=1e-8)
    dead = torch.zeros(2, 16, 9)
    dead[:, :4] = torch.rand(2, 4, 9, generator=g)  # 12 dead channels: singular value 0 repeated
    dead.requires_grad_(True)
    for method in ("exact", "power"):
        (grad,) = torch.autograd.grad(rank1_approximation(dead, method, 20, g).sum(), dead)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def _unrolled_power_rank1(a, iterations, generator):
    """The SVD-SSA code's power iteration, round by round: the function rank1_approximation computes."""
    v = torch.randn((a.shape[0], a.shape[2], 1), generator=generator).to(a)
    for _ in range(iterations):
        u = F.normalize(a @ v, dim=1)
        v = F.normalize(a.mT @ u, dim=1)
    return (a @ v) @ v.mT


@pytest.mark.parametrize("shape", [(3, 12, 7), (3, 5, 16)])  # AᵀA or A Aᵀ is the smaller Gram matrix
@pytest.mark.parametrize("iterations", [1, 6, 20])
def test_power_rank1_is_the_unrolled_iteration_in_value_and_gradient(shape, iterations):
    a = torch.relu(torch.randn(shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    a.requires_grad_(True)
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    ours = rank1_approximation(a, "power", iterations, torch.Generator().manual_seed(9))
    reference = _unrolled_power_rank1(a, iterations, torch.Generator().manual_seed(9))
    assert torch.allclose(ours, reference, atol=1e-12)
    (grad,) = torch.autograd.grad((ours * weight).sum(), a)
    (expected,) = torch.autograd.grad((reference * weight).sum(), a)
    assert torch.allclose(grad, expected, atol=1e-9)


@pytest.mark.slow
def test_ssa_copies_in_one_batch_give_the_one_at_a_time_gradient():
    model = tiny_model()
    x, y = random_batch()
    together = SSA(model, eps=0.05, num_spectrum=5, seed=1)
    together.pass_images = {"cpu": 10_000, "other": 10_000}  # as on a GPU: all five copies in one pass
    apart = SSA(model, eps=0.05, num_spectrum=5, seed=1)
    apart.pass_images = {"cpu": 1, "other": 1}
    assert torch.allclose(together.loss_gradient(x, y), apart.loss_gradient(x, y), atol=1e-6)


@pytest.mark.slow
def test_attacks_freeze_the_parameters_only_while_they_run():
    model = tiny_model()
    model.stages[0][0].bias.requires_grad_(False)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(any(p.requires_grad
                                                                          for p in module.parameters())))
    PGD(model, eps=0.05, steps=2)(*random_batch())
    assert seen and not any(seen)
    assert [p.requires_grad for p in model.parameters()] == [p is not model.stages[0][0].bias
                                                             for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())


def test_a_failing_attack_still_restores_the_parameters_and_modes():
    """The freeze and eval switch are undone on the way out of an error too (a bad label here), so a
    model that an attack raised on can still be trained."""
    model = tiny_model().train()
    model.stages[0][0].bias.requires_grad_(False)
    model.stages[1].eval()
    x, _ = random_batch()
    with pytest.raises(IndexError):
        PGD(model, eps=0.05, steps=2)(x, torch.full((len(x),), 7))
    assert [p.requires_grad for p in model.parameters()] == [p is not model.stages[0][0].bias
                                                             for p in model.parameters()]
    assert model.training and model.stages[0].training and not model.stages[1].training


@pytest.mark.slow
def test_power_and_exact_agree_on_real_middle_features(surrogate, digits):
    front, _ = surrogate.split("block2")
    with torch.no_grad():
        feats = front(digits["x_test"][:32]).flatten(2)
    exact = rank1_approximation(feats, "exact")
    power = rank1_approximation(feats, "power", 20, torch.Generator().manual_seed(0))
    assert (power - exact).norm() / exact.norm() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mifgsm", "di", "ssa"])
def test_fusion_with_beta_one_is_the_base_attack(surrogate, digits, name):
    x, y = digits["x_test"][:64], digits["y_test"][:64]
    params = quick_params(name, eps=0.1, seed=2)
    base = make_attack(name, surrogate, **params)(x, y)
    fused = make_attack(name, surrogate, svd={"layer": "block2", "beta": 1.0}, **params)(x, y)
    assert torch.equal(fused, base)


@pytest.mark.slow
def test_fused_attack_differs_from_base_and_fools_the_surrogate(surrogate, digits):
    x, y = digits["x_test"][:200], digits["y_test"][:200]
    fusion = SVDLogitFusion(surrogate, "block2", beta=0.5)
    with torch.no_grad():
        front, back = surrogate.split("block2")
        feature = front(x)
        halfway = 0.5 * back(feature) + 0.5 * back(fusion.rank1_feature(feature))
    torch.testing.assert_close(fusion(x), halfway, atol=1e-3, rtol=1e-3)  # power vs power: different starts
    base = MIFGSM(surrogate, eps=0.1, steps=5)(x, y)
    fused = MIFGSM(fusion, eps=0.1, steps=5)(x, y)
    assert not torch.equal(base, fused)
    assert (fused - x).abs().max() <= 0.1 + 1e-6 and fused.min() >= 0 and fused.max() <= 1
    rate, count = attack_success_rate(surrogate, fused, x, y)
    assert count > 150 and rate > 0.5


def test_attack_success_rate_counts_only_clean_correct_inputs():
    class Brightness(nn.Module):  # class 1 when the mean pixel is above 0.5
        def forward(self, x):
            m = x.flatten(1).mean(1, keepdim=True)
            return torch.cat([0.5 - m, m - 0.5], 1)

    x = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.7]).view(5, 1, 1, 1)
    y = torch.tensor([1, 1, 0, 0, 0])  # the last is misclassified when clean
    x_adv = torch.tensor([0.1, 0.8, 0.1, 0.9, 0.1]).view(5, 1, 1, 1)  # flips 1st and 4th; 5th doesn't count
    rate, count = attack_success_rate(Brightness(), x_adv, x, y, batch_size=2)
    assert count == 4 and rate == pytest.approx(0.5)


def test_bad_inputs_name_the_value_and_the_allowed_ones():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"'cw' unknown; valid attacks: \['di', 'fgsm', 'mifgsm', 'pgd', 'pgd_l2', "):
        make_attack("cw", model, eps=0.1)
    with pytest.raises(ValueError, match=r"unknown params \['kernel_size'\]; allowed: .*'resize_rate'"):
        make_attack("di", model, eps=0.1, kernel_size=3)
    with pytest.raises(ValueError, match=r"split layer 'block9' not in Classifier; valid layers: \['block1', "
                                         r"'block2', 'block3'\]"):
        make_attack("mifgsm", model, eps=0.1, svd={"layer": "block9"})
    with pytest.raises(ValueError, match="svd params"):
        make_attack("mifgsm", model, eps=0.1, svd={"layer": "block2", "rank": 2})
    for eps in (0.0, -0.1):
        with pytest.raises(ValueError, match=f"eps must be > 0, got {eps}"):
            make_attack("ssa", model, eps=eps)
    with pytest.raises(ValueError, match=r"norm 'l1' unknown; allowed: \['linf', 'l2'\]"):
        PGD(model, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match=r"rank-1 method 'qr' unknown; allowed: \['power', 'exact'\]"):
        SVDLogitFusion(model, "block2", method="qr")
    with pytest.raises(ValueError, match="needs a model with named split points"):
        SVDLogitFusion(nn.Sequential(nn.Flatten(), nn.Linear(144, 3)), "0")


@pytest.mark.slow
def test_pgd_training_makes_a_more_robust_model(digits):
    x, y, x_test, y_test = digits["x_train"][:1000], digits["y_train"][:1000], digits["x_test"], digits["y_test"]

    def fit(adversarial):
        torch.manual_seed(0)
        model = build_classifier({"arch": "convnet", "in_shape": [1, 28, 28], "num_classes": 10, "width": 8})
        train_classifier(model, x, y, epochs=2, lr=3e-3, batch_size=50, seed=0, adversarial=adversarial)
        return model

    plain, robust = fit(None), fit({"eps": 0.1, "steps": 3})
    attack = {"eps": 0.1, "steps": 5, "seed": 1}
    assert (robust_acc(robust, PGD(robust, **attack)(x_test, y_test), y_test)
            > robust_acc(plain, PGD(plain, **attack)(x_test, y_test), y_test) + 0.15)


@pytest.mark.slow
def test_zoo_member_is_a_trained_eval_classifier(digits):
    spec = ZOO_SPECS["mlp"]
    model = train_zoo_member(spec, digits["x_train"], digits["y_train"], seed=0, epochs=4, num_classes=10)
    assert not model.training and model.layer_names == ["fc1", "fc2", "out"]
    assert robust_acc(model, digits["x_test"], digits["y_test"]) > 0.8


def test_zoo_has_one_default_surrogate_and_no_two_members_are_the_same_model():
    surrogates = [s.name for s in ZOO_SPECS.values() if s.role == "surrogate"]
    assert surrogates == [ZooParams().surrogate]
    assert {s.role for s in ZOO_SPECS.values()} == {"surrogate", "target", "defence"}
    trained_as = [(repr(sorted(s.model.items())), repr(s.adversarial), s.seed_offset) for s in ZOO_SPECS.values()]
    assert len(set(trained_as)) == len(trained_as)


def test_another_surrogate_makes_the_default_one_a_target():
    default = ZooParams().surrogate
    assert member_role(default, default) == "surrogate"
    assert member_role("resnet8", "resnet8") == "surrogate"
    assert member_role(default, "resnet8") == "target"
    assert member_role("convnet_pgd", "resnet8") == "defence"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO_SPECS))
def test_every_zoo_member_builds_and_splits_back_to_its_logits(name):
    torch.manual_seed(0)
    config = {**ZOO_SPECS[name].model, "in_shape": [1, 28, 28], "num_classes": 10}
    model = build_classifier(config).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (3, 10)
        for layer in model.layer_names[:-1]:
            front, back = model.split(layer)
            torch.testing.assert_close(back(front(x)), logits)


def test_gap_head_pools_the_last_map_and_takes_any_image_size():
    gap = {"arch": "convnet", "width": 8, "depth": 3, "norm": "batch", "pool": "gap", "num_classes": 10}
    small, large = (build_classifier({**gap, "in_shape": [1, n, n]}) for n in (16, 32))
    assert small.stages.fc[-1].in_features == large.stages.fc[-1].in_features == 8
    flat = build_classifier({**gap, "pool": "flatten", "in_shape": [1, 32, 32]})
    assert flat.stages.fc[-1].in_features == 8 * 4 * 4
    with pytest.raises(ValueError, match="pool 'max' unknown; allowed: flatten, gap"):
        build_classifier({**gap, "pool": "max", "in_shape": [1, 16, 16]})


@pytest.mark.slow
@pytest.mark.parametrize("name, premise_holds", [(ZooParams().surrogate, True), ("convnet", False)])
def test_rank1_middle_feature_keeps_the_accuracy_on_the_default_surrogate_only(digits, name, premise_holds):
    """SVD fusion's premise: the rank-1 part of the split feature carries the class information. It does
    on the default surrogate (batch norm, pooled head); the instance-norm ConvNet strips its scale.
    The architectures at width 16, trained briefly at a high learning rate to stay fast."""
    spec = ZooSpec(name, "target", {**ZOO_SPECS[name].model, "width": 16}, lr=1e-2)
    model = train_zoo_member(spec, digits["x_train"], digits["y_train"], seed=0, epochs=3, batch_size=32,
                             num_classes=10)
    x, y = digits["x_test"], digits["y_test"]
    acc = rank1_ablation_accuracy(model, TransferParams().svd_layer, x, y, batch_size=64)
    assert acc["full feature"] == pytest.approx(robust_acc(model, x, y))  # the split reassembles the model
    rank1_acc, residual_acc = acc["rank-1 part"], acc["residual"]
    assert (rank1_acc > residual_acc + 0.1) if premise_holds else (residual_acc > rank1_acc + 0.1)


@pytest.mark.slow
def test_compiled_attacks_give_the_eager_examples():
    """``compile=True`` (evaluate.compile / transfer.compile) only changes how the model runs: the same
    adversarial examples as eager up to float rounding, here through SVD logit fusion (the model compiled is
    the fused one; one case, since compiling costs seconds)."""
    svd = {"layer": "block2", "iterations": 5}
    model = tiny_model()
    x, y = random_batch(16)
    params = {"eps": 8 / 255, "steps": 3, "seed": 1, "decay": 1.0}
    eager = make_attack("mifgsm", model, svd=svd, **params)(x, y)
    compiled = make_attack("mifgsm", model, svd=svd, compile=True, **params)(x, y)
    assert torch.allclose(eager, compiled, atol=1e-5)
    assert (compiled - x).abs().max() <= 8 / 255 + 1e-6


@pytest.mark.parametrize("name,extra", [("pgd", {}), ("pgd_l2", {"eps": 0.5}), ("mifgsm", {}), ("di", {}),
                                        ("ti", {}), ("ssa", {"num_spectrum": 3}), ("fgsm", {}),
                                        ("pgd", {"svd": {"layer": "block1"}})])
def test_passes_of_a_few_images_give_one_pass_adversarial_examples(name, extra):
    """A CPU attack takes the model's gradient ``pass_images`` images at a time (cache-sized chunks); the
    examples must be those of one pass over the whole batch (the transforms' draws included), same seed."""
    model = tiny_model()
    x, y = random_batch(n=IterativeAttack.pass_images["cpu"] + 5)
    params = {"eps": 0.05, **quick_params(name), "seed": 3, **extra}
    one_pass = make_attack(name, model, **params)
    one_pass.pass_images = {"cpu": 10_000, "other": 10_000}
    chunked = make_attack(name, model, **params)
    assert chunked.pass_images["cpu"] < len(x)  # the default chunks this batch
    assert torch.allclose(chunked(x, y), one_pass(x, y), atol=1e-6)
