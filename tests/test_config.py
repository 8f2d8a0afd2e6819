import pytest
import yaml

from repflow.config import ParamsError, apply_overrides
from repflow.family import load_params, parse_params
from tests.conftest import tiny_params


def write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("name", ["params.yaml", "params-full.yaml"])
def test_repo_params_file_is_valid(name):
    from tests.conftest import REPO

    params = load_params(REPO / name)
    assert params.prep.source == "fashion-mnist"
    assert params.evaluate.eps == sorted(params.evaluate.eps)


def test_unknown_key_names_key_and_allowed(tmp_path):
    data = tiny_params()
    data["train"]["epoch"] = 3
    with pytest.raises(ParamsError) as e:
        load_params(write(tmp_path, data))
    msg = str(e.value)
    assert "train.epoch" in msg and "unknown key" in msg and "epochs" in msg and str(tmp_path) in msg


def test_unknown_section(tmp_path):
    data = tiny_params()
    data["trian"] = {}
    with pytest.raises(ParamsError, match=r"trian: unknown key; allowed here: .*train"):
        load_params(write(tmp_path, data))


@pytest.mark.parametrize("override, fragment", [
    ("train.epochs=0", "train.epochs = 0"),
    ("train.epochs=three", "train.epochs = 'three'"),
    ("train.lr=-1", "train.lr = -1"),
    ("prep.source=svhn", "allowed: 'fashion-mnist'"),
    ("prep.val_fraction=1.5", "prep.val_fraction = 1.5"),
    ("evaluate.eps=[0.5, 2.0]", "(0, 1]"),
    ("evaluate.eps=[]", "at least one epsilon"),
    ("device=tpu", "device = 'tpu'"),
    ("generate.sigma=0", "generate.sigma = 0"),
    ("generate.views=0", "generate.views = 0"),
    ("generate.mode=steer", "allowed: 'gaussian' or 'independent'"),
    ("train.method=genrep", "train: method 'genrep' learns from generated views"),
])
def test_bad_values_are_named(override, fragment):
    with pytest.raises(ParamsError) as e:
        parse_params(apply_overrides(tiny_params(), [override]))
    assert fragment in str(e.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ParamsError) as e:
        parse_params(apply_overrides(tiny_params(), ["train.epochs=0", "evaluate.pgd_steps=-2"]))
    assert "train.epochs" in str(e.value) and "evaluate.pgd_steps" in str(e.value)


def test_overrides_parse_yaml_values(tmp_path):
    p = load_params(write(tmp_path, tiny_params()), ["train.epochs=7", "evaluate.eps=[0.1, 0.05]", "prep.path=null"])
    assert p.train.epochs == 7
    assert p.evaluate.eps == [0.05, 0.1]
    assert p.prep.path is None


def test_override_without_equals_is_rejected():
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        apply_overrides({}, ["train.epochs"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


@pytest.mark.slow
def test_cli_rejects_bad_params_without_traceback(tmp_path):
    import subprocess
    import sys

    write(tmp_path, tiny_params())
    r = subprocess.run([sys.executable, "-m", "repflow", "run", "--workdir", str(tmp_path), "-P", "train.epochs=-1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "train.epochs = -1" in r.stderr and "Traceback" not in r.stderr
