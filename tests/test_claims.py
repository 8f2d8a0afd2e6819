"""Claim records and ``repflow claims``: the stored records follow the schema and the rule, a malformed record is
skipped and named, the listing's filters and formats, the README's claims table, and the verdicts beside each
method in ``repflow families``."""
from __future__ import annotations

import json
import math

import pytest

from repflow.claims import (ClaimRecordError, claims_markdown, default_claims_dir, load_claim, load_claims,
                            method_verdicts, verdict_summary)
from repflow.cli import CLAIMS_BEGIN, CLAIMS_END, REGENERATE_CLAIMS, build_parser, cmd_claims, cmd_families
from repflow.family import families
from repflow.verdict import Claim, Control, claim_record, judge, write_claim
from tests.conftest import REPO

STORED = REPO / "benchmarks" / "results" / "claims"


def _record(claim_id="image.toy_gain", diffs=(0.02, 0.03, 0.025, 0.04, 0.035), method="rcs", controls=()):
    claim = Claim(claim_id, "image", "Xu et al. 2023, 'Toy' (NeurIPS)", "The toy method beats the reference.",
                  "accuracy", "higher", 0.01, "accuracy", (method,))
    verdict = judge(claim, list(diffs), controls)
    return claim_record(claim, list(diffs), verdict, controls, {"data": "toy", "model": "m", "steps": "1 epoch",
                                                                 "device": "cpu"}, commit="abc", date="2024-01-01")


def _claims(tmp_path, *records) -> "Path":  # noqa: F821
    for r in records:
        write_claim(r, tmp_path)
    return tmp_path / "claims"


