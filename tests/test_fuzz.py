"""Property-based fuzzing: no input makes the parser, the formatter or the whole compile raise.

Generated recipes (random valid clauses, one-line and multi-line, with comments) must parse without diagnostics,
format idempotently and keep their AST; mutated ones (inserted, deleted and replaced characters, truncation,
random unicode, CRLF, tabs, NUL, control characters, huge lines) must come back as Diagnostic objects whose spans
lie inside the text -- never as an exception.
"""

from __future__ import annotations

import os
import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtc.compiler import ast
from vtc.compiler.explain import explain_plan
from vtc.compiler.fmt import format_source
from vtc.compiler.parser import decode_source, parse_source
from vtc.compiler.plan import summarize_plan
from vtc.diagnostics import Diagnostic, Severity, render_all

# VTC_FUZZ_EXAMPLES=5000 runs a longer search (the default keeps this file at a few seconds).
_N = int(os.environ.get("VTC_FUZZ_EXAMPLES", "200"))
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
FAST = settings(max_examples=_N, deadline=None, suppress_health_check=_QUIET)
SLOW = settings(max_examples=max(_N // 2, 1), deadline=None, suppress_health_check=_QUIET)

# --- generated valid recipes ----------------------------------------------------------------------------------------

# Words that are keywords elsewhere are fine as values; so are hub ids, paths and unicode letters.
WORDS = st.sampled_from([
    "vision", "language", "attention", "mlp", "all", "qwen2.5-vl", "llama-3.2-vision", "unsloth/Radiology_mini",
    "./xrays", "~/data", "C:/x", "../a/b.c", "train", "test", "with", "from", "column", "resize", "none", "on",
    "données", "x-ray_v2", "a+b@c:d", "visoin", "respones_only", "12abc", "2e-4x",
])
STRINGS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x1c\x1d\x1e\x85"),
    max_size=20,
).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
VALUES = st.one_of(WORDS, STRINGS)
INTS = st.integers(0, 10**6).map(str)
# Numbers past Python's int-conversion limit (4,300 digits) and past a float's range: VT115 / VT103, never a traceback.
HUGE_INTS = st.sampled_from([41, 4301, 5000]).map(lambda n: "9" * n)
HUGE = HUGE_INTS | st.sampled_from(["1e400", "1e-400", "0." + "0" * 60 + "1"])
NUMBERS = st.one_of(INTS, st.sampled_from(["2e-4", "0.05", "1E3", ".5", "3.", "-1", "+0.1", "1e+2"]), HUGE)
PERCENTS = st.sampled_from(["10%", "0%", "12.5%", "99.9%"])
SEP = st.sampled_from([" ", "  ", "\t", " \u00a0"])


def _list(values):
    return st.lists(values, min_size=1, max_size=4).flatmap(
        lambda items: st.sampled_from([",", ", ", " , "]).map(lambda comma: comma.join(items))
    )


CLAUSES = st.one_of(
    st.tuples(_list(WORDS), VALUES).map(lambda t: f"finetune {t[0]} on {t[1]}"),
    VALUES.map(lambda v: f"include {v}"),
    WORDS.map(lambda v: f"using {v}"),
    WORDS.map(lambda v: f"precision {v}"),
    st.tuples(st.sampled_from(["with", "without"]), _list(WORDS)).map(" ".join),
    st.tuples(st.sampled_from(["from", "evaluate on", "evaluate\ton"]), VALUES,
              st.one_of(st.just(""), WORDS.map(lambda w: f" split {w}"))).map(lambda t: f"{t[0]} {t[1]}{t[2]}"),
    PERCENTS.map(lambda p: f"holdout {p}"),
    STRINGS.map(lambda s: f"ask {s}"),
    STRINGS.map(lambda s: f"system {s}"),
    st.one_of(st.sampled_from(["captions", "folders"]), VALUES.map(lambda v: f"column {v}")).map(
        lambda v: f"answer from {v}"),
    VALUES.map(lambda v: f"images from column {v}"),
    st.one_of(INTS, HUGE_INTS, st.sampled_from(["640x480", "none", "1x1", "9" * 5000 + "x1"])).map(
        lambda v: f"resize {v}"),
    st.tuples(st.sampled_from(["bad rows", "tiff pages", "bad\trows"]), WORDS).map(" ".join),
    st.tuples(NUMBERS, NUMBERS).map(lambda t: f"window {t[0]} {t[1]}"),
    st.lists(st.one_of(INTS.map(lambda n: f"rank {n}"), INTS.map(lambda n: f"alpha {n}"),
                       NUMBERS.map(lambda n: f"dropout {n}")), max_size=3).map(lambda s: " ".join(["lora"] + s)),
    st.tuples(NUMBERS, st.sampled_from(["epoch", "epochs", "step", "steps"])).map(
        lambda t: f"train for {t[0]} {t[1]}"),
    st.tuples(st.sampled_from(["batch", "accumulate", "seed", "gpus", "max length", "max  length"]), INTS).map(
        " ".join),
    st.tuples(st.sampled_from(["learning rate", "weight decay"]), NUMBERS).map(" ".join),
    st.one_of(INTS.map(lambda n: f"warmup {n} steps"), INTS.map(lambda n: f"warmup {n} step"),
              PERCENTS.map(lambda p: f"warmup {p}")),
    st.tuples(st.sampled_from(["schedule", "optimizer"]), WORDS).map(" ".join),
    _list(WORDS).map(lambda v: f"metric {v}"),
    VALUES.map(lambda v: f"save to {v}"),
    _list(WORDS).map(lambda v: f"export {v}"),
)
# Anything but line breaks (str.splitlines() breaks at \v, \f, \x1c-\x1e, \x85, \u2028, \u2029 too) and NUL.
COMMENT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zl", "Zp"),
                           blacklist_characters="\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85"),
    max_size=15,
).map(lambda s: "#" + s)


