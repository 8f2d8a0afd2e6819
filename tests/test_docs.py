"""The per-family reference pages (docs/families/<name>.md): every family has one, its generated block (declared
stages, every params key) is current, and the generator keeps the written prose around the block."""
from __future__ import annotations

import pytest

from repflow.cli import DOCS_BEGIN, DOCS_END, REGENERATE_DOCS, build_parser, cmd_families
from repflow.family import Family, Stage, families, params_markdown, reference_markdown
from tests.conftest import REPO


@pytest.mark.parametrize("fam", families(), ids=lambda f: f.name)
def test_every_family_has_a_current_reference_page_and_a_readme_row(fam):
    page = REPO / "docs" / "families" / f"{fam.name}.md"
    assert page.is_file(), f"{page} is missing; run: {REGENERATE_DOCS}"
    text = page.read_text()
    assert text.count(DOCS_BEGIN) == text.count(DOCS_END) == 1, f"{page} needs one generated block"
    block = text[text.index(DOCS_BEGIN) + len(DOCS_BEGIN):text.index(DOCS_END)]
    assert block == "\n" + reference_markdown(fam), f"{page}'s generated block is stale; run: {REGENERATE_DOCS}"
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(f"| {fam.name} |")]
    assert any(f"(docs/families/{fam.name}.md)" in row for row in rows), f"README.md's families table lacks {fam.name}"


@pytest.mark.parametrize("fam", families(), ids=lambda f: f.name)
def test_the_params_reference_lists_every_key_of_the_familys_sections(fam):
    text = params_markdown(fam)
    prefix = "" if fam.params_root is None else f"{fam.params_root}."

    def keys(model, at):
        for name, info in model.model_fields.items():
            yield f"{at}.{name}"
            if hasattr(info.annotation, "model_fields"):
                yield from keys(info.annotation, f"{at}.{name}")

    for section, model in fam.params.items():
        for key in keys(model, prefix + section):
            assert f"| `{key}` |" in text, key


def test_the_reference_shows_types_ranges_defaults_and_descriptions():
    from pydantic import Field

    from repflow.config import Section

    class Inner(Section):
        depth: int = 2

    class Toy(Section):
        """Toy section.

        Second paragraph, left out."""
        count: int = Field(3, ge=1, le=10, description="how many | of them")
        mode: str | None = None
        sizes: list[int] = Field(default_factory=lambda: [1, 2])
        inner: Inner = Field(default_factory=Inner)

    fam = Family("toy", "a toy", (Stage("prep", "m", "out/toy/prep", ("toy.prep",)),), {"prep": Toy}, "m:f")
    text = params_markdown(fam)
    assert "### `toy.prep`\n\nToy section.\n" in text and "Second paragraph" not in text
    assert "| `toy.prep.count` | int, ≥ 1, ≤ 10 | `3` | how many \\| of them |" in text
    assert "| `toy.prep.mode` | str or null | `null` |  |" in text
    assert "| `toy.prep.sizes` | list of int | `[1, 2]` |  |" in text
    assert "| `toy.prep.inner` | section | (below) |  |" in text and "| `toy.prep.inner.depth` | int | `2` |" in text
    assert "| `toy.prep` | - | `out/toy/prep/` | toy.prep | - |" in reference_markdown(fam)


def test_docs_writes_only_between_the_markers_and_starts_missing_pages(tmp_path, capsys):
    (tmp_path / "image.md").write_text(f"# image\n\nprose before\n{DOCS_BEGIN}\nstale\n{DOCS_END}\nprose after\n")
    args = build_parser().parse_args(["families", "--docs", str(tmp_path)])
    assert cmd_families(args) == 0
    image = (tmp_path / "image.md").read_text()
    generated = reference_markdown(families()[0])
    assert image == f"# image\n\nprose before\n{DOCS_BEGIN}\n{generated}{DOCS_END}\nprose after\n"
    assert {p.stem for p in tmp_path.glob("*.md")} == {f.name for f in families()}
    assert cmd_families(args) == 0 and (tmp_path / "image.md").read_text() == image  # idempotent

    (tmp_path / "audio.md").write_text("no markers\n")
    assert cmd_families(args) == 2
    assert f"{tmp_path / 'audio.md'}: needs the lines {DOCS_BEGIN} and {DOCS_END}" in capsys.readouterr().err
    assert cmd_families(build_parser().parse_args(["families", "--docs", str(tmp_path / "nope")])) == 2
    assert f"--docs {tmp_path / 'nope'}: not a folder" in capsys.readouterr().err
