"""The text family as a user meets it: params errors naming the key, a JSONL file whose bad and too-long lines
are skipped and counted (and an error when too many are), training that resumes after a crash with the
weights an unbroken run has, and one tiny run of its Prefect flow on a WordNet-format dictionary the test
writes, through the registry to ``repflow define`` and ``repflow generate``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from repflow.config import ParamsError
from repflow.family import parse_params
from repflow.manifest import read_manifest
from tests.conftest import child_env, tiny_params

REPO = Path(__file__).resolve().parents[1]

TINY_TEXT = {
    "prep": {"vocab_size": 120, "min_frequency": 1, "shard_size": 50, "valid_fraction": 0.15,
             "test_fraction": 0.15, "max_len": 16},
    "train": {"embed": 16, "hidden": 32, "epochs": 2, "batch_size": 16, "ami_steps": 8, "ami_batch_size": 8,
              "samples": 2},
    "evaluate": {"beam": 3, "max_sources": 12, "evaluator_epochs": 1, "samples_shown": 4},
}
COLOURS = ["red", "green", "blue", "black", "white", "grey", "brown", "pink", "gold", "silver"]
THINGS = ["stone", "bird", "flower", "river", "cloud", "tree"]


def text_params(**sections) -> dict:
    text = {name: dict(values) for name, values in TINY_TEXT.items()}
    for name, values in sections.items():
        text.setdefault(name, {}).update(values)
    return {**tiny_params(), "text": text}


def write_dictionary(folder: Path) -> Path:
    """A WordNet-format noun file of 60 made-up words "<colour><thing>", each defined as "a <colour> <thing>"
    (learnable in a few epochs, so generations are non-empty), plus the other parts of speech empty."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{100 + i:08d} 03 n 01 {c}{t} 0 000 | a {c} {t} that is {c}  "
             for i, (c, t) in enumerate((c, t) for c in COLOURS for t in THINGS)]
    (folder / "data.noun").write_text("  1 license line\n" + "\n".join(lines) + "\n")
    for name in ("data.verb", "data.adj", "data.adv"):
        (folder / name).write_text("  1 license line\n")
    return folder


@pytest.mark.parametrize("section, values, expected", [
    ("prep", {"source": "jsonl"}, r"text\.prep.*source 'jsonl' needs path"),
    ("prep", {"pos": ["n", "x"]}, r"text\.prep\.pos.*one of \['n', 'v', 'a', 'r'\]"),
    ("prep", {"valid_fraction": 0.5, "test_fraction": 0.45}, r"text\.prep.*leaves under 10%"),
    ("train", {"method": "gan"}, r"text\.train\.method"),
    ("train", {"hidden": 33}, r"text\.train\.hidden.*even"),
    ("register", {"criterion": "generic_rate"}, r"text\.register\.criterion = 'generic_rate'; allowed: \['val_bleu'"),
])
def test_unusable_settings_are_params_errors_naming_the_key(section, values, expected):
    with pytest.raises(ParamsError, match=expected):
        parse_params(text_params(**{section: values}))


def _jsonl(path: Path, good: int, bad: list[str]) -> Path:
    lines = [json.dumps({"q": f"q{i} {COLOURS[i % 10]}", "a": f"answer {THINGS[i % 6]} {i}"}) for i in range(good)]
    path.write_text("\n".join(lines + bad) + "\n")
    return path


def test_jsonl_bad_and_too_long_lines_are_skipped_counted_and_over_the_share_an_error(mlflow_tmp):
    from repflow.families.text.pairs import PairsError
    from repflow.stage import run_stage

    too_long = json.dumps({"q": "short", "a": " ".join(["word"] * 40)})
    bad = ['{"q": "no answer"}', '{"q": "", "a": "empty source"}', "not json", too_long]
    path = _jsonl(mlflow_tmp / "pairs.jsonl", 60, bad)
    prep_params = {"source": "jsonl", "path": str(path), "source_field": "q", "target_field": "a",
                   "max_skipped_share": 0.1}
    params = parse_params(text_params(prep=prep_params))
    out = run_stage("text.prep", params, {}, mlflow_tmp / "prep")
    meta = read_manifest(out)["meta"]
    assert sum(meta["splits"][s]["count"] for s in ("train", "valid", "test")) == 60
    assert meta["skipped"] == {"no string 'q' and 'a'": 1, "empty source": 1, "not JSON": 1,
                               "longer than 16 tokens": 1}
    summary = json.loads((out / "summary.json").read_text())["markdown"]
    assert "4 of 64 lines skipped" in summary
    strict = parse_params(text_params(prep={**prep_params, "max_skipped_share": 0.05}))
    with pytest.raises(PairsError, match=r"pairs\.jsonl: 4 of 64 lines skipped.*line 61"):
        run_stage("text.prep", strict, {}, mlflow_tmp / "strict")
    assert not (mlflow_tmp / "strict").exists()