@st.composite
def recipes(draw) -> tuple[str, int]:
    """A valid recipe (one-line or multi-line, with comments and blank lines) and its number of clauses."""
    clauses = draw(st.lists(CLAUSES, min_size=1, max_size=12))
    if draw(st.booleans()) and sum(map(len, clauses)) < 19_000:  # a line holds 20,000 characters (VT007)
        text = draw(SEP).join(clauses)
        if draw(st.booleans()):
            text += " " + draw(COMMENT)
        return text, len(clauses)
    lines = []
    for clause in clauses:
        if draw(st.booleans()):
            lines.append(draw(COMMENT) if draw(st.booleans()) else "")
        indent = draw(st.sampled_from(["", "  ", "\t"]))
        tail = (" " + draw(COMMENT)) if draw(st.booleans()) else ""
        lines.append(indent + clause + tail)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline])), len(clauses)


# --- mutations ------------------------------------------------------------------------------------------------------

NASTY = st.sampled_from([
    "\x00", "\r", "\n", "\r\n", "\t", '"', "\\", "#", ",", "%", "x", "\u00a0", "\u2028", "\x85", "\x0c", "\x07",
    "\x1b", "\ufeff", "é", "🩻", "\u201c", "'", "=", ";", "{", "\ud800", "\x7f", "\x9b",
    "\x1b[2K\x1b[1A", "\x1b]0;title\x07", "\u202e", "\udcff", "9" * 4301,
])


