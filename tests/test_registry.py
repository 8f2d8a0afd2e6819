"""Method registries: the Registry itself, every registered method against the params schema and the stage
helpers that dispatch on it, and a test-local method that becomes usable by registering it alone.

(That every registered attack stays in its ε-ball is tested in test_attacks.py, over ``ATTACKS``.)
"""
from types import SimpleNamespace

import pytest
import torch

from repflow.attacks import ATTACKS
from repflow.config import ParamsError, params_model
from repflow.families.image.contrastive import train_contrastive
from repflow.families.image.train_methods import TRAIN_METHODS, TrainMethod
from repflow.families.image.coreset import SELECTION_METHODS, Coreset, SelectionMethod
from repflow.families.image.distill import DISTILL_LOSSES, DISTILL_PARAMS, EVAL_ARCHITECTURES
from repflow.family import PARADIGMS, get_family, parse_params
from repflow.families.image.models import ENCODERS
from repflow.families.image.models.encoders import DualBatchNorm
from repflow.registry import Registry, UnknownName
from repflow.families.image.zoo import ZOO_SPECS
from tests.conftest import tiny_params

# (params key, the names it allows, what else the params need for a name to fit); list keys take a list
SCHEMA_NAMES = [
    ("train.method", TRAIN_METHODS,
     lambda name: {"train": {"method": name, "data": "both" if TRAIN_METHODS[name].latent_views else "real"}}),
    ("train.encoder", ENCODERS, lambda name: {"train": {"encoder": name}}),
    ("select.method", SELECTION_METHODS, lambda name: {"select": {"method": name}}),
    ("distill.loss", DISTILL_LOSSES, lambda name: {"distill": {"loss": name}}),
    ("distill.param", DISTILL_PARAMS, lambda name: {"distill": {"param": name}}),
    ("distill.eval_archs", EVAL_ARCHITECTURES, lambda name: {"distill": {"eval_archs": ["convnet", name]}}),
    ("zoo.surrogate", ZOO_SPECS, lambda name: {"zoo": {"surrogate": name, "members": list(ZOO_SPECS)}}),
    ("zoo.members", ZOO_SPECS, lambda name: {"zoo": {"members": list(dict.fromkeys(["convnet_bn_gap", name, "mlp"]))}}),
    ("transfer.attacks", ATTACKS, lambda name: {"transfer": {"attacks": [name]}}),
]


def allowed_message(names) -> str:
    """pydantic's literal_error list, as repflow.config rewords it: 'a', 'b' or 'c'."""
    quoted = [repr(n) for n in names]
    return "allowed: " + (", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0])


def parse(**sections):
    return parse_params(tiny_params(**sections))


# ---------------------------------------------------------------- the Registry


def test_registry_keeps_order_and_names_the_valid_entries_of_an_unknown_one():
    reg = Registry("colour")
    reg.register("red", 1)

    @reg.register("blue")
    def blue():
        return 2

    assert list(reg) == ["red", "blue"] and reg.names() == ("red", "blue") and len(reg) == 2
    assert reg["blue"] is blue and "red" in reg and "green" not in reg and reg.get("green") is None
    for error in (KeyError, ValueError):
        with pytest.raises(error, match=r"^colour 'green' unknown; allowed: \['blue', 'red'\]$"):
            reg["green"]
    with pytest.raises(ValueError, match="'red' is already registered"):
        reg.register("red", 3)
    reg.register("red", 3, replace=True)
    assert reg.unregister("red") == 3 and list(reg) == ["blue"]
    with pytest.raises(UnknownName):
        reg.unregister("red")


def test_a_watcher_sees_every_change():
    reg, seen = Registry("thing"), []
    reg.watch(lambda r: seen.append(r.names()))
    reg.register("a", 1)
    reg.unregister("a")
    assert seen == [("a",), ()]


# ---------------------------------------------------------------- every registered name against the schema


@pytest.mark.parametrize("key, names, fit", SCHEMA_NAMES, ids=[k for k, _, _ in SCHEMA_NAMES])
def test_the_schema_accepts_every_registered_name_and_lists_them_for_an_unknown_one(key, names, fit):
    section, field = key.split(".")
    for name in names:
        value = getattr(getattr(parse(**fit(name)), section), field)
        assert name in value if isinstance(value, list) else value == name
    bad = {field: ["not-registered"] if isinstance(value, list) else "not-registered"}
    with pytest.raises(ParamsError) as e:
        parse(**{section: bad})
    shown = f"{key}.0" if isinstance(value, list) else key
    assert f"{shown} = 'not-registered': {allowed_message(list(names))}" in str(e.value)


def test_validators_read_what_the_training_method_needs():
    for name, method in TRAIN_METHODS.items():
        for data in ("real", "generated", "both"):
            for loss in ("ntxent", "supcon"):
                fits = (not (method.latent_views and data == "real") and loss in method.losses
                        and not (method.pretext is not None and data != "real"))
                try:
                    p = parse(train={"method": name, "data": data, "loss": loss})
                except ParamsError as exc:
                    assert not fits, f"{name}/{data}/{loss}: {exc}"
                else:
                    assert fits and p.train.adversarial_training == method.adversarial


def test_every_listed_method_has_a_paradigm_paper_and_summary():
    listed = get_family("image").listed_methods()
    kinds = {m.kind for m in listed}
    assert kinds == {"train", "select", "distill-loss", "distill-param", "attack", "generator"}
    for m in listed:
        assert m.paradigm in PARADIGMS + (None,) and m.paper and m.summary, m
    for kind, registry in [("train", TRAIN_METHODS), ("select", SELECTION_METHODS), ("distill-loss", DISTILL_LOSSES),
                           ("distill-param", DISTILL_PARAMS), ("attack", ATTACKS)]:
        assert [m.name for m in listed if m.kind == kind][:len(registry)] == list(registry)
    assert {m.name for m in listed if m.kind == "train"} == set(TRAIN_METHODS)
    assert {m.name for m in listed if m.kind == "train" and m.paradigm != "contrastive"} == {"masked_ae", "bigan"}
    assert {m.paradigm for m in listed if m.kind == "train"} == set(PARADIGMS)
    assert [m.paradigm for m in listed if m.kind == "generator"] == ["generative"]


# ---------------------------------------------------------------- every training method trains


def tiny_data():
    return SimpleNamespace(shape=(1, 8, 8), meta={"mean": [0.5], "std": [0.25]})


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAIN_METHODS))
def test_every_training_method_trains_one_step_through_the_stage_helpers(name):
    from repflow.families.image.stages._training import adversary, new_models

    method = TRAIN_METHODS[name]
    p = parse(train={"method": name, "data": "generated" if method.latent_views else "real", "width": 4,
                     "proj_dim": 8, "epochs": 1, **({"adversarial": {"steps": 1}} if method.adversarial else {})})
    encoder, head, enc_config, _ = new_models(p, tiny_data())
    assert any(isinstance(m, DualBatchNorm) for m in encoder.modules()) == method.adversarial == enc_config.get(
        "dual_bn", False)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 1, 8, 8), generator=g, dtype=torch.uint8)
    partners = torch.randint(0, 256, (8, 2, 1, 8, 8), generator=g, dtype=torch.uint8) if method.latent_views else None
    before = [t.detach().clone() for t in encoder.parameters()]
    history = train_contrastive(encoder, head, images, epochs=1, batch_size=8, lr=1e-2, weight_decay=0.0,
                                temperature=0.5, augment=p.train.augment.model_dump(), device=torch.device("cpu"),
                                seed=0, partners=partners, adversary=adversary(p))
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))


