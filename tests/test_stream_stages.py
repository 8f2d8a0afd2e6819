"""The evaluation stages read their splits in write order from the shards (issue 34): streamed and loaded
splits give the same features, probes, accuracies and attacked subsets, bit for bit."""
import numpy as np
import pytest
import torch

from repflow.attacks import accuracy
from repflow.families.image.models import ProbedEncoder, build_encoder
from repflow.families.image.probes import embed, fit_adversarial_linear_probe
from repflow.families.image.stages._splits import OrderedSplit
from repflow.families.image.stages.evaluate import probes_and_attacked_subset
from repflow.family import parse_params
from repflow.manifest import OutputError, staged_output
from repflow.probe import fit_linear_probe
from repflow.shards import ShardSet, write_image_split
from tests.conftest import rng_images, tiny_params

SPLITS = {"train": 37, "test": 29, "val": 11}


@pytest.fixture
def splits(tmp_path):
    """Three image splits of 12x10 images in shards of 7, labels tied to brightness (a probe can learn them)."""
    meta = {"classes": ["0", "1", "2"], "mean": [0.5], "std": [0.25], "shape": [1, 12, 10], "splits": {}}
    with staged_output(tmp_path / "prep", stage="prep", meta=meta) as tmp:
        for seed, (split, n) in enumerate(SPLITS.items()):
            labels = np.arange(n) % 3
            images = (rng_images(n, seed=seed) // 4 + 64 * labels[:, None, None]).astype(np.uint8)
            meta["splits"][split] = write_image_split(tmp, split, images, labels, shard_size=7)
    return ShardSet(tmp_path / "prep")


def encoder():
    torch.manual_seed(0)
    return build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4, "mean": [0.5], "std": [0.25]}).eval()


def test_ordered_split_streams_what_it_loads(splits):
    torch.set_num_threads(1)
    x, y = splits.load("train")
    streamed, loaded = OrderedSplit(splits, "train", stream=True), OrderedSplit(splits, "train", stream=False)
    for split in (streamed, loaded):
        batches = list(split.batches(8))
        assert [len(b[0]) for b in batches] == [8, 8, 8, 8, 5]
        assert torch.equal(torch.cat([b[0] for b in batches]), x) and torch.equal(torch.cat([b[1] for b in batches]), y)
        assert torch.equal(split.labels(), y) and len(split) == 37
        pick = torch.tensor([30, 2, 17])
        taken = split.take(pick)
        assert torch.equal(taken[0], x[pick]) and torch.equal(taken[1], y[pick])
    enc = encoder()
    feats, labels = streamed.features(enc, batch_size=8)
    assert torch.equal(feats, embed(enc, x, batch_size=8)) and torch.equal(labels, y)
    assert torch.equal(feats, loaded.features(enc, batch_size=8)[0])
    model = ProbedEncoder(enc, torch.nn.Linear(enc.out_dim, 3)).train()
    expected = accuracy(model, x.float().div(255), y)
    assert streamed.accuracy(model, batch_size=8) == expected == loaded.accuracy(model)
    assert model.training  # mode restored


def test_take_reads_one_pass_of_distinct_positions(splits):
    x, y = splits.load("test")
    got = splits.take("test", torch.tensor([28, 0, 13]))
    assert torch.equal(got[0], x[[28, 0, 13]]) and torch.equal(got[1], y[[28, 0, 13]])
    assert splits.take("test", torch.tensor([], dtype=torch.int64))[0].shape == (0, 1, 12, 10)
    with pytest.raises(ValueError, match="distinct positions in \\[0, 29\\)"):
        splits.take("test", torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="distinct positions in \\[0, 29\\)"):
        splits.take("test", torch.tensor([29]))


def test_streamed_count_is_checked_against_the_manifest(splits, monkeypatch):
    monkeypatch.setattr(ShardSet, "count", lambda self, split: 40)
    with pytest.raises(OutputError, match="has 37 samples, manifest says 40"):
        list(OrderedSplit(splits, "train", stream=True).batches(8))
    with pytest.raises(OutputError, match="has 37 samples, manifest says 40"):
        splits.take("train", torch.tensor([0]))


