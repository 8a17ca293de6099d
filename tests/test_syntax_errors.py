"""Syntax errors in plain words (VT0xx): one table of bad snippets and the diagnostic each deserves, plus golden
files (tests/golden/syntax/NAME.vt -> NAME.txt, the rendered diagnostics).

Regenerate the golden outputs after an intended change with:  VTC_UPDATE_GOLDEN=1 pytest tests/test_syntax_errors.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from vtc.compiler.parser import CLAUSE_KEYWORDS, ONE_LINE_EXAMPLE, decode_source, parse_source
from vtc.diagnostics import Diagnostic, Severity, render_all

GOLDEN = Path(__file__).parent / "golden" / "syntax"

# snippet -> (code, line, column, end_column, message, a piece of the help)
TABLE = [
    ("", ("VT001", 1, 1, 1, "this recipe is empty", ONE_LINE_EXAMPLE)),
    ("  \n\t\n", ("VT001", 1, 1, 1, "this recipe is empty", "finetune")),
    ("# just a note\n", ("VT001", 1, 1, 1, "this recipe has only comments", ONE_LINE_EXAMPLE)),
    ("resise 512", ("VT010", 1, 1, 7, "unknown clause `resise`", "did you mean `resize`?")),
    ("batch 2 resise 512", ("VT010", 1, 9, 15, "unknown clause `resise`", "did you mean `resize`?")),
    ("Finetune all on x", ("VT010", 1, 1, 9, "unknown clause `Finetune`", "keywords are lower-case")),
    ("batch: 2", ("VT010", 1, 1, 7, "unknown clause `batch:`", "without `:`")),
    ("learning 2e-4", ("VT010", 1, 1, 9, "unknown clause `learning`", "did you mean `learning rate`?")),
    ("lerning rate 2e-4", ("VT010", 1, 1, 8, "unknown clause `lerning`", "did you mean `learning rate`?")),
    ("evaluate ./val", ("VT010", 1, 1, 9, "unknown clause `evaluate`", "did you mean `evaluate on`?")),
    ("save ./runs", ("VT010", 1, 1, 5, "unknown clause `save`", "did you mean `save to`?")),
    ("hello world", ("VT010", 1, 1, 6, "unknown clause `hello`", "start it with `#`")),
    ("512", ("VT010", 1, 1, 4, "a clause cannot start with `512`", "starts with a keyword")),
    ('"text"', ("VT010", 1, 1, 7, 'a clause cannot start with `"text"`', "starts with a keyword")),
    ("batch", ("VT011", 1, 6, 6, "missing a whole number after `batch`", "a whole number, for example `batch 8`")),
    ("batch   # two", ("VT011", 1, 6, 6, "missing a whole number after `batch`", "`batch 8`")),
    ("batch resize 512", ("VT011", 1, 6, 6, "missing a whole number after `batch`", "`batch 8`")),
    ("learning rate", ("VT011", 1, 14, 14, "missing a number after `learning rate`", "`learning rate 2e-4`")),
    ("finetune vision,mlp", ("VT011", 1, 20, 20, "missing `on` and a model name after `finetune vision,mlp`",
                             "`finetune vision, mlp on qwen2.5-vl`")),
    ("finetune vision on", ("VT011", 1, 19, 19, "missing a model name after `finetune vision on`", "qwen2.5-vl")),
    ("finetune on qwen2.5-vl", ("VT011", 1, 9, 9, "missing the parts to train after `finetune`", "vision")),
    ("with responses_only,", ("VT011", 1, 21, 21, "missing an option name after `with responses_only,`",
                              "`with responses_only, rslora`")),
    ("from ./x split", ("VT011", 1, 15, 15, "missing a split name (like `train`) after `from ./x split`", "split")),
    ("train for 3", ("VT011", 1, 12, 12, "missing `epochs` or `steps` after `train for 3`", "`train for 60 steps`")),
    ("answer from", ("VT011", 1, 12, 12, "missing `captions`, `folders` or `column` after `answer from`",
                     "answer from column caption")),
    ("ask", ("VT011", 1, 4, 4, "missing text in double quotes after `ask`", 'ask "Describe this X-ray."')),
    ('include% "a"', ("VT010", 1, 1, 9, "unknown clause `include%`", "did you mean `include`?")),
    ("batch two", ("VT012", 1, 7, 10, "expected a whole number after `batch`, found `two`", "`batch 8`")),
    ("batch 2.5", ("VT012", 1, 7, 10, "expected a whole number after `batch`, found `2.5`", "`batch 8`")),
    ("seed 2x", ("VT012", 1, 6, 8, "expected a whole number after `seed`, found `2x`", "`seed 3407`")),
    ("holdout 10", ("VT012", 1, 9, 11, "expected a percentage like `10%` after `holdout`, found `10`",
                    "`holdout 10%`")),
    ("holdout 10%x", ("VT012", 1, 9, 13, "expected a percentage like `10%` after `holdout`, found `10%x`",
                      "`holdout 10%`")),
    ("batch 2% seed 1", ("VT012", 1, 7, 9, "expected a whole number after `batch`, found `2%`", "`batch 8`")),
    ("finetune v%ision on x", ("VT012", 1, 10, 17, "expected a part to train (vision, language, attention, mlp, "
                                                   "projector or all) after `finetune`, found `v%ision`", "`finetune vision, mlp")),
    ("ask Describe it", ("VT012", 1, 5, 13, "expected text in double quotes after `ask`, found `Describe`",
                         'ask "Describe this X-ray."')),
    ("train for 3 epocs", ("VT012", 1, 13, 18, "expected `epochs` or `steps` after `train for 3`, found `epocs`",
                           "did you mean `epochs`?")),
    ("resize big", ("VT012", 1, 8, 11, "expected a number of pixels, a size like `640x480`, `none`, `between` or "
                                       "`up to` after `resize`, found `big`", "`resize 512`")),
    ("answer from captoins", ("VT012", 1, 13, 21, "expected `captions`, `folders` or `column` after "
                                                  "`answer from`, found `captoins`", "did you mean `captions`?")),
    ("finetune vision mlp on x", ("VT012", 1, 17, 20, "expected `,` or `on` and a model name after "
                                                      "`finetune vision`, found `mlp`", "separate the parts")),
    ('using "lora"', ("VT012", 1, 7, 13, 'expected a method (qlora, lora or full) after `using`, found `"lora"`',
                      "without double quotes")),
    ("batch 2 3", ("VT013", 1, 9, 10, "unexpected `3` after `batch 2`", "`batch` takes one value")),
    ("with responses_only rslora", ("VT013", 1, 21, 27, "unexpected `rslora` after `with responses_only`",
                                    "separate several values with commas")),
    ("from ./my xrays", ("VT013", 1, 11, 16, "unexpected `xrays` after `from ./my`",
                         'put it in double quotes: `"./my xrays"`')),
    ("from ./x splt train", ("VT013", 1, 10, 14, "unexpected `splt` after `from ./x`", "did you mean `split`?")),
    ("lora 16", ("VT013", 1, 6, 8, "unexpected `16` after `lora`", "`rank`, `alpha` or `dropout`")),
    ("lora rnk 16", ("VT013", 1, 6, 9, "unexpected `rnk` after `lora`", "did you mean `rank`?")),
    ("batch = 2", ("VT004", 1, 7, 8, "unexpected character `=` (equals sign)", "without `=`")),
    ("ask 'Describe'", ("VT004", 1, 5, 6, "unexpected character `'` (apostrophe)", "use double quotes")),
    ("ask \u201cDescribe\u201d", ("VT004", 1, 5, 6, "unexpected character `\u201c` (left double quotation mark)",
                                  "not curly quotes")),
    ("batch 2;", ("VT004", 1, 8, 9, "unexpected character `;` (semicolon)", "no `;` is needed")),
    ("with a,,b", ("VT004", 1, 8, 9, "unexpected character `,` (comma)", "separates values in a list")),
    ("seed 1 $", ("VT004", 1, 8, 9, "unexpected character `$` (dollar sign)", "double quotes")),
    ("batch 2\x07", ("VT003", 1, 8, 9, "invisible control character U+0007 in the recipe", "delete it")),
    ("batch 2\x00", ("VT003", 1, 8, 9, "this file contains null bytes: it looks like a binary file, not a recipe",
                     "a recipe is a text file")),
    ('ask "Describe # this', ("VT005", 1, 5, 6, "this text in double quotes is never closed", 'end it with `"`')),
    ('ask "ends with backslash\\', ("VT005", 1, 5, 6, "this text in double quotes is never closed", "`\\\"`")),
    ('ask "Line one.\\nLine two."', ("VT006", 1, 15, 17, "`\\n` is not allowed inside double quotes",
                                     "a line break cannot be written")),
    ("from C:\\Users\\me\\xrays", ("VT004", 1, 8, 9, "unexpected character `\\` (backslash)",
                                    "use forward slashes: `C:/Users/me/xrays`")),
    ('from "C:\\data\\"', ("VT005", 1, 6, 7, "this text in double quotes is never closed",
                          "a backslash just before")),
    ("epochs 3", ("VT010", 1, 1, 7, "unknown clause `epochs`", "did you mean `train for 3 epochs`?")),
    ("Finetune vision on Qwen2.5-VL", ("VT010", 1, 1, 9, "unknown clause `Finetune`",
                                       "keywords are lower-case: write `finetune vision on Qwen2.5-VL`")),
    ("batch size 4", ("VT012", 1, 7, 11, "expected a whole number after `batch`, found `size`",
                      "write `batch 4`, without `size`")),
    ("batch " + "9" * 20_001, ("VT007", 1, 20_001, 20_002, "line 1 is 20,007 characters long; vtc reads lines of "
                                                           "up to 20,000", "one clause takes one line")),
]


@pytest.mark.parametrize("snippet, expected", TABLE, ids=[repr(s[:30]) for s, _ in TABLE])
def test_bad_snippet_gets_the_diagnostic_it_deserves(snippet, expected):
    code, line, column, end_column, message, help_piece = expected
    recipe, diagnostics = parse_source(snippet, "r.vt")
    assert recipe is None
    first = diagnostics[0]
    got = (first.code, first.span.line, first.span.column, first.span.end_column, first.message)
    assert got == (code, line, column, end_column, message), [d.to_json() for d in diagnostics]
    assert help_piece in (first.help or ""), first.help
    assert first.severity is Severity.ERROR
    assert len(diagnostics) == 1, [d.message for d in diagnostics]


LEAKS = re.compile(r"\b(_?[A-Z][A-Z_]{2,}|\$END|__\w+|Token|lark|Unexpected\w*)\b")


@pytest.mark.parametrize("snippet, expected", TABLE, ids=[repr(s[:30]) for s, _ in TABLE])
def test_no_terminal_names_leak(snippet, expected):
    _, diagnostics = parse_source(snippet, "r.vt")
    for d in diagnostics:
        for text in (d.message, d.help or ""):
            assert not LEAKS.search(text.replace("UTF-8", "")), text


def test_every_problem_of_a_file_at_once():
    text = "finetune vision on qwen2.5-vl resise 512\nbatch two seed x\nask \"open\nlearning rate 1e-4 gpus"
    recipe, diagnostics = parse_source(text, "r.vt")
    assert recipe is None
    assert [(d.code, d.span.line, d.span.column) for d in diagnostics] == [
        ("VT010", 1, 31), ("VT012", 2, 7), ("VT012", 2, 16), ("VT005", 3, 5), ("VT011", 4, 24),
    ]


def test_a_flood_of_errors_is_capped():
    recipe, diagnostics = parse_source("resise 1\n" * 500 + "x " * 5000, "r.vt")
    assert recipe is None
    assert len(diagnostics) <= 51
    assert diagnostics[-1].code == "VT009" and diagnostics[-1].severity is Severity.NOTE


def test_unknown_clause_suggestions_cover_every_keyword():
    for keyword in CLAUSE_KEYWORDS:
        typo = keyword[:-1] + "x" + keyword[-1] if len(keyword) > 3 else keyword + "x"
        text = f"{typo} 1"
        _, diagnostics = parse_source(text, "r.vt")
        assert diagnostics and diagnostics[0].code == "VT010", (text, diagnostics)
        assert f"`{keyword}`" in diagnostics[0].help, (text, diagnostics[0].help)


def test_decode_errors_point_at_line_and_column():
    text, diagnostics = decode_source(b"batch 2\r\nseed \xff\xfe 1\r\n", "r.vt")
    assert text is None
    [d] = diagnostics
    assert (d.code, d.span.line, d.span.column) == ("VT002", 2, 6)
    assert "UTF-8" in d.message and "ff" in d.message


def _golden_cases():
    return sorted(GOLDEN.glob("*.vt"))


@pytest.mark.parametrize("path", _golden_cases(), ids=lambda p: p.stem)
def test_golden_syntax_diagnostics(path: Path):
    data = path.read_bytes()
    text, diagnostics = decode_source(data, path.name)
    if text is not None:
        _, diagnostics = parse_source(text, path.name)
    assert diagnostics and all(isinstance(d, Diagnostic) for d in diagnostics)
    rendered = render_all(diagnostics, {path.name: text or ""}) + "\n"
    expected_path = path.with_suffix(".txt")
    if os.environ.get("VTC_UPDATE_GOLDEN"):
        expected_path.write_text(rendered, encoding="utf-8")
    assert rendered == expected_path.read_text(encoding="utf-8")


def test_there_are_golden_files():
    assert len(_golden_cases()) >= 6