def test_dynacl_anneals_and_acl_does_not():
    from repflow.families.image.stages._training import adversary

    acl = adversary(parse(train={"method": "acl", "epochs": 4, "adversarial": {"anneal_period": 1}}))
    dynacl = adversary(parse(train={"method": "dynacl", "epochs": 4, "adversarial": {"anneal_period": 1}}))
    assert [acl.strength(e) for e in (1, 4)] == [1.0, 1.0]
    assert [dynacl.strength(e) for e in (1, 4)] == [1.0, 0.25]
    assert adversary(parse(train={"method": "simclr"})) is None


# ---------------------------------------------------------------- a new method: one file plus one registration


@pytest.fixture
def registered():
    """Register test-local entries; afterwards remove them and forget the schema built with them."""
    added = []

    def add(registry, name, entry):
        registry.register(name, entry)
        added.append((registry, name))
        return entry

    yield add
    for registry, name in reversed(added):
        registry.unregister(name)
    params_model.cache_clear()


def test_a_registered_training_method_is_accepted_listed_and_dispatched(registered):
    dummy = registered(TRAIN_METHODS, "supcon_only", TrainMethod(
        paradigm="contrastive", paper="-", summary="test-local: SupCon only", losses=("supcon",)))
    params_model.cache_clear()
    p = parse(train={"method": "supcon_only", "loss": "supcon"})
    assert p.train.training_method is dummy and not p.train.adversarial_training
    with pytest.raises(ParamsError, match="method 'supcon_only' trains with SupCon: set loss to 'supcon'"):
        parse(train={"method": "supcon_only", "loss": "ntxent"})
    assert "supcon_only" in [m.name for m in get_family("image").listed_methods()]


def test_an_unregistered_method_is_refused_again():
    with pytest.raises(ParamsError, match=r"train.method = 'supcon_only': allowed: 'simclr', 'genrep'"):
        parse(train={"method": "supcon_only"})


def test_a_registered_selection_method_is_what_choose_coreset_runs(registered):
    from repflow.families.image.stages._training import choose_coreset

    registered(SELECTION_METHODS, "first", SelectionMethod(
        select=lambda n, budget, seed: Coreset(indices=torch.arange(budget)), paper="-", summary="the first k"))
    params_model.cache_clear()
    p = parse(select={"method": "first", "fraction": 0.25})
    coreset, _ = choose_coreset(p, None, None, {}, {}, torch.zeros(40, 1, 8, 8), epoch=0, device=torch.device("cpu"))
    assert coreset.indices.tolist() == list(range(10))
