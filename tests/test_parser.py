"""The parser: every statement of the language table becomes the documented AST node, with exact spans."""

from __future__ import annotations

import re

import pytest

from vtc.compiler import ast
from vtc.compiler.clauses import BY_TERMINAL, CLAUSES
from vtc.compiler.parser import CLAUSE_KEYWORDS, GRAMMAR_PATH, decode_source, grammar_sha256, parse_source
from vtc.compiler.syntax_errors import SUB_KEYWORDS
from vtc.diagnostics import Span

ONE_LINE = "finetune vision,mlp on qwen2.5-vl with responses_only from ./xrays resize 512"


def parse_ok(text: str, file: str = "r.vt") -> ast.Recipe:
    recipe, diagnostics = parse_source(text, file)
    assert diagnostics == [], [d.message for d in diagnostics]
    assert recipe is not None
    return recipe


def only(text: str):
    statements = parse_ok(text).statements
    assert len(statements) == 1, statements
    return statements[0]


strip = ast.without_spans


def test_one_line_form_exactly_as_written():
    recipe = parse_ok(ONE_LINE, "xray.vt")
    finetune, flags, source, resize = recipe.statements
    assert [p.text for p in finetune.parts] == ["vision", "mlp"]
    assert finetune.model.text == "qwen2.5-vl"
    assert finetune.span == Span("xray.vt", 1, 1, 1, 34)
    assert finetune.parts[1].span == Span("xray.vt", 1, 17, 1, 20)
    assert finetune.model.span == Span("xray.vt", 1, 24, 1, 34)
    assert flags == ast.Flags(True, (ast.Value("responses_only", Span("xray.vt", 1, 40, 1, 54)),),
                              Span("xray.vt", 1, 35, 1, 54))
    assert source.source.text == "./xrays" and source.split is None
    assert source.span == Span("xray.vt", 1, 55, 1, 67)
    assert resize == ast.Resize(ast.Value("512", Span("xray.vt", 1, 75, 1, 78)), Span("xray.vt", 1, 68, 1, 78))