def test_evaluate_probes_and_subset_are_the_same_streamed_or_loaded(splits):
    """SLF probe, clean accuracies and the attacked subset: identical streamed and loaded, and equal to the
    whole-tensor computation the stage did before it streamed. ALF: the loaded path is the whole-tensor ALF;
    the streamed one reads a seeded shuffle buffer (deterministic, another order)."""
    torch.set_num_threads(1)
    evaluate = {"probe_epochs": 20, "probe_batch_size": 8, "max_test": 10, "alf_epochs": 2, "alf_steps": 2}
    device = torch.device("cpu")
    runs = {mode: probes_and_attacked_subset(parse_params(tiny_params(evaluate=evaluate, train={"stream": mode})),
                                             splits, encoder(), device)
            for mode in ("auto", "never", "always")}
    (p_s, m_s, x_s, y_s), (p_l, m_l, x_l, y_l) = runs["auto"], runs["never"]
    slf = {k: v for k, v in m_s.items() if not k.startswith("alf_")}
    assert slf == {k: v for k, v in m_l.items() if not k.startswith("alf_")}
    assert set(slf) == {"clean_acc", "train_acc", "val_acc"}
    assert torch.equal(p_s["slf"].weight, p_l["slf"].weight) and torch.equal(x_s, x_l) and torch.equal(y_s, y_l)
    assert torch.equal(runs["always"][0]["alf"].weight, p_s["alf"].weight)  # same seed, same stream order
    assert not torch.equal(p_s["alf"].weight, p_l["alf"].weight)

    p = parse_params(tiny_params(evaluate=evaluate))
    enc = encoder()
    x_tr, y_tr = splits.load("train")
    x_te, y_te = splits.load("test")
    probe = fit_linear_probe(embed(enc, x_tr), y_tr, 3, epochs=20, lr=p.evaluate.probe_lr, batch_size=8, seed=0)
    assert torch.equal(probe.weight, p_l["slf"].weight)
    model = ProbedEncoder(enc, probe).eval()
    assert m_l["clean_acc"] == accuracy(model, x_te.float().div(255), y_te) > 0.5
    assert m_l["train_acc"] == accuracy(model, x_tr.float().div(255), y_tr)
    pick = torch.randperm(29, generator=torch.Generator().manual_seed(0))[:10].sort().values
    assert torch.equal(x_l, x_te.float().div(255)[pick]) and torch.equal(y_l, y_te[pick])
    alf = fit_adversarial_linear_probe(enc, probe, x_tr, y_tr, epochs=2, lr=p.evaluate.probe_lr, batch_size=8,
                                       eps=p.evaluate.alf_eps, steps=2, seed=0)
    assert torch.equal(alf.weight, p_l["alf"].weight)
    with pytest.raises(ValueError, match="stream that carries its labels"):
        fit_adversarial_linear_probe(enc, probe, x_tr, None, epochs=1, lr=0.01, batch_size=8, eps=0.1, steps=1, seed=0)


def test_compare_reference_arm_is_the_same_streamed_or_loaded(splits):
    """compare's untrained reference arm (batch norm calibrated on the training split, then every probe):
    the same encoder statistics and probe scores from streamed and loaded splits, and the reconstruction R²
    of the whole-tensor ridge fit up to the order of its float64 sums."""
    from repflow.families.image.probes import linear_reconstruction_r2
    from repflow.families.image.stages.compare import run_arm

    torch.set_num_threads(1)
    x, y = OrderedSplit(splits, "test", stream=True).subset(10, 0)
    data = {"shards": splits.location, "views": None, "x_attack": x, "y_attack": y, "x_transfer": x.flip(-1)}
    compare = {"methods": ["simclr"], "seeds": [0], "few_label": [1, 5], "few_label_draws": 2}
    runs = {}
    for mode in ("auto", "never"):
        p = parse_params(tiny_params(compare=compare, train={"stream": mode}, evaluate={"probe_epochs": 10}))
        runs[mode] = run_arm({"method": "init", "seed": 0}, data, p, "cpu")
    scores = ("linear_acc", "robust_acc", "transfer_success", "reconstruction_r2", "few_label_1", "few_label_5")
    assert {k: runs["auto"]["row"][k] for k in scores} == {k: runs["never"]["row"][k] for k in scores}
    state = runs["auto"]["encoder"]
    assert all(torch.equal(v, runs["never"]["encoder"][k]) for k, v in state.items())
    assert any(k.endswith("running_mean") and v.abs().sum() > 0 for k, v in state.items())  # calibrated
    enc = build_encoder(runs["auto"]["config"])
    enc.load_state_dict(state)
    x_tr, x_te = splits.load("train")[0], splits.load("test")[0]
    whole = linear_reconstruction_r2(embed(enc, x_tr), x_tr, embed(enc, x_te), x_te)
    assert runs["auto"]["row"]["reconstruction_r2"] == pytest.approx(whole, rel=1e-12, abs=1e-12)
