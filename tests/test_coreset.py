"""ACL / DynACL and RCS: the pieces (dual BN, contrastive PGD, DynACL schedule, divergence, greedy
selection) and the select → train → evaluate stages on the tiny digits."""
from __future__ import annotations

import json

import polars as pl
import pytest
import torch

from repflow.families.image.models import DualBatchNorm, ProjectionHead, bn_branch, build_encoder
from repflow.families.image.models.encoders import set_bn_branch
from repflow.families.image.acl import ACL, acl_loss, dynacl_augment, dynacl_strength, dynacl_weight, pgd_contrastive
from repflow.config import ParamsError
from repflow.families.image.contrastive import nt_xent_loss
from repflow.families.image.coreset import (candidate_batches, candidate_gradients, coreset_budget, divergence_drops,
                             representational_divergence, select_coreset_random, select_coreset_rcs, spearman,
                             validation_gradient)
from repflow.family import parse_params
from repflow.manifest import read_manifest
from repflow.shards import ShardSet
from tests.conftest import tiny_params

RD = {"eps": 8 / 255, "alpha": 4 / 255, "steps": 2}
ADV = {"eps": 8 / 255, "alpha": 4 / 255, "steps": 2}
AUG = {"crop_scale_min": 0.6, "flip": True, "brightness": 0.2, "contrast": 0.2, "noise_std": 0.0}


def _dual_models(seed: int = 0):
    torch.manual_seed(seed)
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4, "dual_bn": True})
    return enc, ProjectionHead(enc.out_dim, 8, dual_bn=True)


@pytest.fixture(scope="module")
def digits():
    from repflow.families.image.sources import read_source

    x = torch.from_numpy(read_source("mnist5k").images[::25]).unsqueeze(1)[:, :, ::2, ::2].contiguous()
    return x  # 200 uint8 digits, 14×14


@pytest.mark.slow
def test_dual_batch_norm_keeps_two_sets_of_statistics():
    enc, head = _dual_models()
    x = torch.rand(16, 1, 14, 14)
    enc.train()
    with bn_branch("adv", enc, head):
        enc(x * 0.1)
    bns = [m for m in enc.modules() if isinstance(m, DualBatchNorm)]
    assert bns and all(m.branch == "clean" for m in bns)  # restored
    first = bns[0]
    assert not torch.allclose(first.adv.running_mean, first.clean.running_mean)
    assert torch.equal(first.clean.running_mean, torch.zeros_like(first.clean.running_mean))
    adv_enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4, "dual_bn": True, "bn_branch": "adv"})
    adv_enc.load_state_dict(enc.state_dict())
    enc.eval(), adv_enc.eval()
    with bn_branch("adv", enc):
        assert torch.allclose(adv_enc(x), enc(x))
    assert not torch.allclose(adv_enc(x), enc(x))
    with pytest.raises(ValueError, match="allowed: \\['clean', 'adv'\\]"):
        with bn_branch("robust", enc):
            pass