def _run(capsys, *argv) -> tuple[int, str, str]:
    args = build_parser().parse_args(["claims", *argv])
    code = cmd_claims(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_stored_record_follows_the_schema_and_the_rule_and_every_family_has_one():
    found = load_claims(STORED)
    assert found.problems == []
    assert {r["family"] for r in found.records} == {f.name for f in families()}
    assert len({r["paper"] for r in found.records}) >= 11  # the eleven seed papers (and the ACL fix's paper)
    for r in found.records:
        assert r["verdict"] in ("holds", "does not hold", "inconclusive") and r["reason"]
        if r["seeds"] < 5:
            assert r["verdict"] == "inconclusive"


@pytest.mark.parametrize("edit, key", [
    (lambda r: r.pop("metric"), "metric"),
    (lambda r: r.update(direction="up"), "direction"),
    (lambda r: r.update(smallest_effect=-1), "smallest_effect"),
    (lambda r: r.update(seeds=4), "per_seed_diffs"),
    (lambda r: r.update(controls=[{"name": "x", "passed": "yes", "detail": ""}]), "controls"),
    (lambda r: r.update(per_seed_diffs=[-0.02, -0.03, 0.025, -0.04, 0.035]), "verdict"),  # a hand-edited "holds"
])
def test_a_malformed_record_is_one_line_naming_the_file_and_the_key(tmp_path, edit, key):
    record = _record()
    edit(record)
    path = tmp_path / "image.toy_gain.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ClaimRecordError) as err:
        load_claim(path)
    assert str(err.value).startswith(f"{path}: key {key!r}: ") and "\n" not in str(err.value)


def test_a_record_named_unlike_its_id_or_not_json_is_refused(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps(_record()))
    with pytest.raises(ClaimRecordError, match=r"key 'id': is 'image.toy_gain' but the file is named other.json"):
        load_claim(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ClaimRecordError, match=r"broken.json: not JSON"):
        load_claim(tmp_path / "broken.json")


def test_the_listing_skips_and_names_a_bad_record_and_exits_1(tmp_path, capsys):
    folder = _claims(tmp_path, _record(), _record("image.toy_small", diffs=(0.01, 0.02)))
    (folder / "zz.bad.json").write_text("[]")
    code, out, err = _run(capsys, "--results", str(folder))
    assert code == 1 and err.strip() == f"repflow: skipped {folder / 'zz.bad.json'}: not a JSON object"
    assert "image.toy_gain" in out and "holds" in out and "too few seeds (n=2 < 5)" in out


def test_family_json_and_markdown(tmp_path, capsys):
    folder = _claims(tmp_path, _record(), _record("image.toy_small", diffs=(0.01, 0.02)))
    code, out, _ = _run(capsys, "--results", str(folder), "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["image.toy_gain", "image.toy_small"]
    code, out, _ = _run(capsys, "--results", str(folder), "--markdown")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and lines[0].startswith("| family | paper | claim | gain [95% interval]")
    assert "| image | Xu et al. 2023 | The toy method beats the reference. (`image.toy_gain`) | +0.03 [" in lines[2]
    assert "| **holds** |" in lines[2] and "toy; m; 1 epoch; cpu; 5 seeds |" in lines[2]
    code, out, _ = _run(capsys, "--results", str(folder), "--family", "sr")
    assert code == 0 and "image.toy" not in out
    code, out, err = _run(capsys, "--results", str(folder), "--family", "imgae")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("repflow: error: unknown family 'imgae'; families: audio, av, ctr, image")


def test_a_missing_results_folder_is_one_line(tmp_path, capsys):
    code, _, err = _run(capsys, "--results", str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1 and "no claim records at" in err


def test_the_default_folder_is_the_current_directorys_else_the_repositorys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_claims_dir() == STORED
    _claims(tmp_path / "benchmarks" / "results", _record())
    assert default_claims_dir() == tmp_path / "benchmarks" / "results" / "claims"


def test_write_readme_replaces_only_the_claims_block(tmp_path, capsys):
    folder = _claims(tmp_path, _record())
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{CLAIMS_BEGIN}\nstale\n{CLAIMS_END}\nafter\n")
    code, _, _ = _run(capsys, "--results", str(folder), "--write-readme", str(readme))
    table = claims_markdown(load_claims(folder).records)
    assert code == 0 and readme.read_text() == f"# t\n{CLAIMS_BEGIN}\n{table}{CLAIMS_END}\nafter\n"
    code, _, err = _run(capsys, "--results", str(folder), "--family", "image", "--write-readme", str(readme))
    assert code == 2 and "drop --family" in err
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers\n")
    code, _, err = _run(capsys, "--results", str(folder), "--write-readme", str(bare))
    assert code == 2 and f"{bare}: needs the lines {CLAIMS_BEGIN} and {CLAIMS_END}" in err


def test_the_readme_claims_table_is_current():
    text = (REPO / "README.md").read_text()
    assert text.count(CLAIMS_BEGIN) == text.count(CLAIMS_END) == 1, "README.md needs one claims block"
    block = text[text.index(CLAIMS_BEGIN) + len(CLAIMS_BEGIN):text.index(CLAIMS_END)]
    assert block == "\n" + claims_markdown(load_claims(STORED).records), \
        f"README.md's claims table is stale; run: {REGENERATE_CLAIMS}"


def test_families_shows_each_methods_verdicts(tmp_path, monkeypatch, capsys):
    failed = Control("floor/ceiling", False, "floor: ...")
    _claims(tmp_path / "benchmarks" / "results", _record(), _record("image.toy_floor", controls=(failed,)))
    monkeypatch.chdir(tmp_path)
    records = load_claims(default_claims_dir()).records
    assert method_verdicts(records) == {("image", "rcs"): ["inconclusive", "holds"]}  # sorted by id
    assert verdict_summary(["holds", "inconclusive"]) == "holds 1, inconclusive 1" and verdict_summary([]) == "-"
    assert cmd_families(build_parser().parse_args(["families"])) == 0
    lines = capsys.readouterr().out.splitlines()
    rcs = next(li for li in lines if li.split()[:2] == ["select", "rcs"])
    assert "holds 1, inconclusive 1" in rcs
    random = next(li for li in lines if li.split()[:2] == ["select", "random"])
    assert random.split()[5] == "-"


def test_an_untested_papers_record_is_inconclusive_with_no_differences():
    untested = [r for r in load_claims(STORED).records if r["seeds"] == 0]
    for r in untested:
        assert r["verdict"] == "inconclusive" and r["reason"] == "not yet tested under the rule"
        assert r["per_seed_diffs"] == [] and r["mean"] is None and not math.isnan(r["smallest_effect"])
