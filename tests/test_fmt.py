"""`vtc fmt`: golden outputs, idempotence, the AST kept, comments kept, refusal on syntax errors.

Golden files: tests/golden/fmt/NAME.vt -> NAME.expected. Regenerate after an intended change with
VTC_UPDATE_GOLDEN=1 pytest tests/test_fmt.py
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

from vtc.compiler import ast
from vtc.compiler.fmt import format_file, format_source
from vtc.compiler.parser import parse_source

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "fmt"
CASES = sorted(GOLDEN.glob("*.vt"))
RECIPES = sorted((ROOT / "recipes").glob("*.vt"))


normal = ast.without_spans


def statements(text: str) -> list:
    recipe, diagnostics = parse_source(text, "r.vt")
    assert recipe is not None, [d.message for d in diagnostics]
    return [normal(s) for s in recipe.statements]


def comments(text: str) -> list[str]:
    recipe, _ = parse_source(text, "r.vt")
    return sorted(c.text.rstrip() for c in recipe.comments)


def fmt(text: str) -> str:
    out, diagnostics = format_source(text, "r.vt")
    assert out is not None, [d.message for d in diagnostics]
    return out


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden(path: Path):
    text = path.read_bytes().decode("utf-8")
    out = fmt(text)
    expected = path.with_suffix(".expected")
    if os.environ.get("VTC_UPDATE_GOLDEN"):
        expected.write_text(out, encoding="utf-8", newline="\n")
    assert out == expected.read_text(encoding="utf-8")


def _samples():
    return [p.read_bytes().decode("utf-8") for p in CASES + RECIPES]


@pytest.mark.parametrize("text", _samples())
def test_idempotent_and_keeps_the_ast_and_comments(text: str):
    once = fmt(text)
    assert fmt(once) == once
    assert once.endswith("\n") and not once.endswith("\n\n")
    # The same statements (ignoring spans and order) and the same comments.
    assert sorted(statements(once), key=repr) == sorted(statements(text), key=repr)
    assert comments(once) == comments(text)
    # Statements of one kind keep their relative order (a later clause overrides an earlier one).
    by_kind_before, by_kind_after = defaultdict(list), defaultdict(list)
    for s in statements(text):
        by_kind_before[s[0], s[1] if s[0] in ("Number", "Choice") else ""].append(s)
    for s in statements(once):
        by_kind_after[s[0], s[1] if s[0] in ("Number", "Choice") else ""].append(s)
    assert by_kind_before == by_kind_after


def test_one_line_form_becomes_one_clause_a_line():
    assert fmt("finetune vision,mlp on qwen2.5-vl with responses_only from ./xrays resize 512") == (
        "finetune vision, mlp on qwen2.5-vl\nwith responses_only\nfrom ./xrays\nresize 512\n"
    )


def test_clauses_around_an_include_keep_their_side():
    out = fmt('batch 8\ninclude "base.vt"\nbatch 2\nfinetune all on m\n')
    assert out == 'batch 8\ninclude "base.vt"\nfinetune all on m\nbatch 2\n'


def test_includes_go_first_when_nothing_precedes_them():
    out = fmt('include "a.vt"\nseed 1\nfinetune all on m\ninclude "b.vt"\n')
    # `include "b.vt"` comes after `seed 1`, so nothing moves across it.
    assert out == 'include "a.vt"\nfinetune all on m\nseed 1\ninclude "b.vt"\n'
    assert fmt('include "a.vt"\ninclude "b.vt"\nseed 1\nfinetune all on m\n') == (
        'include "a.vt"\ninclude "b.vt"\nfinetune all on m\nseed 1\n'
    )


def test_top_comment_stays_on_top_and_trailing_comments_stay_on_their_line():
    text = "# how to run\nseed 1  # lucky\n# the model\nfinetune all on m\n"
    assert fmt(text) == "# how to run\n# the model\nfinetune all on m\nseed 1  # lucky\n"
    text = "# how to run\n\nseed 1\n\n# the model\nfinetune all on m  # header\n# the end\n"
    assert fmt(text) == "# how to run\n\n# the model\nfinetune all on m  # header\nseed 1\n# the end\n"


def test_strings_are_requoted_with_escapes():
    assert fmt('ask   "say \\"hi\\" \\\\ bye"') == 'ask "say \\"hi\\" \\\\ bye"\n'


def test_refuses_a_file_with_syntax_errors():
    out, diagnostics = format_source("finetune all on m\nbatch two\n", "r.vt")
    assert out is None
    assert [d.code for d in diagnostics] == ["VT012"]
    out, diagnostics = format_source("", "r.vt")
    assert out is None and diagnostics[0].code == "VT001"


def test_format_file(tmp_path: Path):
    missing = tmp_path / "nope.vt"
    out, diagnostics, sources = format_file(str(missing))
    assert out is None and [d.code for d in diagnostics] == ["VT301"] and sources == {}
    out, diagnostics, sources = format_file(str(tmp_path))
    assert out is None and [d.code for d in diagnostics] == ["VT303"]

    crlf = tmp_path / "crlf.vt"
    crlf.write_bytes(b"\xef\xbb\xbffinetune all on m\r\nseed 1\r\n")
    out, diagnostics, sources = format_file(str(crlf))
    assert out == "finetune all on m\nseed 1\n" and diagnostics == []
    assert sources[str(crlf)] == "finetune all on m\r\nseed 1\r\n"  # differs: the CLI rewrites it

    latin1 = tmp_path / "latin1.vt"
    latin1.write_bytes(b'ask "caf\xe9"\n')
    out, diagnostics, sources = format_file(str(latin1))
    assert out is None and [d.code for d in diagnostics] == ["VT002"]


def test_cli_fmt_and_check(tmp_path: Path):
    from click.testing import CliRunner

    from vtc.cli import cli

    recipe = tmp_path / "r.vt"
    recipe.write_text("seed 1 finetune all on m\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["fmt", "--check", str(recipe)])
    assert result.exit_code == 1
    result = runner.invoke(cli, ["fmt", str(recipe)])
    assert result.exit_code == 0, result.output
    assert recipe.read_text(encoding="utf-8") == "finetune all on m\nseed 1\n"
    result = runner.invoke(cli, ["fmt", "--check", str(recipe)])
    assert result.exit_code == 0
    bad = tmp_path / "bad.vt"
    bad.write_text("batch two\n", encoding="utf-8")
    result = runner.invoke(cli, ["fmt", str(bad)])
    assert result.exit_code == 1 and "VT012" in result.output
    assert bad.read_text(encoding="utf-8") == "batch two\n"