@pytest.mark.slow
def test_contrastive_pgd_stays_in_the_ball_and_raises_the_loss():
    enc, head = _dual_models()
    x = torch.rand(12, 1, 14, 14)
    g = torch.Generator().manual_seed(0)
    v1, v2 = x, (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    a1, a2 = pgd_contrastive(enc, head, v1, v2, eps=8 / 255, alpha=2 / 255, steps=5, temperature=0.5,
                             generator=torch.Generator().manual_seed(1))
    for v, a in ((v1, a1), (v2, a2)):
        assert (a - v).abs().max() <= 8 / 255 + 1e-6 and a.min() >= 0 and a.max() <= 1
    enc.eval(), head.eval()  # the loss PGD maximises: adv branch, running statistics
    with bn_branch("adv", enc, head):
        clean = nt_xent_loss(head(enc(v1)), head(enc(v2))).item()
        adv = nt_xent_loss(head(enc(a1)), head(enc(a2))).item()
    assert adv > clean
    assert all(p.grad is None for p in enc.parameters())


@pytest.mark.slow
def test_crafting_views_leaves_batch_norm_statistics_and_modes_alone():
    """The official ACL code crafts in eval mode: no PGD iterate may move a running statistic of either
    batch-norm branch (the adv branch is what the saved encoder answers with), and the caller's train mode
    comes back for the loss."""
    enc, head = _dual_models()
    x = torch.rand(16, 1, 14, 14)
    enc.train(), head.train()
    with bn_branch("adv", enc, head):  # give the adv branch statistics of its own first
        head(enc(x))
    before = {k: v.clone() for m in (enc, head) for k, v in m.state_dict().items() if "running" in k
              or "num_batches" in k}
    assert before and any("adv" in k for k in before)
    pgd_contrastive(enc, head, x, x.flip(-1), eps=8 / 255, alpha=2 / 255, steps=3, temperature=0.5,
                    generator=torch.Generator().manual_seed(0))
    after = {k: v for m in (enc, head) for k, v in m.state_dict().items() if k in before}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert enc.training and head.training


@pytest.mark.slow
def test_acl_loss_is_the_mean_and_dynacl_reweights():
    enc, head = _dual_models()
    enc.eval(), head.eval()
    v1, v2, a1, a2 = (torch.rand(6, 1, 14, 14) for _ in range(4))
    clean = nt_xent_loss(head(enc(v1)), head(enc(v2)))
    with bn_branch("adv", enc, head):
        adv = nt_xent_loss(head(enc(a1)), head(enc(a2)))
    assert acl_loss(enc, head, v1, v2, a1, a2, temperature=0.5).item() == pytest.approx(((clean + adv) / 2).item())
    w = 0.4
    assert acl_loss(enc, head, v1, v2, a1, a2, temperature=0.5, adv_weight=w).item() == pytest.approx(
        ((1 - w) * clean + (1 + w) * adv).item() / 2)


def test_acl_trains_each_batch_norm_branch_on_its_own_views_whatever_the_saved_branch():
    """The saved encoder answers with ``inference_bn`` (default adv); training must still send natural views
    through the clean branch: its running statistics move, and they move to the clean views' statistics."""
    enc, head = _dual_models()
    set_bn_branch(enc, "adv"), set_bn_branch(head, "adv")
    enc.train(), head.train()
    v1, v2 = (torch.rand(8, 1, 14, 14) for _ in range(2))
    a1, a2 = (torch.rand(8, 1, 14, 14) * 0.1 + 0.9 for _ in range(2))
    first = next(m for m in enc.modules() if isinstance(m, DualBatchNorm))
    before_clean, before_adv = first.clean.running_mean.clone(), first.adv.running_mean.clone()
    acl_loss(enc, head, v1, v2, a1, a2, temperature=0.5).backward()
    assert not torch.equal(first.clean.running_mean, before_clean)
    assert not torch.equal(first.adv.running_mean, before_adv)
    assert first.branch == "adv"  # the saved branch is restored


def test_dynacl_schedule():
    assert [dynacl_strength(e, 10, 2) for e in range(1, 11)] == pytest.approx(
        [1.0, 1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4, 0.2, 0.2])
    assert dynacl_weight(1.0, 2 / 3) == 0.0 and dynacl_weight(0.4, 0.5) == pytest.approx(0.3)
    aug = dynacl_augment(AUG, 0.5)
    assert aug["crop_scale_min"] == pytest.approx(0.8) and aug["brightness"] == pytest.approx(0.1) and aug["flip"]
    acl = ACL(eps=0.1, alpha=0.01, steps=1, epochs=10, anneal_period=2)
    assert acl.augment(AUG, 1) == AUG and acl.augment(AUG, 9)["contrast"] == pytest.approx(0.04)
    assert ACL(eps=0.1, alpha=0.01, steps=1, epochs=10).augment(AUG, 9) == AUG


@pytest.mark.slow
def test_representational_divergence_grows_with_the_radius():
    enc, head = _dual_models()
    enc.eval(), head.eval()
    x = torch.rand(16, 1, 14, 14)
    rd = [representational_divergence(enc, head, x, eps=e, alpha=e / 2, steps=3,
                                      generator=torch.Generator().manual_seed(0)).item() for e in (1e-4, 8 / 255, 0.3)]
    assert 0 <= rd[0] < rd[1] < rd[2]


@pytest.mark.slow
def test_candidate_gradients_do_not_depend_on_how_candidates_are_split(digits):
    enc, head = _dual_models()
    enc.eval(), head.eval()
    batches = candidate_batches(len(digits), 32, seed=3)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(digits)))
    ids = list(range(len(batches)))
    kw = dict(augment=AUG, temperature=0.5, adversarial=ADV, seed=3)
    whole = candidate_gradients(enc, head, digits, batches, ids, **kw)
    halves = torch.cat([candidate_gradients(enc, head, digits, batches[:3], ids[:3], **kw),
                        candidate_gradients(enc, head, digits, batches[3:], ids[3:], **kw)])
    assert whole.shape == (len(batches), sum(p.numel() for p in head.parameters()))
    assert torch.allclose(whole, halves)
    plain = candidate_gradients(enc, head, digits, batches, ids, **{**kw, "adversarial": None})
    assert not torch.allclose(whole, plain)