def test_multi_line_any_order_with_comments_gives_the_same_statements():
    multi = (
        "# chest X-rays\n"
        "finetune vision, mlp on qwen2.5-vl   # the header\n"
        "\n"
        "resize 512\n"
        "  # the data\n"
        "from ./xrays\n"
        "with responses_only\n"
    )
    one = parse_ok(ONE_LINE)
    many = parse_ok(multi)
    assert sorted(map(strip, one.statements)) == sorted(map(strip, many.statements))
    assert [(c.text, c.span.line, c.span.column, c.own_line) for c in many.comments] == [
        (" chest X-rays", 1, 1, True),
        (" the header", 2, 38, False),
        (" the data", 5, 3, True),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("finetune all on unsloth/Llama-3.2-11B-Vision-Instruct", ("Finetune", (("all", False),),
                                                                  ("unsloth/Llama-3.2-11B-Vision-Instruct", False))),
        ('finetune vision on "./my models/qwen"', ("Finetune", (("vision", False),), ("./my models/qwen", True))),
        ('include "base.vt"', ("Include", ("base.vt", True))),
        ("include ../site/base.vt", ("Include", ("../site/base.vt", False))),
        ("using lora", ("Choice", "using", ("lora", False))),
        ("precision bf16", ("Choice", "precision", ("bf16", False))),
        ("with responses_only, rslora", ("Flags", True, (("responses_only", False), ("rslora", False)))),
        ("without gradient_checkpointing", ("Flags", False, (("gradient_checkpointing", False),))),
        ("from unsloth/Radiology_mini split train", ("From", ("unsloth/Radiology_mini", False), ("train", False), None)),
        ("from ./d.json split train format sharegpt",
         ("From", ("./d.json", False), ("train", False), ("sharegpt", False))),
        ("from ./d.json format llava", ("From", ("./d.json", False), None, ("llava", False))),
        ("from ~/data", ("From", ("~/data", False), None, None)),
        ("from C:/x", ("From", ("C:/x", False), None, None)),
        ("evaluate on ./val", ("EvaluateOn", ("./val", False), None, None)),
        ("evaluate on ./val.json format prompt_completion",
         ("EvaluateOn", ("./val.json", False), None, ("prompt_completion", False))),
        ("evaluate  on ./val split test", ("EvaluateOn", ("./val", False), ("test", False), None)),
        ("holdout 10%", ("Holdout", ("10", False))),
        ('ask "Describe this X-ray."', ("Choice", "ask", ("Describe this X-ray.", True))),
        ('system "You are an \\"expert\\" \\\\ radiographer."',
         ("Choice", "system", ('You are an "expert" \\ radiographer.', True))),
        ("answer from column caption", ("Answer", ("column", False), ("caption", False))),
        ("answer from captions", ("Answer", ("captions", False), None)),
        ("answer from folders", ("Answer", ("folders", False), None)),
        ("images from column image", ("Images", ("image", False), None)),
        ("images from folder ./media", ("Images", None, ("./media", False))),
        ("resize 512", ("Resize", ("512", False))),
        ("resize 640x480", ("Resize", ("640x480", False))),
        ("resize none", ("Resize", ("none", False))),
        ("resize between 200k and 1m pixels", ("PixelBudget", ("200k", False), ("1m", False))),
        ("resize  between 256x28x28 and 1280x28x28 pixels",
         ("PixelBudget", ("256x28x28", False), ("1280x28x28", False))),
        ("resize up to 1.2m pixels", ("PixelBudget", None, ("1.2m", False))),
        ("resize up\tto 200000 pixel", ("PixelBudget", None, ("200000", False))),
        ("bad rows skip", ("Choice", "bad rows", ("skip", False))),
        ("bad\trows stop", ("Choice", "bad rows", ("stop", False))),
        ("tiff pages all", ("Choice", "tiff pages", ("all", False))),
        ("window 40 400", ("Window", ("40", False), ("400", False))),
        ("lora rank 16 alpha 32 dropout 0.05",
         ("Lora", (("Setting", ("rank", False), ("16", False)), ("Setting", ("alpha", False), ("32", False)),
                   ("Setting", ("dropout", False), ("0.05", False))))),
        ("lora dropout 0", ("Lora", (("Setting", ("dropout", False), ("0", False)),))),
        ("lora", ("Lora", ())),
        ("train for 60 steps", ("TrainFor", ("60", False), ("steps", False))),
        ("train for 1 epoch", ("TrainFor", ("1", False), ("epoch", False))),
        ("batch 2", ("Number", "batch", ("2", False))),
        ("micro batch 2", ("Number", "micro batch", ("2", False))),
        ("micro  batch\t2", ("Number", "micro batch", ("2", False))),
        ("accumulate 4", ("Number", "accumulate", ("4", False))),
        ("learning rate 2e-4", ("LearningRate", ("2e-4", False), ())),
        ("learning\trate 0.0002", ("LearningRate", ("0.0002", False), ())),
        ("learning rate 2e-4, vision 2e-5,projector 1e-4",
         ("LearningRate", ("2e-4", False), ((("vision", False), ("2e-5", False)),
                                            (("projector", False), ("1e-4", False))))),
        ("projector full", ("Choice", "projector", ("full", False))),
        ("finetune language, projector on x", ("Finetune", (("language", False), ("projector", False)), ("x", False))),
        ("warmup 5 steps", ("Warmup", ("5", False), ("steps", False))),
        ("warmup 3%", ("Warmup", ("3", False), ("%", False))),
        ("schedule cosine", ("Choice", "schedule", ("cosine", False))),
        ("optimizer adamw_torch", ("Choice", "optimizer", ("adamw_torch", False))),
        ("weight decay 0.01", ("Number", "weight decay", ("0.01", False))),
        ("max length 4096", ("Number", "max length", ("4096", False))),
        ("seed 42", ("Number", "seed", ("42", False))),
        ("metric exact_match, cer", ("Metric", (("exact_match", False), ("cer", False)))),
        ("save to ./runs/xray", ("Choice", "save to", ("./runs/xray", False))),
        ("export adapter, merged", ("Export", (("adapter", False), ("merged", False)))),
        ("gpus 1", ("Number", "gpus", ("1", False))),
        ("gpus all", ("Number", "gpus", ("all", False))),
        ("shard model", ("Choice", "shard", ("model", False))),
        ("checkpoint every 50 steps", ("Checkpoint", ("50", False), ("steps", False))),
    ],
)
def test_every_statement_of_the_language_table(text, expected):
    assert strip(only(text)) == expected


