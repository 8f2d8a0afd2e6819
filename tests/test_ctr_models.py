"""The CTR family's models and training: every registered model learns on a tiny table, gradient reversal
flips the sign of the gradient (alone and inside MARN), D1 never trains the encoder, batch composition does
not change a prediction, the same seed gives the same predictions, and the DeepCTR-Torch peer runs."""
from __future__ import annotations

import polars as pl
import pytest
import torch

from repflow.families.ctr.features import (
    UNKNOWN, UnknownUser, build_examples, build_feature_space, examples_to_tensors, time_split, user_request)
from repflow.families.ctr.metrics import auc
from repflow.families.ctr.models import CTR_MODELS, MODALITIES, build_ctr_model, grad_reverse
from repflow.families.ctr.recommend import recommend
from repflow.families.ctr.tables import read_interaction_table
from repflow.families.ctr.training import ctr_losses, grl_schedule, predict, predict_with_attention, train_ctr
from repflow.registry import UnknownName
from tests.ctr_tiny import COLUMNS, write_tiny

SMALL = {"dim": 8, "user_dim": 4, "attention_hidden": 8, "hidden": (16,)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tables = read_interaction_table(write_tiny(tmp_path_factory.mktemp("ctr")), COLUMNS)
    split, _ = time_split(tables.interactions)
    space = build_feature_space(split, tables.items, min_word_count=1)
    examples = build_examples(split, space, history_len=5)
    return space.tensors(), examples_to_tensors(examples, "train", 5), examples_to_tensors(examples, "test", 5)


def small(name: str, features, seed: int = 0):
    torch.manual_seed(seed)
    return build_ctr_model(name, features, **SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CTR_MODELS))
def test_every_model_learns(name, data):
    features, train, _ = data
    model = small(name, features)

    def bce() -> float:
        with torch.no_grad():
            return float(ctr_losses(model(train.user, train.item, train.history), train.label)["bce"])

    before = bce()
    history = train_ctr(model, train, epochs=6, batch_size=32, lr=5e-3, seed=0)
    after = bce()
    assert after < before - 0.05, (before, after)
    assert history[-1]["bce"] < history[0]["bce"] and history[-1]["samples_per_s"] > 0
    if CTR_MODELS[name].discriminators:
        assert {"d2", "grl_scale"} <= set(history[-1]) and ("d1" in history[-1]) == (CTR_MODELS[name].discriminators
                                                                                    == 2)


@pytest.mark.parametrize("name", list(CTR_MODELS))
def test_outputs(name, data):
    features, _, test = data
    out = small(name, features)(test.user, test.item, test.history)
    n, m = len(test), len(MODALITIES)
    assert out.logits.shape == (n,) and torch.isfinite(out.logits).all()
    if name == "din_concat":
        assert out.modality_attention is None and out.d2_logits is None
    else:
        assert out.modality_attention.shape == (n, m)
        assert torch.allclose(out.modality_attention.sum(1), torch.ones(n))
    if CTR_MODELS[name].discriminators:
        assert out.d2_logits.shape == (n, m, m) and out.omega.shape == (n, m)
        assert ((out.omega >= 0) & (out.omega <= 1)).all()
        assert (out.d1_logits is None) == (CTR_MODELS[name].discriminators == 1)


def test_tokens_unseen_in_training_stay_zero(data):
    """Users and items absent from training share an UNKNOWN token that no training example carries; its
    vectors start at zero and must not move (a random vector would be noise for every cold user / item)."""
    features, train, _ = data
    model = small("man", features)
    train_ctr(model, train, epochs=1, batch_size=32, seed=0)
    emb = model.embeddings
    for table in (model.user, emb.id, emb.popularity_emb, emb.click_rate_emb):
        assert table.weight[UNKNOWN].abs().sum() == 0 and table.weight[UNKNOWN + 1].abs().sum() > 0


def test_grad_reverse_flips_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (grad_reverse(x, 0.5) * w).sum().backward()
    assert torch.equal(grad_reverse(x, 0.5), x)
    assert torch.allclose(x.grad, -0.5 * w)


def test_marn_encoder_gets_the_reversed_discriminator_gradient(data):
    """D2's loss pushes D2 one way and, through the reversal, the invariant encoder the other: with the
    reversal at +1 the encoder's gradient is exactly minus its gradient at −1 (no reversal), while D2's own
    gradient is the same. D1 sees detached features, so its loss gives the encoder no gradient at all."""
    features, train, _ = data
    model = small("marn", features)
    batch = train.subset(slice(0, 16))
    grads = {}
    for scale in (1.0, -1.0):
        model.zero_grad()
        model.items.grl_scale = scale
        ctr_losses(model(batch.user, batch.item, batch.history), batch.label)["d2"].backward()
        grads[scale] = (model.items.project.weight.grad.clone(), model.items.d2[0].weight.grad.clone())
    assert grads[1.0][0].abs().sum() > 0
    assert torch.allclose(grads[1.0][0], -grads[-1.0][0], atol=1e-7)
    assert torch.allclose(grads[1.0][1], grads[-1.0][1])
    model.zero_grad()
    ctr_losses(model(batch.user, batch.item, batch.history), batch.label)["d1"].backward()
    assert model.items.project.weight.grad is None and model.items.d1[0].weight.grad.abs().sum() > 0