def test_training_resumes_after_a_crash_with_the_weights_of_an_unbroken_run(mlflow_tmp, monkeypatch):
    from safetensors.torch import load_file

    from repflow.families.text.stages import train as train_stage
    from repflow.stage import run_stage

    params = parse_params(text_params(prep={"path": str(write_dictionary(mlflow_tmp / "wn"))},
                                      train={"method": "mmi", "epochs": 1}))
    prep = run_stage("text.prep", params, {}, mlflow_tmp / "prep")
    whole = run_stage("text.train", params, {"prep": prep}, mlflow_tmp / "whole")
    real = train_stage.train_mle

    def crash_in_backward(model, pairs, **kw):
        if kw["desc"] == "backward MLE":
            raise KeyboardInterrupt("killed")
        return real(model, pairs, **kw)

    monkeypatch.setattr(train_stage, "train_mle", crash_in_backward)
    with pytest.raises(KeyboardInterrupt):
        run_stage("text.train", params, {"prep": prep}, mlflow_tmp / "resumed")
    assert (mlflow_tmp / ".resumed.progress" / "models.safetensors").is_file()
    calls = []
    monkeypatch.setattr(train_stage, "train_mle", lambda model, pairs, **kw: calls.append(kw["desc"]) or real(
        model, pairs, **kw))
    resumed = run_stage("text.train", params, {"prep": prep}, mlflow_tmp / "resumed")
    assert calls == ["backward MLE"]  # the forward phase was not trained again
    for role in ("forward", "backward"):
        a, b = (load_file(str(d / f"{role}.safetensors")) for d in (whole, resumed))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), role


@pytest.mark.slow
def test_the_text_flow_registers_a_model_repflow_define_uses(prefect_harness, ray_session, tmp_path, monkeypatch):
    import mlflow

    from repflow.families.text.flow import text_flow

    ws = tmp_path / "ws"
    ws.mkdir()
    params = text_params(prep={"path": str(write_dictionary(ws / "wordnet"))}, train={"epochs": 12})
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(ws)
    state = text_flow(params_file="params.yaml", overrides=[], workdir=str(ws), return_state=True)
    assert state.is_completed(), state
    stages = state.result()["stages"]
    metrics = stages["evaluate"]
    for key in ("val_bleu", "bleu"):
        assert 0 <= metrics[key] <= 100
    for key in ("distinct_1", "distinct_2", "generic_rate"):
        assert 0 <= metrics[key] <= 1
    assert metrics["log_q"] < 0 and metrics["log_q_reference"] < 0 and metrics["sources"] == 9
    assert stages["train"]["ami_reward_first"] < 0 and "val_nll_forward_ami" in stages["train"]
    written = (ws / "reports/text/evaluate/generations.jsonl").read_text()
    generations = [json.loads(line) for line in written.splitlines()]
    prep = read_manifest(ws / "data/text/prep")["meta"]
    assert prep["splits"]["test"]["count"] == len(generations)  # one definition per made-up word
    assert all(len(g["references"]) == 1 and g["references"][0].startswith("a ") for g in generations)
    version = mlflow.MlflowClient().get_model_version_by_alias("repflow-text-generator", "champion")
    assert version.tags["repflow.family"] == "text" and version.tags["repflow.method"] == "ami"
    assert float(version.tags["repflow.score"]) == pytest.approx(metrics["val_bleu"])

    def repflow(*args):
        return subprocess.run([sys.executable, "-m", "repflow", *args, "--workdir", str(ws)],
                              env=child_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300)

    word = generations[0]["source"][:-len(" (n)")]
    defined = repflow("define", word, "--pos", "n", "v", "--beam", "3", "--show", "2", "--json")
    assert defined.returncode == 0, defined.stderr[-2000:]
    answer = json.loads(defined.stdout)
    assert [g["source"] for g in answer["generations"]] == [f"{word} (n)", f"{word} (v)"]
    assert all(1 <= len(g["outputs"]) <= 2 for g in answer["generations"])
    assert any(out.strip() for g in answer["generations"] for out in g["outputs"])
    odd = repflow("generate", "☃ définir ✓", "--beam", "2")
    assert odd.returncode == 0 and odd.stdout.startswith("☃ définir ✓\n  1. "), odd.stderr[-2000:]
    too_many = repflow("define", word, "--beam", "2", "--show", "3")
    assert too_many.returncode == 2 and "--show 3 is more than --beam 2" in too_many.stderr
