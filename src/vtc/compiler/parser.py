"""Recipe text -> ast.Recipe, with every syntax problem as a Diagnostic (codes VT001-VT099). Never raises.

The grammar is src/vtc/grammar/vt.lark (LALR, contextual lexer). A statement never spans lines, so the parser works
one line at a time:

1. the line is split into code and a trailing ``# comment`` (a ``#`` inside a double-quoted string is text);
2. the code is parsed with the grammar's ``line`` rule;
3. after an error, the statements before the broken clause are kept, the error is translated into plain words
   (never a terminal name such as ``_COMMA`` or ``WORD``) and parsing resumes at the next clause keyword on the
   line, so that one run reports every problem.

The parser itself comes from ``vtc.compiler._vt_parser``, a Lark standalone module generated from vt.lark by
tools/gen_parser.py, so ``vtc check`` need not import lark. If that module is missing or older than vt.lark
(it records the grammar's SHA-256), the grammar is loaded with lark instead.
"""

from __future__ import annotations

import dataclasses

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from vtc.compiler import ast
from vtc.diagnostics import Diagnostic, Span, error, note, suggest

__all__ = ["CLAUSE_KEYWORDS", "parse_source", "decode_source", "ONE_LINE_EXAMPLE", "GRAMMAR_PATH"]

GRAMMAR_PATH = Path(__file__).resolve().parent.parent / "grammar" / "vt.lark"

# The clause-start keywords as users write them, in the order of the language table (docs/internals.md).
CLAUSE_KEYWORDS: tuple[str, ...] = (
    "finetune", "include", "using", "precision", "with", "without", "from", "evaluate on", "holdout", "ask",
    "system", "answer from", "images from", "resize", "bad rows", "window", "tiff pages", "lora", "train for",
    "batch", "accumulate", "learning rate", "warmup", "schedule", "optimizer", "weight decay", "max length", "seed",
    "metric", "save to", "export", "gpus", "checkpoint every",
)

ONE_LINE_EXAMPLE = "finetune vision,mlp on qwen2.5-vl with responses_only from ./xrays resize 512"

# Grammar terminal of each clause keyword: "learning rate" -> LEARNING_RATE.
_CLAUSE_TERMINALS = {kw.upper().replace(" ", "_"): kw for kw in CLAUSE_KEYWORDS}

# An example of every clause (shown in help lines) and what its plain word means there.
_EXAMPLES = {
    "finetune": "finetune vision, mlp on qwen2.5-vl",
    "include": 'include "base.vt"',
    "using": "using lora",
    "precision": "precision bf16",
    "with": "with responses_only, rslora",
    "without": "without gradient_checkpointing",
    "from": "from unsloth/Radiology_mini split train",
    "evaluate on": "evaluate on ./val",
    "holdout": "holdout 10%",
    "ask": 'ask "Describe this X-ray."',
    "system": 'system "You are an expert radiographer."',
    "answer from": "answer from column caption",
    "images from": "images from column image",
    "resize": "resize 512",
    "bad rows": "bad rows skip",
    "window": "window 40 400",
    "tiff pages": "tiff pages all",
    "lora": "lora rank 16 alpha 16 dropout 0",
    "train for": "train for 60 steps",
    "batch": "batch 2",
    "accumulate": "accumulate 4",
    "learning rate": "learning rate 2e-4",
    "warmup": "warmup 5 steps",
    "schedule": "schedule cosine",
    "optimizer": "optimizer adamw_8bit",
    "weight decay": "weight decay 0.01",
    "max length": "max length 2048",
    "seed": "seed 3407",
    "metric": "metric exact_match, cer",
    "save to": "save to ./runs/xray",
    "export": "export adapter, merged",
    "gpus": "gpus 1",
    "checkpoint every": "checkpoint every 50 steps",
}

_WORD_MEANING = {
    "finetune": "a part to train (vision, language, attention, mlp or all)",
    "include": "a file name",
    "using": "a method (qlora, lora or full)",
    "precision": "a precision (auto, bf16 or fp16)",
    "with": "an option name",
    "without": "an option name",
    "from": "a folder or a dataset name",
    "evaluate on": "a folder or a dataset name",
    "answer from": "a column name",
    "images from": "a column name",
    "schedule": "a schedule name (linear, cosine, ...)",
    "optimizer": "an optimizer name (adamw_8bit, adamw_torch, ...)",
    "metric": "a metric name (exact_match, cer, wer, ...)",
    "save to": "a folder",
    "bad rows": "what to do with bad rows (skip or stop)",
    "tiff pages": "which pages (all or first)",
    "export": "an export kind (adapter or merged)",
}