def test_grl_schedule_ramps_from_zero_to_one():
    values = [grl_schedule(p / 10) for p in range(11)]
    assert values[0] == 0 and values == sorted(values) and values[-1] > 0.99


@pytest.mark.parametrize("name", ["din_concat", "marn"])
def test_a_prediction_does_not_depend_on_the_batch(name, data):
    features, _, test = data
    model = small(name, features).eval()
    whole = predict(model, test, batch_size=len(test))
    alone = torch.cat([predict(model, test.subset(slice(i, i + 1))) for i in range(len(test))])
    assert torch.allclose(whole, alone, atol=1e-6)


@pytest.mark.parametrize("name", ["din_concat", "marn"])
def test_a_rows_own_click_rate_token_replaces_the_items(name, data):
    """The item table's tokens passed per row give the table's predictions; other tokens change only the rows
    whose token changed (the out-of-fold statistic of a training row reaches its target item alone)."""
    features, train, _ = data
    model = small(name, features).eval()
    with torch.no_grad():
        table = model(train.user, train.item, train.history).logits
        same = model(train.user, train.item, train.history, features.click_rate[train.item]).logits
        other = features.click_rate[train.item].clone()
        other[0] = 2 if int(other[0]) != 2 else 3
        changed = model(train.user, train.item, train.history, other).logits
    assert torch.allclose(table, same, atol=1e-6)
    assert not torch.isclose(changed[0], table[0]) and torch.allclose(changed[1:], table[1:], atol=1e-6)


def test_training_stops_when_on_epoch_says_so(data):
    features, train, _ = data
    seen = []
    history = train_ctr(small("man", features), train, epochs=5, batch_size=64, seed=0,
                        on_epoch=lambda epoch, _s, _o: seen.append(epoch) or epoch == 2)
    assert seen == [1, 2] and [h["epoch"] for h in history] == [1, 2]


@pytest.mark.slow
def test_same_seed_same_predictions(data):
    features, train, test = data
    runs = []
    for seed in (0, 0, 1):
        model = small("marn", features, seed)
        train_ctr(model, train, epochs=1, batch_size=32, seed=seed)
        runs.append(predict_with_attention(model, test))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.allclose(runs[0][0], runs[2][0])


def test_bad_model_options(data):
    features = data[0]
    with pytest.raises(UnknownName, match="'dien' unknown"):
        build_ctr_model("dien", features)
    with pytest.raises(ValueError, match="'man' has no option 'invariant_dim'"):
        build_ctr_model("man", features, invariant_dim=8)
    with pytest.raises(ValueError, match="pins discriminators=2"):
        build_ctr_model("marn", features, discriminators=1)
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        build_ctr_model("din_concat", features, dim=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        train_ctr(small("man", features), data[1], epochs=1, batch_size=0)


def test_recommend_ranks_unseen_items_by_score(tmp_path):
    tables = read_interaction_table(write_tiny(tmp_path), COLUMNS)
    split, _ = time_split(tables.interactions)
    space = build_feature_space(split, tables.items)
    model = small("man", space.tensors())
    top = recommend(model, space, tables.interactions, tables.items, "u2", top=4)
    assert top["rank"].to_list() == [1, 2, 3, 4] and top["score"].to_list() == sorted(top["score"], reverse=True)
    rated = set(tables.interactions.filter(pl.col("user") == "u2")["item"].to_list())
    assert rated.isdisjoint(top["item"].to_list())
    titles = dict(zip(tables.items["item"], tables.items["title"]))
    assert top["title"].to_list() == [titles[i] for i in top["item"]]
    request = user_request(space, tables.interactions, "u2")
    scores = dict(zip(request.item.tolist(), predict(model, request).tolist()))
    row_of = dict(zip(space.items["item"], space.items["row"]))
    assert max(scores.values()) == pytest.approx(scores[row_of[top["item"][0]]])
    with pytest.raises(UnknownUser, match="'ghost'"):
        recommend(model, space, tables.interactions, tables.items, "ghost")


def test_deepctr_peer_trains_on_the_same_split(data):
    from repflow.families.ctr.peer import peer_inputs, train_peer_din

    features, train, test = data
    x = peer_inputs(test, features)
    assert x["hist_item"].shape == tuple(test.history.shape) and (x["seq_length"] == test.history_len.numpy()).all()
    assert ((x["hist_item"] > 0) == (test.history > 0).numpy()).all()
    result = train_peer_din(train, test, features, epochs=2, batch_size=64, dim=4, dnn_hidden_units=(8,),
                            att_hidden_size=(8,), validate=test)
    assert result.probs.shape == (len(test),) and ((result.probs > 0) & (result.probs < 1)).all()
    assert result.samples_per_s > 0 and len(result.history["loss"]) == len(result.history["val_auc"]) == 2
    best = result.history["best_epoch"]
    assert result.history["val_auc"][best - 1] == max(result.history["val_auc"]) == auc(test.label, result.probs)