@st.composite
def mutated(draw) -> str:
    text, _ = draw(recipes())
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "unicode", "huge", "duplicate"]))
        i = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:i] + draw(NASTY) + text[i:]
        elif op == "delete":
            j = draw(st.integers(i, min(len(text), i + 8)))
            text = text[:i] + text[j:]
        elif op == "replace" and text:
            i = min(i, len(text) - 1)
            text = text[:i] + draw(NASTY) + text[i + 1:]
        elif op == "truncate":
            text = text[:i]
        elif op == "unicode":
            text = text[:i] + draw(st.text(min_size=1, max_size=10)) + text[i:]
        elif op == "huge":
            chunk = draw(st.sampled_from(["a", "9", "with a,", '"', "x ", "resise 1 "]))
            size = draw(st.sampled_from([1_000, 19_990, 25_000, 1_000_000]))
            text = text[:i] + chunk * (size // len(chunk)) + text[i:]
        elif op == "duplicate":
            text = text + "\n" + text[:i]
    return text


# --- properties -----------------------------------------------------------------------------------------------------


def assert_diagnostics_inside(diagnostics, text: str, file: str) -> None:
    lines = text.splitlines() or [""]
    for d in diagnostics:
        assert isinstance(d, Diagnostic), d
        assert isinstance(d.severity, Severity) and d.code.startswith("VT") and d.message
        d.render({file: text})  # rendering never raises either
        span = d.span
        if span is None or span.file != file or span.line == 0:
            continue
        assert 1 <= span.line <= len(lines), (d, len(lines))
        width = len(lines[span.line - 1])
        assert 1 <= span.column <= width + 1, (d, width)
        if span.end_line != span.line:  # a clause broken over lines (VT014) keeps the span of all its words
            assert span.line < span.end_line <= len(lines), (d, len(lines))
            assert 1 <= span.end_column <= len(lines[span.end_line - 1]) + 2, d
            continue
        assert span.column <= span.end_column <= width + 2, (d, width)


normal = ast.without_spans


@FAST
@given(recipes())
def test_generated_recipes_parse_and_format(case):
    text, count = case
    recipe, diagnostics = parse_source(text, "g.vt")
    assert diagnostics == [], [d.render({"g.vt": text}) for d in diagnostics]
    assert len(recipe.statements) == count
    formatted, diagnostics = format_source(text, "g.vt")
    assert formatted is not None and diagnostics == []
    assert format_source(formatted, "g.vt")[0] == formatted
    again, _ = parse_source(formatted, "g.vt")
    assert sorted(map(normal, again.statements), key=repr) == sorted(map(normal, recipe.statements), key=repr)
    assert sorted(c.text.rstrip() for c in again.comments) == sorted(c.text.rstrip() for c in recipe.comments)


@FAST
@given(mutated())
def test_mutated_recipes_never_raise(text):
    recipe, diagnostics = parse_source(text, "m.vt")
    assert recipe is not None or any(d.is_error for d in diagnostics)
    assert_diagnostics_inside(diagnostics, text, "m.vt")
    formatted, diagnostics = format_source(text, "m.vt")
    assert_diagnostics_inside(diagnostics, text, "m.vt")
    if formatted is not None:
        assert format_source(formatted, "m.vt")[0] == formatted


@FAST
@given(st.binary(max_size=300) | mutated().map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_decode_and_parse(data):
    text, diagnostics = decode_source(data, "b.vt")
    assert all(isinstance(d, Diagnostic) for d in diagnostics)
    if text is None:
        assert diagnostics and diagnostics[0].code in ("VT002", "VT003")
        return
    _, diagnostics = parse_source(text, "b.vt")
    assert_diagnostics_inside(diagnostics, text, "b.vt")


# --- the whole compile (vtc.compiler.pipeline.compile_source) -------------------------------------------------------

# What a terminal acts on: C0 controls but tab and newline, DEL, C1 controls, the bidirectional overrides, and lone
# surrogates (which a strict UTF-8 stream cannot even write).
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


INCLUDED = {"base.vt": "batch 2\nlearning rate 1e-4\n", "loop.vt": 'include "loop.vt"\n', "bad.vt": "batch two\n"}


def _load(written: str, including: str) -> tuple[str, str]:
    """An in-memory include loader: a few files, one that includes itself, one with a syntax error."""
    if written in INCLUDED:
        return written, INCLUDED[written]
    raise FileNotFoundError(written)


def _compile(text: str, base_ok: bool = False):
    from vtc.compiler.pipeline import compile_source

    with tempfile.TemporaryDirectory() as base:
        return compile_source(text, "p.vt", load=_load, base_dir=base, base_ok=base_ok)


WITH_HEADER = st.tuples(recipes(), st.sampled_from([
    "finetune vision,mlp on qwen2.5-vl from ./xrays\n", "finetune all on tiny-qwen2.5-vl from ./d\n",
    'include "base.vt"\n', 'include "loop.vt"\n', 'include "bad.vt"\n', 'include "missing.vt"\n', "",
])).map(lambda t: t[1] + t[0][0])


@SLOW
@given(st.one_of(WITH_HEADER, mutated()), st.booleans())
def test_pipeline_never_raises(text, base_ok):
    result = _compile(text, base_ok)  # base_ok: as `vtc check` compiles (base recipes allowed)
    assert result.plan is None or not any(d.is_error for d in result.diagnostics)
    assert_diagnostics_inside(result.diagnostics, text, "p.vt")
    for d in result.diagnostics:
        if d.span is not None and d.span.file in INCLUDED:
            assert_diagnostics_inside([d], INCLUDED[d.span.file], d.span.file)
    # Text output never holds a raw control character (escape sequences, bidi overrides, surrogates).
    assert not RAW_CONTROL.search(render_all(result.diagnostics, result.sources))
    if result.plan is not None:
        assert not RAW_CONTROL.search(summarize_plan(result.plan) + explain_plan(result.plan))


def test_the_fuzz_inputs_include_the_brief_cases():
    """The nasty inputs the issue lists, once each, through the whole compile."""
    cases = ["", "\x00\x01\x02", "a" * 1_000_000, "finetune all on m\r\nfrom ./d\r\n", "\tbatch\t2\t",
             "ask \"Décris l'image 🩻\"", 'ask "never closed', 'include "missing.vt"', "\ud800", "resise 512"]
    for text in cases:
        result = _compile(text)
        assert result.plan is None and result.diagnostics, text[:20]
        assert_diagnostics_inside(result.diagnostics, text, "p.vt")


# --- hostile inputs: control characters in text output, surrogates through the API, include graphs -----------------



@SLOW
@given(st.text(alphabet=st.sampled_from(["\ud800", "\udcff", "a", "/", ".", "\x00", "\x1b"]), min_size=1, max_size=8),
       st.sampled_from(["model", "data", "save", "include", "file"]))
def test_surrogates_and_nul_through_the_api_are_diagnostics(name, where):
    """The API takes any str: a lone surrogate or a NUL in the text, a model path or the file name is a diagnostic
    (VT002 / VT003 / VT303 ...), never an exception."""
    from vtc.compiler.pipeline import compile_file, compile_source

    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = {"model": f"finetune all on {quoted}\nfrom ./d\n",
            "data": f"finetune all on tiny-qwen2.5-vl\nfrom {quoted}\n",
            "save": f"finetune all on tiny-qwen2.5-vl\nfrom ./d\nsave to {quoted}\n",
            "include": f"include {quoted}\nfinetune all on tiny-qwen2.5-vl\nfrom ./d\n",
            "file": "finetune all on ./m\nfrom ./d\n"}[where]
    file = f"/tmp/{name}/r.vt" if where == "file" else "r.vt"
    with tempfile.TemporaryDirectory() as base:
        result = compile_source(text, file, base_dir=base)
    assert all(isinstance(d, Diagnostic) for d in result.diagnostics)
    for d in result.diagnostics:
        d.render(result.sources)
    compile_file(file)  # a name no file can have: VT301 / VT303


@st.composite
def include_graphs(draw) -> dict[str, str]:
    """Up to 12 recipe files held in memory, each including others (itself, earlier ones: cycles; later ones, once
    or twice: diamonds) and setting a few values."""
    n = draw(st.integers(1, 12))
    files = {}
    for i in range(n):
        lines = []
        for _ in range(draw(st.integers(0, 4))):
            target = draw(st.integers(0, n))  # n: a file that does not exist
            lines.append(f'include "f{target}.vt"')
        lines += draw(st.lists(st.sampled_from(["batch 2", "seed 7", "holdout 10%", "evaluate on ./v", "lora rank 8",
                                                "learning rate 1e-4", "batch 9" + "9" * 4400]), max_size=3))
        draw(st.randoms()).shuffle(lines)
        files[f"f{i}.vt"] = "\n".join(lines) + "\n"
    return files


@SLOW
@given(include_graphs())
def test_include_graphs_never_raise_and_list_every_file_read(files):
    from vtc.compiler.pipeline import compile_source

    read = []

    def load(written: str, including: str) -> tuple[str, str]:
        if written not in files:
            raise FileNotFoundError(written)
        read.append(written)
        return written, files[written]

    text = 'finetune all on tiny-qwen2.5-vl\nfrom ./d\ninclude "f0.vt"\n'
    with tempfile.TemporaryDirectory() as base:
        result = compile_source(text, "main.vt", load=load, base_dir=base)
    assert all(isinstance(d, Diagnostic) for d in result.diagnostics)
    for name, body in files.items():
        assert_diagnostics_inside([d for d in result.diagnostics if d.span and d.span.file == name], body, name)
    if result.plan is not None:
        # Every file read is in the plan's list (a later edit to it changes the recipe's fingerprint).
        assert set(read) <= set(result.plan["recipe"]["files"]), (read, result.plan["recipe"]["files"])


def test_a_diamond_graph_of_31_files_is_linear():
    """Each of 31 files includes the next twice: 2**31 copies as a tree, 31 files lowered once each as a graph."""
    from vtc.compiler.pipeline import compile_source

    files = {f"f{i}.vt": (f'include "f{i + 1}.vt"\n' * 2 if i < 30 else "") + f"seed {i}\n" for i in range(31)}
    calls = []

    def load(written: str, including: str) -> tuple[str, str]:
        calls.append(written)
        return written, files[written]

    result = compile_source('finetune all on tiny-qwen2.5-vl\nfrom ./d\ninclude "f0.vt"\n', "main.vt", load=load,
                            base_dir="/nonexistent")
    assert result.plan is not None and result.plan["training"]["seed"] == 0
    assert len(result.plan["recipe"]["files"]) == 32
    assert len(calls) == 61  # one load per include statement; each file parsed and lowered once