def test_keywords_are_words_where_a_value_fits():
    # `train`, `test`, `with`, `column` are keywords elsewhere; after `from` / `split` they are plain words.
    statement = only("from train split test")
    assert (statement.source.text, statement.split.text) == ("train", "test")
    assert only("finetune vision on with").model.text == "with"
    assert only("images from column column").column.text == "column"
    # A keyword is a whole word: `resizer`-like words stay words.
    assert only("save to ./runs/resize_512").value.text == "./runs/resize_512"


def test_misspelled_parts_and_options_are_not_syntax_errors():
    recipe = parse_ok("finetune visoin, mpl on qwen with respones_only metric exat_match schedule cosin")
    assert [p.text for p in recipe.statements[0].parts] == ["visoin", "mpl"]
    assert recipe.statements[1].flags[0].text == "respones_only"


def test_value_spans():
    holdout = only("holdout 10%")
    assert holdout.share.span == Span("r.vt", 1, 9, 1, 12)  # covers "10%"
    warmup = only("warmup 3%")
    assert (warmup.amount.text, warmup.amount.span.column, warmup.amount.span.end_column) == ("3", 8, 10)
    assert (warmup.unit.text, warmup.unit.span.column, warmup.unit.span.end_column) == ("%", 9, 10)
    ask = only('ask "a \\"b\\""')
    assert ask.value.span == Span("r.vt", 1, 5, 1, 14)  # the quotes included
    number = only("  learning   rate 2e-4")
    assert number.span == Span("r.vt", 1, 3, 1, 23)
    assert number.value.span == Span("r.vt", 1, 19, 1, 23)


def test_hash_inside_string_is_text_and_after_it_a_comment():
    recipe = parse_ok('ask "issue #4 # not a comment" # a comment')
    assert recipe.statements[0].value.text == "issue #4 # not a comment"
    assert [c.text for c in recipe.comments] == [" a comment"]
    assert recipe.comments[0].own_line is False


def test_crlf_tabs_bom_unicode():
    text = "\ufefffinetune\tvision on qwen2.5-vl\r\nfrom ./données\r\nask \"Décris l'image 🩻\"\r\n"
    recipe = parse_ok(text)
    assert [s.keyword for s in recipe.statements] == ["finetune", "from", "ask"]
    assert recipe.statements[1].source.text == "./données"
    assert recipe.statements[1].span.line == 2
    assert recipe.statements[2].value.text == "Décris l'image 🩻"


def test_every_clause_keyword_parses_where_a_clause_starts():
    examples = {
        "finetune": "finetune all on x", "include": 'include "b.vt"', "using": "using qlora",
        "precision": "precision auto", "with": "with a", "without": "without a", "from": "from ./d",
        "evaluate on": "evaluate on ./v", "holdout": "holdout 5%", "ask": 'ask "q"', "system": 'system "s"',
        "answer from": "answer from captions", "images from": "images from column image", "resize": "resize 1",
        "lora": "lora rank 1", "projector": "projector lora", "train for": "train for 1 epochs", "batch": "batch 1", "micro batch": "micro batch 1",
            "accumulate": "accumulate 1",
        "learning rate": "learning rate 1", "warmup": "warmup 1 step", "schedule": "schedule linear",
        "optimizer": "optimizer sgd", "weight decay": "weight decay 0", "max length": "max length 8",
        "seed": "seed 1", "metric": "metric cer", "save to": "save to x", "export": "export adapter",
        "gpus": "gpus 2", "shard": "shard model", "bad rows": "bad rows skip", "window": "window 40 400", "tiff pages": "tiff pages all",
        "video": "video 2 fps", "checkpoint every": "checkpoint every 50 steps",
    }
    assert set(examples) == set(CLAUSE_KEYWORDS)
    line = " ".join(examples[k] for k in CLAUSE_KEYWORDS)
    recipe = parse_ok(line)
    assert len(recipe.statements) == len(CLAUSE_KEYWORDS)
    for keyword, statement in zip(CLAUSE_KEYWORDS, recipe.statements):
        if keyword != "without":  # Flags.keyword is "with" for both
            assert statement.keyword == keyword


