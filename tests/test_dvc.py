"""`dvc repro` runs the same stages; a second repro does nothing; `dvc exp run -S` works."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repflow.family import parse_params
from tests.conftest import REPO, child_env, tiny_params

pytestmark = pytest.mark.slow

PROJECT_FILES = ["repflow", "dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore",
                 "data/.gitignore", "artifacts/.gitignore", "reports/.gitignore", ".gitignore"]


def sh(cmd, cwd, env, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def test_dvc_repro_and_experiments(tmp_path):
    repo = tmp_path / "repo"
    for rel in PROJECT_FILES:
        src, dst = REPO / rel, repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    # every family's keys (DVC wants them all); the image family's tiny values, the others' defaults
    every = parse_params(tiny_params()).model_dump(mode="json")
    (repo / "params.yaml").write_text(yaml.safe_dump(every, sort_keys=False))
    env = child_env(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", GIT_AUTHOR_NAME="t",
                    GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
                    GIT_COMMITTER_EMAIL="t@example.invalid")
    sh(["git", "init", "-q"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)

    # the image DAG up to evaluate: five stages, each a `repflow stage` process (the Prefect flow test runs
    # every stage; what is checked here is DVC's side: deps, params, outs, metrics, no-op and experiments)
    stages = [f"image-{s}" for s in ("prep", "generate", "select", "train", "evaluate")]
    targets = ["image-evaluate"]
    first = sh(["dvc", "repro", *targets], repo, env)
    for stage in stages:
        assert f"Running stage '{stage}'" in first.stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)
    metrics = json.loads((repo / "reports" / "evaluate.metrics.json").read_text())
    assert 0 <= metrics["robust_acc_mean"] <= 1

    second = sh(["dvc", "repro", *targets], repo, env)
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout

    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "baseline"], repo, env)
    exp = sh(["dvc", "exp", "run", "-S", "evaluate.eps=[0.2]", "-n", "wider-eps", *targets], repo, env)
    assert "Running stage 'image-evaluate'" in exp.stdout  # only the stage that reads the changed param reruns
    for reused in stages:
        if reused != "image-evaluate":
            assert f"Running stage '{reused}'" not in exp.stdout
    show = json.loads(sh(["dvc", "exp", "show", "--json"], repo, env).stdout)
    names = json.dumps(show)
    assert "wider-eps" in names
    assert list(json.loads((repo / "reports" / "evaluate.metrics.json").read_text())["robust_acc"]) == ["0.200000"]