@pytest.mark.slow
def test_rcs_greedy_picks_the_best_aligned_batch_and_restores_the_head(digits):
    enc, head = _dual_models()
    enc.eval(), head.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    val = digits[:40]
    kw = dict(budget=64, batch_size=16, augment=AUG, temperature=0.5, adversarial=ADV, rd=RD, head_lr=0.5, seed=5)
    core = select_coreset_rcs(enc, head, digits, val, **kw)
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    assert len(core.picked) == 4 and len(set(core.picked.tolist())) == 4
    assert torch.equal(core.indices, torch.cat([core.batches[i] for i in core.picked.tolist()]).sort().values)
    grads = candidate_gradients(enc, head, digits, core.batches, list(range(len(core.batches))), augment=AUG,
                                temperature=0.5, adversarial=ADV, seed=5)
    g_val, _ = validation_gradient(enc, head, val.float() / 255, rd=RD, seed=5)
    scores = grads @ g_val
    assert core.picked[0] == scores.argmax() and core.gains[0] == pytest.approx(scores.max().item(), rel=1e-4)
    again = select_coreset_rcs(enc, head, digits, val, **kw)
    assert torch.equal(again.indices, core.indices)
    # without the head step between picks, greedy degenerates to the top-k scores
    no_update = select_coreset_rcs(enc, head, digits, val, **{**kw, "head_lr": 0.0})
    assert torch.equal(no_update.picked, scores.topk(4).indices)


def test_budget_and_random_baseline():
    assert coreset_budget(1000, 0.1) == 100
    with pytest.raises(ValueError, match="selects 0 image"):
        coreset_budget(10, 0.01)
    with pytest.raises(ValueError, match="outside \\(0, 1\\]"):
        coreset_budget(10, 1.5)
    r = select_coreset_random(100, 20, seed=1)
    assert len(r.indices) == 20 == len(set(r.indices.tolist()))
    assert torch.equal(r.indices, select_coreset_random(100, 20, seed=1).indices)