# Terminals in user words. Keywords inside clauses are shown as written.
_TERMINAL_WORDS = {
    "INT": "a whole number",
    "NUMBER": "a number",
    "PERCENT": "a percentage like `10%`",
    "SIZE": "a size like `640x480`",
    "STRING": "text in double quotes",
    "COMMA": "`,`",
    "ON": "`on`",
    "SPLIT": "`split`",
    "CAPTIONS": "`captions`",
    "FOLDERS": "`folders`",
    "COLUMN": "`column`",
    "NONE": "`none`",
    "RANK": "`rank`",
    "ALPHA": "`alpha`",
    "DROPOUT": "`dropout`",
    "EPOCHS": "`epochs`",
    "STEPS": "`steps`",
}
_SUB_KEYWORDS = {"ON": "on", "SPLIT": "split", "CAPTIONS": "captions", "FOLDERS": "folders", "COLUMN": "column",
                 "NONE": "none", "RANK": "rank", "ALPHA": "alpha", "DROPOUT": "dropout", "EPOCHS": "epochs",
                 "STEPS": "steps"}

# Characters of a bare word (kept in step with WORD in vt.lark) and of anything number-like.
_BARE = r"[\w.\/~:+@%-]"
_CHUNK_RE = re.compile(_BARE + "+")
_STRING_RE = re.compile(r'"(?:\\.|[^"\\])*"')
_INT_RE = re.compile(r"\d+")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_SIZE_RE = re.compile(r"\d+x\d+")
_PERCENT_RE = re.compile(r"\d+(\.\d+)?%")
# The start of a clause keyword on a line (used to resume after an error). Two-word keywords allow any blanks.
_KEYWORD_RE = re.compile(
    r"(?<![\w.\/~:+@%\-])("
    + "|".join(kw.replace(" ", r"[^\S\n]+") for kw in sorted(CLAUSE_KEYWORDS, key=len, reverse=True))
    + r")(?![\w.\/~:+@%\-])"
)
# Splits a line into strings (closed or not), comment starts and the rest.
_SCAN_RE = re.compile(r'"(?:\\.|[^"\\])*"?|#|[^"#]+')
# Control characters that can sit inside a line (str.splitlines() already splits at \n, \r, \v, \f, \x1c-\x1e,
# \x85, \u2028 and \u2029). Tab is allowed.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")

# A 1 MB line of garbage must not produce a million diagnostics. The longest sensible line is a long `system`
# prompt; 20,000 characters is several pages, and Lark needs about 10 us a token, so a line at the limit parses in
# well under 0.1 s.
_MAX_LINE = 20_000
_MAX_ERRORS_PER_LINE = 10
_MAX_ERRORS = 50


# --- the LALR parser and the tokenizer ------------------------------------------------------------------------------
#
# Lark builds the LALR tables from vt.lark. vtc feeds them tokens from its own small tokenizer instead of Lark's
# contextual lexer: that lexer compiles one large regular expression per parser state on first use (about 30 ms a
# process, more than the whole parse), while the tokenizer below needs a handful of small ones. It is contextual in
# the same way -- it asks the parser state which terminals fit -- and it takes every spelling and pattern from the
# grammar's own terminal definitions, so vt.lark stays the reference.


class _LexError(Exception):
    """Nothing the parser can take starts at ``pos_in_stream`` (a character or a word that fits no terminal)."""

    def __init__(self, pos: int, state) -> None:
        super().__init__(pos)
        self.pos_in_stream = pos
        self.state = state
        self.token = None


@dataclass
class _Engine:
    parse_conf: object  # lark ParseConf of the `line` rule: tables and tree-building callbacks
    state_cls: type
    token_cls: type
    unexpected_token: type
    keywords: dict  # spelling (words joined by one space) -> terminal name
    first_words: frozenset  # first words of two-word keywords
    patterns: dict  # value terminal -> compiled pattern (INT, NUMBER, SIZE, PERCENT, WORD, STRING)


_ENGINE: _Engine | None = None
# A keyword terminal's regex in vt.lark: `word(?!...)`, `word[^\S\n]+word(?!...)` or `words?(?!...)` (Lark keeps
# `\n` as a real newline in the pattern text).
_KEYWORD_PATTERN = re.compile(r"^([a-z]+)(?:\[\^\\S(?:\\n|\n)\]\+([a-z]+))?(s\?)?\(\?!")
_BLANKS = re.compile(r"[^\S\n]+")


def grammar_sha256() -> str:
    """SHA-256 of the shipped grammar; the generated standalone parser records the one it was built from."""
    return hashlib.sha256(GRAMMAR_PATH.read_bytes()).hexdigest()