def test_errors_return_none_unless_partial():
    text = "batch 2\nresise 512\nseed 3"
    recipe, diagnostics = parse_source(text, "r.vt")
    assert recipe is None and [d.code for d in diagnostics] == ["VT010"]
    recipe, diagnostics = parse_source(text, "r.vt", partial=True)
    assert [strip(s) for s in recipe.statements] == [("Number", "batch", ("2", False)),
                                                      ("Number", "seed", ("3", False))]


def test_statements_before_and_after_an_error_on_one_line_are_kept():
    recipe, diagnostics = parse_source("batch 2 accumulate x seed 3 resise 9 gpus 1", "r.vt", partial=True)
    assert [d.code for d in diagnostics] == ["VT012", "VT010"]
    assert [s.keyword for s in recipe.statements] == ["batch", "seed", "gpus"]


def test_decode_source():
    assert decode_source(b"\xef\xbb\xbfbatch 2\r\nseed 1\r", "r.vt") == ("batch 2\nseed 1\n", [])
    text, diagnostics = decode_source("batch 2\nask \"caf".encode() + b"\xe9\"", "r.vt")
    assert text is None
    assert [(d.code, d.span.line, d.span.column) for d in diagnostics] == [("VT002", 2, 9)]
    text, diagnostics = decode_source(b"\x89PNG\r\n\x1a\n\x00\x00", "r.vt")
    assert text is None and diagnostics[0].code in ("VT002", "VT003")


def test_standalone_parser_is_up_to_date_with_the_grammar():
    from vtc.compiler import _vt_parser

    assert _vt_parser.GRAMMAR_SHA256 == grammar_sha256(), "run: .venv/bin/python tools/gen_parser.py"


def test_check_path_does_not_import_lark():
    import subprocess
    import sys

    code = ("import sys; from vtc.compiler.parser import parse_source; parse_source('batch 2', 'r.vt'); "
            "print('lark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _grammar():
    import lark

    return lark.Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer="contextual", start="line")


def test_keyword_tables_know_every_keyword_terminal_of_the_grammar():
    grammar = _grammar()
    names = {t.name for t in grammar.terminals} - {"COMMA", "WORD", "STRING", "INT", "NUMBER", "SIZE", "PERCENT",
                                                   "PIXEL_AMOUNT"}
    names = {n for n in names if not n.startswith("__")}  # the ignored blanks
    assert set(BY_TERMINAL) | set(SUB_KEYWORDS) == names
    assert not set(BY_TERMINAL) & set(SUB_KEYWORDS)
    # Every spelling in the tables is one the grammar's own regex accepts as a whole word.
    by_name = {t.name: re.compile(t.pattern.to_regexp()) for t in grammar.terminals}
    spellings = {**{name: c.keyword for name, c in BY_TERMINAL.items()}, **SUB_KEYWORDS}
    for name, spelling in spellings.items():
        assert by_name[name].fullmatch(spelling), (spelling, name)


def test_simple_clauses_and_only_they_have_a_document_key():
    """The keywords of the grammar rules `number` and `choice` are the rows of the clause table with a key."""
    simple = {rule.expansion[0].name for rule in _grammar().rules if rule.origin.name in ("number", "choice")}
    assert simple == {name for name, clause in BY_TERMINAL.items() if clause.key}
    keys = [clause.key for clause in CLAUSES if clause.key]
    assert len(keys) == len(set(keys))


def test_every_example_of_the_clause_table_parses_as_its_clause():
    for clause in CLAUSES:
        statement = only(clause.example)
        assert statement.keyword == ("with" if clause.keyword == "without" else clause.keyword)


def test_ast_nodes_are_frozen_records():
    span = Span("r.vt", 1, 1, 1, 4)
    value = ast.Value("512", span)
    assert value == ast.Value("512", span) and hash(value) == hash(ast.Value("512", span))
    assert value != ast.Value("512", span, quoted=True) and value.quoted is False
    assert ast.Resize(value, span) != ast.Holdout(value, span)  # same fields, different clauses
    with pytest.raises(AttributeError):
        value.text = "640"
    with pytest.raises(TypeError):
        ast.Value("512")
    assert ast.fields(value) == ("text", "span", "quoted") and ast.fields("512") == ()
    assert repr(value).startswith("Value(text='512'")
