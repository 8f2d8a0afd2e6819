"""`repflow families` as a listing of methods: each method's stage and the model name derived from the stage
graph, the paradigm filter, the markdown table and the README block generated from it."""
from __future__ import annotations

import pytest

from repflow.cli import README_BEGIN, README_END, REGENERATE_README, build_parser, cmd_families, methods_markdown
from repflow.config import params_model
from repflow.families.image.train_methods import TRAIN_METHODS, TrainMethod
from repflow.family import (PARADIGMS, Family, FamilyError, Method, ModelSpec, Stage, families, get_family,
                            method_listing, registered_models)
from tests.conftest import REPO


def _chain(methods=None) -> Family:
    """prep → train → evaluate → register (registers two models), plus side (reads prep, registers its own)
    declared between evaluate and register, and a dead end nobody reads and that registers nothing."""
    return Family("tiny", "", (
        Stage("prep", "m", "out/tiny/prep"),
        Stage("train", "m", "out/tiny/train", inputs={"data": "prep"}),
        Stage("evaluate", "m", "out/tiny/evaluate", inputs={"model": "train"}),
        Stage("side", "m", "out/tiny/side", inputs={"data": "prep"}, registers=(ModelSpec("tiny-side"),)),
        Stage("register", "m", "out/tiny/register", inputs={"evaluation": "evaluate"},
              registers=(ModelSpec("tiny-encoder", metric="acc"), ModelSpec("tiny-head"))),
        Stage("dead_end", "m", "out/tiny/dead_end", inputs={"data": "prep"}),
    ), {}, "m:f", methods=methods)


def test_the_registered_model_is_the_stages_own_else_the_first_downstream_registering_one():
    fam = _chain()
    assert registered_models(fam, "train") == ("tiny-encoder", "tiny-head")  # through evaluate, transitively
    assert registered_models(fam, "evaluate") == ("tiny-encoder", "tiny-head")
    assert registered_models(fam, "prep") == ("tiny-side",)  # side is declared before register
    assert registered_models(fam, "side") == ("tiny-side",)
    assert registered_models(fam, "register") == ("tiny-encoder", "tiny-head")
    assert registered_models(fam, "dead_end") == ()
    with pytest.raises(FamilyError, match=r"family 'tiny' has no stage 'trian'"):
        registered_models(fam, "trian")


def test_the_real_families_derive_their_registered_models():
    image = get_family("image")
    assert registered_models(image, "train") == registered_models(image, "select") == ("repflow-encoder",)
    assert registered_models(image, "generate") == ("repflow-generator",)
    assert registered_models(image, "transfer") == ()
    for fam in families():
        for m in fam.listed_methods():
            assert m.stage in [s.name for s in fam.stages], (fam.name, m)


def test_a_method_naming_a_stage_its_family_lacks_is_an_error_naming_all_three():
    fam = _chain(lambda: [Method("good", "train", "contrastive", "p", stage="train"),
                          Method("lost", "train", "contrastive", "p", stage="trian")])
    with pytest.raises(FamilyError, match=r"family 'tiny': method 'lost' names stage 'trian', which the family does "
                                          r"not declare; its stages: prep, train, evaluate, side, register, dead_end"):
        fam.listed_methods()
    odd = _chain(lambda: [Method("odd", "train", "adversarial", "p", stage="train")])
    with pytest.raises(FamilyError, match=r"method 'odd' has paradigm 'adversarial'; allowed: generative, "):
        odd.listed_methods()


def test_the_paradigm_filter_keeps_exactly_that_paradigms_methods_across_families(capsys):
    every = method_listing()
    assert {r.family for r in every} == {f.name for f in families()}
    for paradigm in PARADIGMS:
        picked = method_listing(paradigm)
        assert picked == [r for r in every if r.method.paradigm == paradigm]
    assert {r.family for r in method_listing("generative-contrastive")} >= {"ctr", "text"}
    with pytest.raises(FamilyError, match=r"unknown SSL paradigm 'adversarial'; paradigms: generative, contrastive"):
        method_listing("adversarial")

    cmd_families(build_parser().parse_args(["families", "--paradigm", "contrastive"]))
    text = capsys.readouterr().out
    for r in every:
        assert (f"  {r.method.name}  " in text) == (r.method.paradigm == "contrastive"), r.method.name
    cmd_families(build_parser().parse_args(["families", "--markdown", "--paradigm", "generative"]))
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + len(method_listing("generative")) and all(" | generative | " in row for row in table[2:])


def test_a_newly_registered_training_method_is_listed_with_its_stage_and_model(capsys):
    TRAIN_METHODS.register("pipe_test", TrainMethod(paradigm="contrastive", paper="A | B 2020",
                                                    summary="test-local", losses=("supcon",)))
    try:
        row = next(r for r in method_listing() if r.method.name == "pipe_test")
        assert (row.family, row.stage, row.models) == ("image", "image.train", ("repflow-encoder",))
        assert "| image | `pipe_test` | train | contrastive | A \\| B 2020 | `image.train` | `repflow-encoder` |" \
            in methods_markdown().splitlines()
        cmd_families(build_parser().parse_args(["families"]))
        line = next(li for li in capsys.readouterr().out.splitlines() if " pipe_test " in li)
        assert line.split()[:5] == ["train", "pipe_test", "contrastive", "image.train", "repflow-encoder"]
    finally:
        TRAIN_METHODS.unregister("pipe_test")
        params_model.cache_clear()


def test_write_readme_replaces_only_the_marked_block(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{README_BEGIN}\nstale | table\n{README_END}\nafter\n")
    args = build_parser().parse_args(["families", "--markdown", "--write-readme", str(readme)])
    assert cmd_families(args) == 0
    first = readme.read_text()
    assert first == f"# title\n\nbefore\n{README_BEGIN}\n{methods_markdown()}{README_END}\nafter\n"
    assert cmd_families(args) == 0 and readme.read_text() == first  # idempotent

    bare = tmp_path / "BARE.md"
    bare.write_text("no markers here\n")
    assert cmd_families(build_parser().parse_args(["families", "--write-readme", str(bare)])) == 2
    assert f"{bare}: needs the lines {README_BEGIN} and {README_END}" in capsys.readouterr().err
    assert bare.read_text() == "no markers here\n"


def test_the_readme_table_is_current():
    text = (REPO / "docs" / "methods.md").read_text()
    assert text.count(README_BEGIN) == text.count(README_END) == 1, "docs/methods.md needs one families block"
    block = text[text.index(README_BEGIN) + len(README_BEGIN):text.index(README_END)]
    assert block == "\n" + methods_markdown(), f"docs/methods.md's methods table is stale; run: {REGENERATE_README}"