def _engine() -> _Engine:
    """Load the LALR tables: the generated standalone module if it is up to date, else lark and vt.lark."""
    global _ENGINE
    if _ENGINE is not None:
        return _ENGINE
    try:
        from vtc.compiler import _vt_parser as standalone

        fresh = standalone.GRAMMAR_SHA256 == grammar_sha256()
    except (ImportError, AttributeError, OSError):
        fresh = False
    if fresh:
        lark_parser = standalone.Lark_StandAlone()
        module = standalone
    else:
        import lark
        from lark.parsers import lalr_parser_state as module  # ParseConf, ParserState

        lark_parser = lark.Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                                start="line")
    lalr = lark_parser.parser.parser.parser  # ParsingFrontend -> LALR_Parser -> _Parser
    keywords, first_words, patterns = {}, set(), {}
    for terminal in lark_parser.terminals:
        pattern = terminal.pattern.value
        if terminal.name in ("INT", "NUMBER", "SIZE", "PERCENT", "WORD", "STRING"):
            patterns[terminal.name] = re.compile(pattern)
            continue
        m = _KEYWORD_PATTERN.match(pattern)
        if m is None:
            continue  # the comma and the ignored blanks
        spelling = m.group(1) + (" " + m.group(2) if m.group(2) else "")
        keywords[spelling] = terminal.name
        if m.group(3):
            keywords[spelling + "s"] = terminal.name
        if m.group(2):
            first_words.add(m.group(1))
    _ENGINE = _Engine(module.ParseConf(lalr.parse_table, lalr.callbacks, "line"), module.ParserState,
                      module.Token, module.UnexpectedToken, keywords, frozenset(first_words), patterns)
    return _ENGINE


def _parse_range(code: str, start: int, end: int):
    """Parse code[start:end] with the `line` rule; token positions are indexes into code.
    Raises the parser's UnexpectedToken or _LexError."""
    engine = _engine()
    state = engine.state_cls(engine.parse_conf, None)
    table = engine.parse_conf.states
    token_cls = engine.token_cls
    i = start
    while True:
        m = _BLANKS.match(code, i, end)
        if m:
            i = m.end()
        if i >= end:
            return state.feed_token(token_cls("$END", "", end, 1, end + 1, 1, end + 1, end), True)
        token = _next_token(code, i, end, table[state.position], engine, state)
        state.feed_token(token)
        i = token.end_pos


def _next_token(code: str, i: int, end: int, fits, engine: _Engine, state):
    """The token at code[i] that the parser state can take (``fits``: its terminals), or the most likely one."""
    make = engine.token_cls
    if code[i] == ",":
        return make("COMMA", ",", i, 1, i + 1, 1, i + 2, i + 1)
    if code[i] == '"':
        m = engine.patterns["STRING"].match(code, i, end)
        if m is None:
            raise _LexError(i, state)
        return make("STRING", m.group(), i, 1, i + 1, 1, m.end() + 1, m.end())
    m = _CHUNK_RE.match(code, i, end)
    if m is None:
        raise _LexError(i, state)
    chunk, chunk_end = m.group(), m.end()
    candidates = []
    if chunk in engine.first_words:  # `learning rate`, `train for`, ...
        blanks = _BLANKS.match(code, chunk_end, end)
        second = _CHUNK_RE.match(code, blanks.end(), end) if blanks else None
        if second and f"{chunk} {second.group()}" in engine.keywords:
            name = engine.keywords[f"{chunk} {second.group()}"]
            candidates.append((name, code[i:second.end()], second.end()))
    if chunk in engine.keywords:
        candidates.append((engine.keywords[chunk], chunk, chunk_end))
    for name in ("INT", "NUMBER", "SIZE", "PERCENT", "WORD"):
        if engine.patterns[name].fullmatch(chunk):
            candidates.append((name, chunk, chunk_end))
    if not candidates:
        raise _LexError(i, state)
    # Keywords win where they fit (they come first); otherwise the first kind of value that fits.
    name, text, stop = next((c for c in candidates if c[0] in fits), candidates[0])
    return make(name, text, i, 1, i + 1, 1, stop + 1, stop)


# --- decoding -------------------------------------------------------------------------------------------------------


