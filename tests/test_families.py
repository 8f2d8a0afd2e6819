"""Families: declarations and their errors, per-stage code versions, dvc.yaml from the declarations, bounds on
every count, and a new family added from outside the package (its Prefect flow, `repflow stage`, `dvc repro`)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from repflow.config import ParamsError
from repflow.family import (PARADIGMS, Family, FamilyError, Stage, code_files, families, parse_params, register_family,
                            get_family, resolve_stage)
from tests.conftest import REPO, child_env, tiny_params


def test_unknown_family_or_stage_lists_the_valid_ones():
    with pytest.raises(FamilyError, match=r"unknown family 'nope'; families: image, audio, av, ctr, sr, text, video"):
        resolve_stage("nope.train")
    with pytest.raises(FamilyError, match=r"unknown stage 'image.trian'; stages: image.prep, image.generate"):
        resolve_stage("image.trian")
    assert resolve_stage("train") is resolve_stage("image.train")  # a bare name is the default family's
    # `repflow run --stage` takes a stage of the family bare or as `repflow stage` names it, not another family's
    image = get_family("image")
    assert [s.name for s in image.stages_to_run(["image.select"])] == [s.name for s in image.stages_to_run(["select"])]
    with pytest.raises(FamilyError, match=r"family 'image' has no stage 'audio.train'; its stages: prep, "):
        image.stages_to_run(["audio.train"])


def test_bad_declarations_are_errors_naming_both_sides():
    before = [f.name for f in families()]  # discovers the built-in families first
    assert before[0] == "image" and {"audio", "av", "ctr", "sr", "text", "video"} <= set(before)
    with pytest.raises(FamilyError, match=r"x.b: input 'data' names stage 'nothere', which family 'x' does not "
                                          r"declare; its stages: a, b"):
        Family("x", "", (Stage("a", "m", "out/a"), Stage("b", "m", "out/b", inputs={"data": "nothere"})), {}, "m:f")
    with pytest.raises(FamilyError, match=r"x.a: params key 'train' is not one of this family's sections"):
        Family("x", "", (Stage("a", "m", "out/a", ("train",)),), {}, "m:f")
    with pytest.raises(FamilyError, match=r"stages image.prep and x.a both claim the output folder 'data/prep'"):
        register_family(Family("x", "", (Stage("a", "m", "data/prep"),), {}, "m:f"))
    with pytest.raises(FamilyError, match=r"family 'image' is registered twice"):
        register_family(Family("image", "", (Stage("a", "m", "out/new"),), {}, "m:f"))
    with pytest.raises(FamilyError, match=r"family 'y': params name\(s\) \['train'\] are taken by another family"):
        register_family(Family("y", "", (Stage("a", "m", "out/y"),), {"train": BaseModel}, "m:f", params_root=None))
    assert [f.name for f in families()] == before  # nothing half-registered


@pytest.mark.slow
def test_code_versions_cover_a_stage_and_its_imports_only():
    train = {p.relative_to(REPO).as_posix() for p in code_files(resolve_stage("image.train").module)}
    prep = {p.relative_to(REPO).as_posix() for p in code_files(resolve_stage("image.prep").module)}
    assert {"repflow/families/image/stages/train.py", "repflow/families/image/stages/_training.py",
            "repflow/families/image/acl.py", "repflow/families/image/coreset.py",
            "repflow/families/image/models/encoders.py", "repflow/stage.py"} <= train
    for unrelated in ("repflow/cli.py", "repflow/servers.py", "repflow/flow.py", "repflow/dvc_stages.py",
                      "repflow/families/image/flow.py", "repflow/families/image/declaration.py",
                      "repflow/families/image/stages/prep.py", "repflow/families/image/stages/zoo.py"):
        assert unrelated not in train
    assert "repflow/families/image/acl.py" not in prep and "repflow/families/image/stages/train.py" not in prep


@pytest.mark.slow
def test_dvc_yaml_is_generated_from_the_declarations():
    from repflow.dvc_stages import dvc_yaml

    assert (REPO / "dvc.yaml").read_text() == dvc_yaml(REPO), "dvc.yaml is stale: run `repflow dvc-yaml --write`"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for fam in families():
        for s in fam.stages:
            if s.on_demand:  # run by name only (repflow compare), never by `dvc repro`
                assert s.dvc_name not in stages
                continue
            entry = stages[s.dvc_name]
            assert entry["cmd"] == f"repflow stage {s.qualname}" and entry["params"] == list(s.params)
            assert entry["outs"] == [{s.out: {"persist": True}}]
            assert s.module.replace(".", "/") + ".py" in entry["deps"]
            assert "repflow/cli.py" not in entry["deps"]


def _int_fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _int_fields(annotation, f"{prefix}{name}.")
        elif annotation in (int, int | None):
            yield f"{prefix}{name}", field


def test_every_count_in_the_schema_has_an_upper_bound():
    from repflow.family import params_schema

    unbounded = [key for key, field in _int_fields(params_schema())
                 if not any(hasattr(m, "le") or hasattr(m, "lt") for m in field.metadata)]
    assert unbounded == []
    with pytest.raises(ParamsError, match=r"generate.epochs = 1000000000000: Input should be less than or equal"):
        parse_params(tiny_params(generate={"epochs": 10**12}))


@pytest.mark.slow
def test_registering_the_same_model_twice_adds_no_version(mlflow_tmp):
    import mlflow
    import torch

    from repflow import tracking
    from repflow.checkpoints import save_tensors

    model = torch.nn.Linear(3, 2)
    files = (mlflow_tmp / "w.safetensors",)
    save_tensors(files[0], model.state_dict(), {})
    example = torch.zeros(1, 3).numpy()
    with mlflow.start_run():
        first = tracking.register_model(model, "repflow-toy-linear", example, {}, files)
        again = tracking.register_model(model, "repflow-toy-linear", example, {}, files)
        other = tracking.register_model(model, "repflow-toy-linear", example, {}, files, identity={"eval": "b"})
    assert (first, again, other) == ("1", "1", "2")


@pytest.mark.slow
def test_the_champion_gate_compares_scores_only_under_one_protocol(mlflow_tmp):
    import json

    import mlflow
    import torch

    from repflow import tracking

    pgd10 = {"criterion": "robust_acc_mean", "attack": "pgd-linf", "steps": 10, "eps": [0.031], "test_images": 500}
    pgd20 = {**pgd10, "steps": 20}
    holder = tracking.Champion("1", 0.40, pgd10)
    assert tracking.champion_gate(0.45, pgd10, holder)[0]
    assert not tracking.champion_gate(0.35, pgd10, holder)[0]
    assert tracking.champion_gate(0.35, pgd10, holder, higher_is_better=False)[0]
    moved, why = tracking.champion_gate(0.99, pgd20, holder)  # a higher score under PGD-20 is still no win
    assert not moved and "differs in steps" in why
    assert not tracking.champion_gate(0.99, pgd10, tracking.Champion("1", 0.40, None))[0]
    assert tracking.champion_gate(0.0, pgd10, None)[0]

    model = torch.nn.Linear(3, 2)
    with mlflow.start_run():
        version = tracking.register_model(model, "repflow-toy-gate", torch.zeros(1, 3).numpy(),
                                          {"repflow.score": 0.4, "repflow.protocol": json.dumps(pgd10)})
    assert tracking.alias_holder("repflow-toy-gate", "champion") is None
    mlflow.MlflowClient().set_registered_model_alias("repflow-toy-gate", "champion", version)
    assert tracking.alias_holder("repflow-toy-gate", "champion") == tracking.Champion(version, 0.4, pgd10)


# --- a family from outside the package ------------------------------------------------------------

TOY = {
    "toyfam/__init__.py": '''
        """A two-stage family declared through the public extension API."""
        from pydantic import Field

        from repflow import Family, Section, Stage


        class MakeParams(Section):
            n: int = Field(5, ge=1, le=1000)


        class TotalParams(Section):
            scale: float = Field(2.0, gt=0.0, le=100.0)


        FAMILY = Family(
            name="toy", summary="numbers, then their scaled total", flow="toyfam.flow:toy_flow",
            params={"make": MakeParams, "total": TotalParams},
            stages=(Stage("make", "toyfam.make", "data/toy/make", ("seed", "toy.make")),
                    Stage("total", "toyfam.total", "data/toy/total", ("toy.total",), {"numbers": "make"})))
        ''',
    "toyfam/make.py": '''
        import numpy as np

        from repflow import StageSummary


        def run(ctx):
            x = np.random.default_rng(ctx.params.seed).integers(0, 100, ctx.params.toy.make.n)
            np.save(ctx.tmp / "numbers.npy", x)
            return StageSummary(metrics={"count": int(len(x))}, markdown=f"- {len(x)} numbers")
        ''',
    "toyfam/total.py": '''
        import numpy as np

        from repflow import StageSummary
        from toyfam.algo import scaled_total


        def run(ctx):
            total = scaled_total(np.load(ctx.inputs["numbers"] / "numbers.npy"), ctx.params.toy.total.scale)
            return StageSummary(metrics={"total": total}, markdown=f"- total {total}")
        ''',
    "toyfam/algo.py": '''
        def scaled_total(x, scale):
            return float(x.sum() * scale)
        ''',
    "toyfam/flow.py": '''
        from repflow.flow import family_flow

        toy_flow = family_flow("toy")
        ''',
    # the one registration line a family in another distribution needs (its entry point)
    "toyfam-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: toyfam\nVersion: 0.1\n",
    "toyfam-0.1.dist-info/entry_points.txt": "[repflow.families]\ntoy = toyfam:FAMILY\n",
}


def _sh(cmd, cwd, env, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _toy_task_states(api_url: str) -> list[dict[str, str]]:
    """Task states of every repflow-toy flow run on the test's Prefect server, oldest run first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["repflow-toy"])),
                                     sort=FlowRunSort.START_TIME_ASC)
        out = []
        for run in runs:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            out.append({t.name.rsplit("-", 1)[0]: t.state.name for t in tasks})
    return out