@pytest.mark.slow
@pytest.mark.parametrize("coreset_size, steps", [(20, 3), (5, 1)])
def test_coreset_epochs_train_on_every_coreset_image(monkeypatch, coreset_size, steps):
    """A 20-image coreset with batch 8 is 3 batches (7, 7, 6), a 5-image one a single batch: every image
    every epoch. The same set without ``use_every_image`` (the full-data path) drops its ragged rest."""
    import repflow.families.image.contrastive as contrastive

    seen: list[list[int]] = []
    plain_supcon = contrastive.supcon_loss

    def recording_supcon(z1, z2, labels, temperature):
        seen[-1].extend(labels.tolist())
        return plain_supcon(z1, z2, labels, temperature)

    monkeypatch.setattr(contrastive, "supcon_loss", recording_supcon)
    torch.manual_seed(0)
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4})
    head = ProjectionHead(enc.out_dim, 8)
    images = torch.randint(0, 256, (50, 1, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    coreset = torch.randperm(50, generator=torch.Generator().manual_seed(2))[:coreset_size]

    def epoch_indices(epoch):
        seen.append([])
        return coreset

    kw = dict(epochs=2, batch_size=8, lr=1e-3, weight_decay=0.0, temperature=0.5, augment=AUG,
              device=torch.device("cpu"), seed=0, labels=torch.arange(50), epoch_indices=epoch_indices)
    history = contrastive.train_contrastive(enc, head, images, use_every_image=True, **kw)
    assert [sorted(ids) for ids in seen] == [sorted(coreset.tolist())] * 2  # each image once per epoch
    assert [(h["steps"], h["trained"]) for h in history] == [(steps, coreset_size)] * 2
    seen.clear()
    history = contrastive.train_contrastive(enc, head, images, **kw)
    kept = coreset_size if coreset_size < 8 else coreset_size - coreset_size % 8
    assert [(h["steps"], h["trained"]) for h in history] == [(max(1, coreset_size // 8), kept)] * 2
    assert all(len(set(ids)) == kept for ids in seen)


def test_spearman_matches_scipy_and_its_permutation_p_value_separates_signal_from_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, generator=g)
    y = x + 0.5 * torch.randn(40, generator=g)
    y[3] = y[7]  # a tie
    rho, p = spearman(x, y, permutations=2000)
    stats = pytest.importorskip("scipy.stats")
    assert rho == pytest.approx(stats.spearmanr(x.numpy(), y.numpy()).statistic, abs=1e-9)
    assert rho > 0.7 and p < 0.01
    assert spearman(x, -x)[0] == pytest.approx(-1.0)
    _, p_noise = spearman(x, torch.randn(40, generator=g), permutations=2000)
    assert p_noise > 0.05


@pytest.mark.slow
def test_greedy_gain_predicts_the_divergence_drop_of_one_head_step(digits):
    """The mechanism behind RCS: with a small step, the candidates that the gain ⟨g_b, ∇L_RD(U)⟩ ranks
    high are those whose head step lowers L_RD(U) most (first order: drop ≈ step · gain). A briefly trained
    model: at initialisation the projections are near-constant and L_RD (~1e-8 nats) is float noise."""
    from repflow.families.image.contrastive import train_contrastive

    enc, head = _dual_models()
    train_contrastive(enc, head, digits[:120], epochs=2, batch_size=40, lr=1e-2, weight_decay=0.0, temperature=0.5,
                      augment=AUG, device=torch.device("cpu"), seed=0)
    enc.eval(), head.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    batches = candidate_batches(120, 10, seed=5)
    grads = candidate_gradients(enc, head, digits, batches, list(range(len(batches))), augment=AUG,
                                temperature=0.5, adversarial=ADV, seed=5)
    val = digits[120:150]
    g_val, _ = validation_gradient(enc, head, val.float() / 255, rd=RD, seed=9)
    gains = (grads @ g_val).double()
    drops = divergence_drops(enc, head, grads, {"U": val, "held_out": digits[150:180]}, rd=RD, step=1e-2, seed=9)
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())
    assert drops["U"].shape == drops["held_out"].shape == (len(batches),)
    rho, p = spearman(gains, drops["U"], permutations=2000)
    assert rho > 0.8 and p < 0.01
    assert ((drops["U"] > 0) == (gains > 0)).float().mean() > 0.8
    # flipping the step's sign flips the ranking: the drop follows the gradient, not the candidate's size
    raised = divergence_drops(enc, head, grads, {"U": val}, rd=RD, step=-1e-2, seed=9)["U"]
    assert spearman(gains, raised, permutations=200)[0] < -0.8


@pytest.mark.parametrize("section, match", [
    ({"select": {"fraction": 0}}, "select.fraction = 0: Input should be greater than 0"),
    ({"select": {"fraction": 1.2}}, "select.fraction = 1.2"),
    ({"select": {"method": "rcs", "warmup_epochs": 2}}, "select.warmup_epochs = 2: must be below train.epochs"),
    ({"train": {"method": "acl", "loss": "supcon"}}, "method 'acl' trains with NT-Xent"),
    ({"select": {"method": "greedy"}}, "select.method = 'greedy'"),
])
def test_bad_selection_params(section, match):
    with pytest.raises(ParamsError, match=match):
        parse_params(tiny_params(**section))


@pytest.mark.parametrize("section, match", [
    ({"select": {"method": "rcs", "val_size": 10_000}}, "select.val_size = 10000: larger than the 190 training"),
    ({"select": {"method": "random", "fraction": 0.005}}, "select.fraction = 0.005: .*selects 1 image"),
])
def test_selection_that_does_not_fit_the_data_fails_before_training(tiny_shards, tmp_path, section, match):
    from repflow.stage import run_stage

    p = parse_params(tiny_params(**section))
    with pytest.raises(ValueError, match=match):
        run_stage("image.select", p, {"shards": tiny_shards, "views": None}, tmp_path / "select")
    assert not (tmp_path / "select").exists()


@pytest.mark.slow
def test_rcs_acl_select_train_evaluate(tiny_shards, tmp_path, mlflow_tmp, ray_session):
    """Warm-up + RCS selection, DynACL on the coreset with one re-selection, then SLF/ALF evaluation."""
    from repflow.stage import run_stage

    p = parse_params(tiny_params(
        select={"method": "rcs", "fraction": 0.25, "warmup_epochs": 1, "every": 1, "val_size": 32,
                "candidate_batch": 19, "workers": 2},
        train={"method": "dynacl", "epochs": 3, "adversarial": {"steps": 2, "anneal_period": 1}}))
    sel = run_stage("image.select", p, {"shards": tiny_shards, "views": None}, tmp_path / "select")
    table = pl.read_parquet(sel / "coreset.parquet")
    n = ShardSet(tiny_shards).count("train")
    assert n == 190 and table.height == n
    assert table["selected"].sum() == 48  # budget round(0.25 · 190) = 48: ⌈48 / 19⌉ = 3 picks, the last cut
    assert table.filter(pl.col("selected"))["pick_round"].n_unique() == 3
    summary = json.loads((sel / "selection.json").read_text())
    assert summary["selection_seconds"] > 0 and sum(summary["class_counts"].values()) == 48
    assert (sel / "coreset.png").stat().st_size > 10_000

    # the Ray-parallel candidate scoring (workers=2) selects exactly what the in-process one does
    from repflow.families.image.stages._training import choose_coreset, load_training_state, new_models
    enc, head, ec, hc = new_models(p, ShardSet(tiny_shards))
    load_training_state(sel / "warmup.safetensors", enc, head)
    images, _ = ShardSet(tiny_shards).load("train")
    serial = parse_params(tiny_params(select={**p.select.model_dump(), "workers": 1},
                                      train=p.train.model_dump(mode="json")))
    core, _ = choose_coreset(serial, enc, head, ec, hc, images, epoch=1, device=torch.device("cpu"))
    assert torch.equal(core.indices, torch.tensor(table.filter(pl.col("selected"))["index"].to_list()))

    out = run_stage("image.train", p, {"shards": tiny_shards, "views": None, "selection": sel}, tmp_path / "train")
    hist = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist["rounds"]] == [1, 2]
    assert [h["images"] for h in hist["history"]] == [190, 48, 48]
    # the full-data warm-up drops its ragged 62 images; a 48-image coreset (< batch 64) trains on all of them
    assert [(h["steps"], h["trained"]) for h in hist["history"]] == [(2, 128), (1, 48), (1, 48)]
    assert hist["selection_seconds"] > 0 and hist["train_seconds"] > 0
    rounds = pl.read_parquet(out / "coresets.parquet")
    assert rounds.group_by("epoch").len().sort("epoch")["len"].to_list() == [48, 48]
    enc_cfg = json.loads((out / "encoder.json").read_text())
    assert enc_cfg["dual_bn"] and enc_cfg["bn_branch"] == "adv"

    ev = run_stage("image.evaluate", p, {"shards": tiny_shards, "encoder": out}, tmp_path / "evaluate")
    m = json.loads((ev / "metrics.json").read_text())
    for key in ("clean_acc", "robust_acc_mean", "alf_clean_acc", "alf_robust_acc_mean", "representational_divergence"):
        assert key in m, key
    assert m["representational_divergence"] > 0
    assert read_manifest(ev)["files"].keys() >= {"probe.safetensors", "probe_alf.safetensors", "robust_accuracy.png"}