def decode_source(data: bytes, file: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes of a recipe file -> text: drops a UTF-8 BOM, turns CRLF and CR into LF, reports invalid UTF-8 (VT002)
    at its line and column, and NUL bytes (VT003, a binary file). Returns (None, diagnostics) on failure."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        return None, [_binary_diagnostic(text, file)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        bad = data[exc.start : exc.end]
        return None, [error(
            "VT002",
            f"this file is not valid UTF-8 text (byte {bad.hex(' ')} at line {line}, column {column})",
            Span(file, line, column, line, column + 1),
            help="save the recipe as UTF-8 text (most editors offer 'UTF-8' in their 'Save as' dialog)",
        )]
    return text.replace("\r\n", "\n").replace("\r", "\n"), []


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of text[index], counting lines as str.splitlines() does."""
    start = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if index < start + len(line):
            return number, index - start + 1
        start += len(line)
    return max(1, len(text.splitlines())), 1  # pragma: no cover - index is inside text


def _binary_diagnostic(text: str, file: str) -> Diagnostic:
    line, column = _position(text, text.index("\x00"))
    return error(
        "VT003",
        "this file contains null bytes: it looks like a binary file, not a recipe",
        Span(file, line, column, line, column + 1),
        help=f"a recipe is a text file with clauses such as `{ONE_LINE_EXAMPLE}`",
    )


# --- parsing --------------------------------------------------------------------------------------------------------


@dataclass
class _Line:
    number: int
    code: str  # the line without its comment; an unterminated string is closed at the end
    comment: ast.Comment | None
    diagnostics: list


def parse_source(text: str, file: str, *, partial: bool = False) -> tuple[ast.Recipe | None, list[Diagnostic]]:
    """Parse one recipe file's text. Returns (Recipe, diagnostics) when there is no syntax error, else
    (None, diagnostics) -- or, with ``partial=True``, the Recipe of the statements that did parse.

    Spans are 1-based, end column exclusive, lines as ``str.splitlines()`` counts them (the renderer's way),
    ``file`` as given. Never raises on any text.
    """
    try:
        return _parse_source(text, file, partial)
    except RecursionError:  # pragma: no cover - no input is known to reach this; kept as a last resort
        return None, [error("VT099", "this recipe is too deeply nested to read", Span(file, 1, 1, 1, 1))]


def _parse_source(text: str, file: str, partial: bool) -> tuple[ast.Recipe | None, list[Diagnostic]]:
    if text.startswith("\ufeff"):
        # A BOM is invisible in editors; columns on line 1 still count it so that carets line up with the text.
        text = " " + text[1:]
    if "\x00" in text:
        return None, [_binary_diagnostic(text, file)]
    statements: list = []
    comments: list[ast.Comment] = []
    diagnostics: list[Diagnostic] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if len(diagnostics) >= _MAX_ERRORS:
            diagnostics.append(note("VT009", f"stopped after {_MAX_ERRORS} syntax errors",
                                    Span(file, number, 1, number, 1),
                                    help="fix these first, then run `vtc check` again"))
            break
        if len(raw) > _MAX_LINE:
            diagnostics.append(error(
                "VT007",
                f"line {number} is {len(raw):,} characters long; vtc reads lines of up to {_MAX_LINE:,}",
                Span(file, number, _MAX_LINE + 1, number, _MAX_LINE + 2),
                help="one clause takes one line; is this a data file rather than a recipe?",
            ))
            continue
        line = _scan_line(raw, number, file)
        diagnostics.extend(line.diagnostics)
        if line.comment is not None:
            comments.append(line.comment)
        if line.code.strip():
            found, problems = _parse_line(line.code, number, file)
            statements.extend(found)
            # An unterminated string was closed past the end of the line: keep carets on the line itself.
            diagnostics.extend(_within(d, len(raw)) for d in problems)
    if not statements and not diagnostics:
        only_comments = bool(comments)
        diagnostics.append(error(
            "VT001",
            "this recipe has only comments" if only_comments else "this recipe is empty",
            Span(file, 1, 1, 1, 1),
            help=f"a recipe needs at least a `finetune ... on ...` clause and a `from` clause, e.g. "
                 f"`{ONE_LINE_EXAMPLE}`",
        ))
    if any(d.is_error for d in diagnostics) and not partial:
        return None, diagnostics
    return ast.Recipe(file, tuple(statements), tuple(comments)), diagnostics


def _within(diagnostic: Diagnostic, width: int) -> Diagnostic:
    """The diagnostic with its span cut to a line of ``width`` characters (a caret may stand just after it)."""
    span = diagnostic.span
    if span is None or span.end_column <= width + 1:
        return diagnostic
    end = max(width + 1, span.column + 1) if span.column <= width + 1 else span.column + 1
    return dataclasses.replace(diagnostic, span=dataclasses.replace(span, end_column=end))


def _scan_line(raw: str, number: int, file: str) -> _Line:
    """Split a line into code and comment; report control characters (VT003) and an unterminated string (VT005)."""
    diagnostics = []
    code_end = len(raw)
    comment = None
    for m in _SCAN_RE.finditer(raw):
        piece = m.group()
        if piece == "#":
            code_end = m.start()
            comment = ast.Comment(raw[m.end():], Span(file, number, m.start() + 1, number, len(raw) + 1),
                                  own_line=not raw[: m.start()].strip())
            break
        if piece.startswith('"') and (len(piece) == 1 or not _STRING_RE.fullmatch(piece)):
            col = m.start() + 1
            diagnostics.append(error(
                "VT005",
                "this text in double quotes is never closed",
                Span(file, number, col, number, col + 1),
                help='end it with `"` on the same line (a clause never spans lines); to put a quote inside the '
                     'text write `\\"`',
            ))
            # Close it, so that the rest of the clause is still checked; a trailing backslash would escape the
            # closing quote, so it is doubled.
            code_end = len(raw)
            raw += '\\"' if (len(raw) - len(raw.rstrip("\\"))) % 2 else '"'
            break
    code = raw[:code_end] if comment is not None else raw
    # Control characters are harmless in a comment; in the code they are reported once a line and read as blanks.
    control = _CONTROL_RE.search(code)
    if control:
        col = control.start() + 1
        diagnostics.append(error(
            "VT003",
            f"invisible control character U+{ord(control.group()):04X} in the recipe",
            Span(file, number, col, number, col + 1),
            help="delete it (retype the line if you cannot see it)",
        ))
        code = _CONTROL_RE.sub(" ", code)
    return _Line(number, code, comment, diagnostics)


def _parse_line(code: str, number: int, file: str) -> tuple[list, list[Diagnostic]]:
    """Parse the code of one line; after an error, keep what parsed and resume at the next clause keyword."""
    errors = (_engine().unexpected_token, _LexError)
    statements: list = []
    diagnostics: list[Diagnostic] = []
    start = 0
    while start < len(code) and len(diagnostics) < _MAX_ERRORS_PER_LINE:
        try:
            tree = _parse_range(code, start, len(code))
        except errors as exc:
            problem = _explain(exc, code, 0, number, file)
            diagnostics.extend(problem.diagnostics)
            if problem.clause_start > start:
                # Everything before the broken clause parsed: keep those statements.
                try:
                    tree = _parse_range(code, start, problem.clause_start)
                except errors:  # pragma: no cover - the parser had accepted this prefix
                    tree = None
                if tree is not None:
                    found, bad = _build(tree, 0, number, file)
                    statements.extend(found)
                    diagnostics.extend(bad)
            if problem.resume is None or problem.resume <= start:
                break
            start = problem.resume
            continue
        found, bad = _build(tree, 0, number, file)
        statements.extend(found)
        diagnostics.extend(bad)
        break
    return statements, diagnostics


# --- parse tree -> AST ----------------------------------------------------------------------------------------------


def _build(tree, offset: int, number: int, file: str) -> tuple[list, list[Diagnostic]]:
    out, diagnostics = [], []
    for node in tree.children:
        out.append(_statement(node, offset, number, file, diagnostics))
    return out, diagnostics


def _tokens(node) -> list:
    """Tokens of a subtree, in order; None (an absent optional part) is skipped."""
    if node is None:
        return []
    if hasattr(node, "children"):
        found = []
        for child in node.children:
            found.extend(_tokens(child))
        return found
    return [node]


def _span(first, last, offset: int, number: int, file: str) -> Span:
    return Span(file, number, offset + first.column, number, offset + last.end_column)


def _statement(node, offset: int, number: int, file: str, diagnostics: list):
    toks = _tokens(node)
    span = _span(toks[0], toks[-1], offset, number, file)

    def value(tok) -> ast.Value:
        return _value(tok, offset, number, file, diagnostics)

    kind = node.data
    if kind == "finetune":
        on = next(i for i, t in enumerate(toks) if t.type == "ON")
        return ast.Finetune(tuple(value(t) for t in toks[1:on]), value(toks[on + 1]), span)
    if kind == "include":
        return ast.Include(value(toks[1]), span)
    if kind == "using":
        return ast.Using(value(toks[1]), span)
    if kind == "precision":
        return ast.Precision(value(toks[1]), span)
    if kind == "flags":
        return ast.Flags(toks[0].type == "WITH", tuple(value(t) for t in toks[1:]), span)
    if kind in ("from_", "evaluate_on"):
        split = value(toks[3]) if len(toks) > 3 else None
        cls = ast.From if kind == "from_" else ast.EvaluateOn
        return cls(value(toks[1]), split, span)
    if kind == "holdout":
        return ast.Holdout(value(toks[1]), span)
    if kind == "ask":
        return ast.Ask(value(toks[1]), span)
    if kind == "system":
        return ast.System(value(toks[1]), span)
    if kind == "answer":
        column = value(toks[2]) if len(toks) > 2 else None
        return ast.Answer(value(toks[1]), column, span)
    if kind == "images":
        return ast.Images(value(toks[2]), span)
    if kind == "resize":
        return ast.Resize(value(toks[1]), span)
    if kind == "bad_rows":
        return ast.BadRows(value(toks[1]), span)
    if kind == "window":
        return ast.Window(value(toks[1]), value(toks[2]), span)
    if kind == "tiff_pages":
        return ast.TiffPages(value(toks[1]), span)
    if kind == "checkpoint":
        return ast.Checkpoint(value(toks[1]), value(toks[2]), span)
    if kind == "lora":
        settings = tuple(ast.Setting(value(toks[i]), value(toks[i + 1])) for i in range(1, len(toks), 2))
        return ast.Lora(settings, span)
    if kind == "train_for":
        return ast.TrainFor(value(toks[1]), value(toks[2]), span)
    if kind == "number":
        return ast.Number(_CLAUSE_TERMINALS[toks[0].type], value(toks[1]), span)
    if kind == "warmup":
        if toks[1].type == "PERCENT":
            amount = value(toks[1])
            pct = Span(file, number, amount.span.end_column - 1, number, amount.span.end_column)
            return ast.Warmup(amount, ast.Value("%", pct), span)
        return ast.Warmup(value(toks[1]), value(toks[2]), span)
    if kind == "choice":
        return ast.Choice(_CLAUSE_TERMINALS[toks[0].type], value(toks[1]), span)
    if kind == "metric":
        return ast.Metric(tuple(value(t) for t in toks[1:]), span)
    if kind == "save_to":
        return ast.SaveTo(value(toks[1]), span)
    if kind == "export":
        return ast.Export(tuple(value(t) for t in toks[1:]), span)
    raise AssertionError(f"grammar rule without an AST node: {kind}")  # pragma: no cover


_ESCAPE_RE = re.compile(r"\\(.)")


def _value(tok, offset: int, number: int, file: str, diagnostics: list) -> ast.Value:
    span = _span(tok, tok, offset, number, file)
    text = str(tok)
    if tok.type == "STRING":
        body = text[1:-1]
        for m in _ESCAPE_RE.finditer(body):
            if m.group(1) not in '"\\':
                col = span.column + 1 + m.start()
                diagnostics.append(error(
                    "VT006",
                    f"`\\{m.group(1)}` is not allowed inside double quotes",
                    Span(file, number, col, number, col + 2),
                    help='inside double quotes write `\\"` for a quote and `\\\\` for a backslash; '
                         "in paths, use forward slashes (`C:/data`)",
                ))
        return ast.Value(_ESCAPE_RE.sub(lambda m: m.group(1), body), span, quoted=True)
    if tok.type == "PERCENT":
        return ast.Value(text[:-1], span)
    if tok.type in _CLAUSE_TERMINALS or tok.type in _SUB_KEYWORDS:
        return ast.Value(" ".join(text.split()), span)  # `learning   rate` -> "learning rate"
    return ast.Value(text, span)


# --- syntax errors in plain words -----------------------------------------------------------------------------------


@dataclass
class _Problem:
    diagnostics: list
    clause_start: int  # index in the line where the broken clause starts (statements before it are fine)
    resume: int | None  # index in the line where parsing goes on, or None to give up on this line


def _accepts(state) -> set[str]:
    """The terminals the parser state can really take next (LALR tables over-approximate the expected set)."""
    engine = _engine()
    found = set()
    for name in list(engine.parse_conf.states[state.position]):
        if not name.isupper():
            continue
        trial = state.copy(deepcopy_values=False)
        try:
            trial.feed_token(engine.token_cls(name, ""), is_end=name == "$END")
        except (engine.unexpected_token, AssertionError):
            continue
        found.add(name)
    return found


def _describe(names, clause: str | None, after_on: bool) -> str:
    """A set of terminals as a phrase: 'a whole number', '`,` or `on`'."""
    words = []
    for name in sorted(names, key=_order):
        if name == "$END" or name in _CLAUSE_TERMINALS:
            continue
        if name == "WORD":
            if clause == "finetune" and after_on:
                phrase = "a model name"
            elif clause in ("from", "evaluate on") and after_on:
                phrase = "a split name (like `train`)"
            else:
                phrase = _WORD_MEANING.get(clause or "", "a name")
        elif name == "STRING":
            if "WORD" in names:
                continue  # a name or a path may always be quoted
            phrase = _TERMINAL_WORDS[name]
        elif name == "INT" and clause == "resize":
            phrase = "a number of pixels"
        elif name == "ON":
            phrase = "`on` and a model name"
        else:
            phrase = _TERMINAL_WORDS.get(name, name.lower())
        if phrase not in words:
            words.append(phrase)
    if not words:
        return "nothing more"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


_ORDER = ["WORD", "STRING", "INT", "NUMBER", "SIZE", "PERCENT", "COMMA", "ON", "SPLIT", "CAPTIONS", "FOLDERS",
          "COLUMN", "NONE", "RANK", "ALPHA", "DROPOUT", "EPOCHS", "STEPS"]


def _order(name: str):
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def _thing_at(code: str, i: int) -> tuple[str, str, int]:
    """What stands at index i: (kind, text, end) with kind in end | string | keyword | word | char."""
    while i < len(code) and code[i].isspace():
        i += 1
    if i >= len(code):
        return "end", "", i
    if code[i] == '"':
        m = _STRING_RE.match(code, i)
        end = m.end() if m else len(code)
        return "string", code[i:end], end
    m = _KEYWORD_RE.match(code, i)
    if m:
        return "keyword", " ".join(m.group().split()), m.end()
    m = _CHUNK_RE.match(code, i)
    if m:
        return "word", m.group(), m.end()
    return "char", code[i], i + 1


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explain(exc, code: str, offset: int, number: int, file: str) -> _Problem:
    """Turn a Lark error (in code[offset:]) into a diagnostic in user words and a place to resume."""
    state = getattr(exc, "state", None)
    token = getattr(exc, "token", None)
    if token is not None and getattr(token, "type", None) == "$END":
        pos = len(code)
    elif token is not None and getattr(token, "start_pos", None) is not None:
        pos = offset + token.start_pos
    else:
        pos = offset + getattr(exc, "pos_in_stream", 0)

    # The clause being read: the last clause keyword on the parser's stack.
    stack_tokens = _tokens_of_stack(state.value_stack) if state is not None else []
    clause, clause_start, last_end = None, pos, None
    for tok in reversed(stack_tokens):
        if tok.type in _CLAUSE_TERMINALS:
            clause, clause_start = _CLAUSE_TERMINALS[tok.type], offset + tok.start_pos
            break
    if stack_tokens:
        last_end = offset + stack_tokens[-1].end_pos
    accepts = _accepts(state) if state is not None else set()
    complete = "$END" in accepts
    after_on = any(t.type in ("ON", "SPLIT", "COLUMN") for t in stack_tokens if offset + t.start_pos >= clause_start)

    kind, text, end = _thing_at(code, pos)
    if kind != "end":
        pos = len(code) - len(code[pos:].lstrip())
    so_far = " ".join(code[clause_start:last_end].split()) if clause and last_end else ""
    example = _EXAMPLES.get(clause or "", "")

    def span_at(a: int, b: int) -> Span:
        return Span(file, number, a + 1, number, max(b, a + 1) + 1)

    def next_clause(after: int) -> int | None:
        m = _KEYWORD_RE.search(_mask_strings(code), after)
        return m.start() if m else None

    if kind == "char":
        return _Problem([_bad_character(text, span_at(pos, pos + 1), clause, example)], clause_start,
                        next_clause(pos + 1))

    if clause == "finetune" and [t.type for t in stack_tokens[-2:]] == ["FINETUNE", "WORD"] \
            and str(stack_tokens[-1]) == "on":
        # `finetune on qwen2.5-vl`: the lexer read `on` as the first part.
        at = offset + stack_tokens[-2].end_pos
        diag = error("VT011", "missing the parts to train after `finetune`", Span(file, number, at + 1, number, at + 1),
                     help=f"name what trains (vision, language, attention, mlp or all), like `{example}`")
        return _Problem([diag], clause_start, next_clause(end))

    if clause is not None and not complete:
        wanted = _describe(accepts, clause, after_on)
        if kind in ("end", "keyword"):
            if "COMMA" in accepts and len(accepts) > 1:
                wanted = _describe(accepts - {"COMMA"}, clause, after_on)  # a list may simply end here
            at = last_end if last_end is not None else pos
            diag = error(
                "VT011",
                f"missing {wanted} after `{_clip(so_far)}`",
                Span(file, number, at + 1, number, at + 1),
                help=f"write {wanted}, for example `{example}`",
            )
            return _Problem([diag], clause_start, pos if kind == "keyword" else None)
        keywords = [_SUB_KEYWORDS[n] for n in accepts if n in _SUB_KEYWORDS]
        close = suggest(text, keywords) if keywords and kind == "word" else None
        if close:
            help_text = f"did you mean `{close}`? (like `{example}`)"
        elif kind == "string" and "WORD" in accepts and "STRING" not in accepts:
            help_text = f"write this name without double quotes, like `{example}`"
        elif clause == "finetune" and "COMMA" in accepts:
            help_text = f"separate the parts with commas, then write `on` and the model: `{example}`"
        else:
            help_text = f"write it like `{example}`"
        diag = error(
            "VT012",
            f"expected {wanted} after `{_clip(so_far)}`, found `{_clip(text)}`",
            span_at(pos, end),
            help=help_text,
        )
        return _Problem([diag], clause_start, next_clause(end))

    # The clause so far is complete (or no clause has started): the thing at pos cannot start a clause.
    if kind == "word":
        guess = _guess_clause(text, code[end:])
        if guess and "COMMA" in accepts and guess != text.rstrip(":=").lower():
            # `with responses_only rslora`: more likely a missing comma than a misspelled `lora` clause.
            diag = error(
                "VT013",
                f"unexpected `{_clip(text)}` after `{_clip(so_far)}`",
                span_at(pos, end),
                help=f"separate several values with commas, like `{example}`; or, if `{_clip(text)}` starts a new "
                     f"clause, did you mean `{guess}`?",
            )
            return _Problem([diag], pos, next_clause(end))
        if guess or (clause is None and (text[0].isalpha() or text[0] == "_")):
            diag = error("VT010", f"unknown clause `{_clip(text)}`", span_at(pos, end),
                         help=_clause_help(text, guess))
            return _Problem([diag], pos, next_clause(end))
    if clause is None:  # a number, a string or a stray keyword at the start of a clause
        diag = error(
            "VT010",
            f"a clause cannot start with `{_clip(text)}`",
            span_at(pos, end),
            help=f"each clause starts with a keyword, like `{ONE_LINE_EXAMPLE}`",
        )
        return _Problem([diag], pos, next_clause(end))
    last = str(stack_tokens[-1]) if stack_tokens else ""
    subs = [_SUB_KEYWORDS[n] for n in sorted(accepts, key=_order) if n in _SUB_KEYWORDS]
    close = suggest(text, subs) if subs and kind == "word" else None
    if close:
        help_text = f"did you mean `{close}`? (like `{example}`)"
    elif "COMMA" in accepts:
        help_text = f"separate several values with commas, like `{example}`"
    elif kind == "word" and stack_tokens and stack_tokens[-1].type == "WORD":
        help_text = (f"if `{_clip(last + ' ' + text)}` is one name with spaces, put it in double quotes: "
                     f"`\"{_clip(last + ' ' + text)}\"`; otherwise start a new clause with its keyword")
    elif subs:
        options = _describe({n for n in accepts if n in _SUB_KEYWORDS}, clause, after_on)
        help_text = f"after `{_clip(so_far)}` comes {options} or a new clause, like `{example}`"
    else:
        help_text = f"`{clause}` takes one value, like `{example}`"
    diag = error(
        "VT013",
        f"unexpected `{_clip(text)}` after `{_clip(so_far)}`",
        span_at(pos, end),
        help=help_text,
    )
    return _Problem([diag], pos, next_clause(end))


def _tokens_of_stack(stack) -> list:
    found = []
    for item in stack:
        if isinstance(item, list):
            for sub in item:
                found.extend(_tokens(sub))
        else:
            found.extend(_tokens(item))
    return [t for t in found if hasattr(t, "type")]


def _mask_strings(code: str) -> str:
    """The line with the insides of strings blanked, so that a keyword inside text does not count."""
    return _STRING_RE.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', code)


def _guess_clause(word: str, rest: str) -> str | None:
    """The clause keyword a misspelled word most likely means (two-word keywords: also try the next word)."""
    choices = list(CLAUSE_KEYWORDS)
    stripped = word.rstrip(":=")
    if stripped.lower() in CLAUSE_KEYWORDS:
        return stripped.lower()
    following = _CHUNK_RE.match(rest.lstrip())
    if following:
        pair = suggest(f"{word} {following.group()}", [c for c in choices if " " in c], cutoff=0.75)
        if pair:
            return pair
    best = suggest(word, choices)
    if best:
        return best
    firsts = {c.split()[0]: c for c in choices if " " in c}
    first = suggest(word, list(firsts), cutoff=0.75)
    return firsts[first] if first else None


def _clause_help(word: str, guess: str | None) -> str:
    if guess and word.rstrip(":=").lower() == guess:
        if word.lower() != word:
            return f"keywords are lower-case: write `{_EXAMPLES[guess]}`"
        return f"write `{_EXAMPLES[guess]}`, without `{word[len(guess):]}`"
    if guess:
        return f"did you mean `{guess}`? (like `{_EXAMPLES[guess]}`)"
    return ("each clause starts with a keyword such as `finetune`, `from`, `resize`, `batch` or `train for` "
            "(docs/language.md lists them all); to write a comment, start it with `#`")


def _bad_character(char: str, span: Span, clause: str | None, example: str) -> Diagnostic:
    name = unicodedata.name(char, f"U+{ord(char):04X}")
    helps = {
        "'": 'use double quotes for text: `ask "Describe this image."`',
        "\u201c": "use plain double quotes `\"`, not curly quotes (a word processor may have changed them)",
        "\u201d": "use plain double quotes `\"`, not curly quotes (a word processor may have changed them)",
        "\u2018": 'use plain double quotes `"` for text, not curly quotes',
        "\u2019": 'use plain double quotes `"` for text, not curly quotes',
        "=": f"write the value after the keyword without `=`, like `{example or 'batch 2'}`",
        ";": "clauses are separated by spaces or new lines; no `;` is needed",
        ",": "a `,` only separates values in a list, like `with responses_only, rslora`",
    }
    display = char if char.isprintable() else f"U+{ord(char):04X}"
    return error(
        "VT004",
        f"unexpected character `{display}` ({name.lower()})",
        span,
        help=helps.get(char, "names and paths may use letters, digits and `_ . / ~ : + @ -`; put anything else "
                             "in double quotes"),
    )