@pytest.mark.slow
def test_a_new_family_runs_through_prefect_the_cli_and_dvc(prefect_harness, tmp_path):
    """The toy family touches no file of repflow: it runs as a Prefect flow, as `repflow stage` and as DVC
    stages, which share done-state; an unrelated edit reruns nothing, an edit of its algorithm reruns it. The
    flow runs with ``--runner local`` (Ray's start-up, ~15 CPU-s a run, is not what this test is about: Ray
    runs families' stages in tests/test_pipeline.py, tests/test_cluster.py and every family's flow test)."""
    import mlflow
    from prefect.settings import PREFECT_API_URL

    repo = tmp_path / "repo"
    shutil.copytree(REPO / "repflow", repo / "repflow", ignore=shutil.ignore_patterns("__pycache__"))
    for rel in (".dvc/config", ".dvcignore"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, repo / rel)
    for rel, text in TOY.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(textwrap.dedent(text).lstrip())
    params = {**tiny_params(), "toy": {"make": {"n": 7}, "total": {"scale": 2.0}}}  # DVC wants every key
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("mlflow.db\nmlruns/\n__pycache__/\n.repflow*\n")
    api = PREFECT_API_URL.value()
    env = child_env(PYTHONPATH=str(repo), PREFECT_API_URL=api,
                    PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", GIT_AUTHOR_NAME="t",
                    GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
                    GIT_COMMITTER_EMAIL="t@example.invalid")
    repflow = [sys.executable, "-m", "repflow"]

    listing = _sh(repflow + ["families"], repo, env).stdout
    assert "toy: numbers, then their scaled total" in listing and "toy.total" in listing
    _sh(repflow + ["dvc-yaml", "--write"], repo, env)
    dvc = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert dvc["toy-total"]["deps"][:2] == ["data/toy/make", "repflow/__init__.py"]
    assert "toyfam/algo.py" in dvc["toy-total"]["deps"] and "toyfam/algo.py" not in dvc["toy-make"]["deps"]
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        _sh(cmd, repo, env)

    # 1. the family's Prefect flow; both stages tracked in MLflow under one parent run
    _sh(repflow + ["run", "toy", "--runner", "local", "--workdir", str(repo)], repo, env)
    assert _toy_task_states(api)[-1] == {"toy.make": "Completed", "toy.total": "Completed"}
    total = json.loads((repo / "data" / "toy" / "total.metrics.json").read_text())["total"]
    runs = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").search_runs(
        [mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_experiment_by_name("repflow").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["toy", "toy.make", "toy.total"]
    stamps = {s: (repo / "data" / "toy" / s / "manifest.json").stat().st_mtime_ns for s in ("make", "total")}

    # 2. dvc repro after the flow: DVC runs the commands, the runner finds the outputs done (nothing rewritten)
    first = _sh(["dvc", "repro", "toy-total"], repo, env).stdout
    assert "Running stage 'toy-total'" in first
    assert stamps == {s: (repo / "data" / "toy" / s / "manifest.json").stat().st_mtime_ns for s in stamps}
    assert "Data and pipelines are up to date" in _sh(["dvc", "repro", "toy-total"], repo, env).stdout

    # 3. edits elsewhere (the CLI, another family's stage) rerun nothing, in any of the three launchers
    for rel in ("repflow/cli.py", "repflow/families/image/stages/prep.py"):
        with open(repo / rel, "a") as fh:
            fh.write("\n# an unrelated edit\n")
    assert "Data and pipelines are up to date" in _sh(["dvc", "repro", "toy-total"], repo, env).stdout
    assert "is up to date" in _sh(repflow + ["stage", "toy.total", "--workdir", str(repo)], repo, env).stderr
    _sh(repflow + ["run", "toy", "--runner", "local", "--workdir", str(repo)], repo, env)
    assert _toy_task_states(api)[-1] == {"toy.make": "Cached", "toy.total": "Cached"}
    assert stamps == {s: (repo / "data" / "toy" / s / "manifest.json").stat().st_mtime_ns for s in stamps}

    # 4. an edit of the stage's own algorithm reruns that stage only
    (repo / "toyfam" / "algo.py").write_text("def scaled_total(x, scale):\n    return float(x.sum() * scale + 1)\n")
    _sh(repflow + ["run", "toy", "--runner", "local", "--workdir", str(repo)], repo, env)
    assert _toy_task_states(api)[-1] == {"toy.make": "Cached", "toy.total": "Completed"}
    assert json.loads((repo / "data" / "toy" / "total.metrics.json").read_text())["total"] == total + 1
    status = _sh(["dvc", "status", "toy-total"], repo, env).stdout
    assert "toyfam/algo.py" in status and "toy-make" not in status


@pytest.mark.slow
def test_cli_names_the_valid_families_and_stages(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    for args, expected in ((["run", "nope"], "unknown family 'nope'; families: image, audio, av, ctr, sr, text, video"),
                           (["stage", "image.nope"], "unknown stage 'image.nope'; stages: image.prep, ")):
        r = subprocess.run([sys.executable, "-m", "repflow", *args, "--workdir", str(tmp_path)], env=child_env(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr
    listing = subprocess.run([sys.executable, "-m", "repflow", "families"], env=child_env(), capture_output=True,
                             text=True, timeout=120)
    assert listing.returncode == 0 and "image.transfer" in listing.stdout and "contrastive" in listing.stdout


def _family_module(fam: Family, name: str) -> str:
    """``name`` (relative, as ``Family.algorithms`` lists it) inside the package that holds ``fam``'s flow."""
    return f"{fam.flow.partition(':')[0].rpartition('.')[0]}.{name}"


@pytest.mark.slow  # one Python per family
@pytest.mark.parametrize("fam", families(), ids=lambda f: f.name)
def test_algorithms_import_with_torch_alone(fam):
    """The GPU machine has torch but not pydantic, MLflow, Prefect or Ray: each family's declared algorithms
    (and the shared ones) must not need them."""
    assert fam.algorithms, f"family {fam.name!r} declares no algorithms (Family.algorithms)"
    modules = ["repflow.attacks", "repflow.probe", *(_family_module(fam, m) for m in fam.algorithms)]
    code = (f"import sys; import {', '.join(modules)}; "
            "print(sorted(m for m in ('pydantic', 'mlflow', 'prefect', 'ray', 'yaml') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr[-2000:]


@pytest.mark.parametrize("fam", families(), ids=lambda f: f.name)
def test_every_method_names_its_paper_and_a_known_paradigm(fam):
    listed = fam.listed_methods()
    assert listed, f"family {fam.name!r} lists no methods"
    for m in listed:
        assert m.paper.strip() and m.paradigm in PARADIGMS + (None,), (fam.name, m)
