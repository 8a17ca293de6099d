"""What `vtc lsp` knows about one buffer: pure functions of the buffer's text and path, no pygls.

Every answer is plain LSP-shaped data (dicts with ``range``, ``message``, ``label`` ...), so that the tests can call
these functions in-process and the server (vtc.lsp.server) only converts and sends them. Every function takes any
text whatsoever and never raises on it: a compile that raises anyway (a bug in vtc) becomes a VT567 diagnostic.

Positions: the compiler counts lines as ``str.splitlines()`` does and columns in characters (1-based); LSP counts
lines at ``\\n``, ``\\r\\n`` and ``\\r`` only, and characters in UTF-16 code units (0-based). ``Text`` converts both
ways through the absolute offset in the text.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import OrderedDict
from functools import lru_cache

from vtc.diagnostics import Diagnostic, Severity, Span, error

# LSP DiagnosticSeverity: 1 Error, 2 Warning, 3 Information (a note), 4 Hint.
SEVERITY = {Severity.ERROR: 1, Severity.WARNING: 2, Severity.NOTE: 3}
# LSP CompletionItemKind: 14 Keyword, 12 Value, 13 Enum, 10 Property, 17 File, 19 Folder, 5 Field.
KEYWORD, VALUE, ENUM_MEMBER, PROPERTY, FILE, FOLDER = 14, 12, 20, 10, 17, 19
# At most this many files of one folder are offered for a path (a data folder of 100,000 images is no menu).
MOST_PATHS = 200


class Text:
    """A buffer's text with the two line countings (the compiler's and LSP's) and conversions between them."""

    def __init__(self, text: str, encoding: str = "utf-16") -> None:
        self.text = text
        self.encoding = encoding  # the position encoding agreed with the client: utf-16 (LSP's default), utf-8, utf-32
        # Start offsets of the compiler's lines (str.splitlines, as parser.parse_source counts them).
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))
        # Start offsets of LSP's lines.
        self.lsp_starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]

    def offset(self, line: int, column: int) -> int:
        """The offset of a compiler position (1-based line and column), clamped to the text."""
        if line < 1:
            return 0
        if line > len(self.starts) - 1:
            return len(self.text)
        start = self.starts[line - 1]
        end = self.starts[line] if line < len(self.starts) else len(self.text)
        return min(start + max(column - 1, 0), end)

    def position(self, offset: int) -> dict:
        """The LSP position (0-based line, UTF-16 character) of an offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.lsp_starts, offset) - 1
        start = self.lsp_starts[line]
        offset = min(offset, start + len(self.lsp_line(line)))  # never inside a line break (`\r|\n`)
        return {"line": line, "character": self.units(self.text[start:offset])}

    def lsp_line(self, line: int) -> str:
        """The text of LSP line ``line`` (0-based) without its line break; "" past the end."""
        if line < 0 or line >= len(self.lsp_starts):
            return ""
        start = self.lsp_starts[line]
        end = self.lsp_starts[line + 1] if line + 1 < len(self.lsp_starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def offset_of(self, line: int, character: int) -> int:
        """The offset of an LSP position (a character count past the line's end stops at its end)."""
        if line >= len(self.lsp_starts):
            return len(self.text)
        start = self.lsp_starts[max(line, 0)]
        return start + self.index(self.lsp_line(line), character)

    def compiler_position(self, offset: int) -> tuple[int, int]:
        """(line, column), 1-based, of an offset in the compiler's counting."""
        line = bisect.bisect_right(self.starts, offset) - 1
        line = min(line, max(len(self.starts) - 2, 0))
        return line + 1, offset - self.starts[line] + 1

    def range(self, span: Span) -> dict:
        """The LSP range of a compiler span (a span without a line is the first line's start; one without an end
        covers one character)."""
        if not span.line:
            return {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}
        start = self.offset(span.line, span.column or 1)
        if span.end_column and (span.end_line, span.end_column) > (span.line, span.column):
            end = self.offset(span.end_line or span.line, span.end_column)
        else:
            end = min(start + 1, self.offset(span.line + 1, 1))
        return {"start": self.position(start), "end": self.position(max(end, start))}

    def whole(self) -> dict:
        return {"start": {"line": 0, "character": 0}, "end": self.position(len(self.text))}

    def units(self, text: str) -> int:
        """The length of ``text`` in the position encoding's code units."""
        if self.encoding == "utf-32":
            return len(text)
        if self.encoding == "utf-8":
            return len(text.encode("utf-8", "surrogatepass"))
        return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)

    def index(self, line: str, character: int) -> int:
        """The string index of a position's character on a line (inside a character's code units: its end)."""
        units = 0
        for i, c in enumerate(line):
            if units >= character:
                return i
            units += self.units(c)
        return len(line)


# --- diagnostics ----------------------------------------------------------------------------------------------------


# The last compile of each buffer, path -> (text, CompileResult, the stamps of the files it included): diagnostics
# compile a buffer on each keystroke, and a hover on the same text reads that compile instead of a second one. Only
# the last text of a buffer is kept (a keystroke changes it; bench/lsp_latency.py's alternating edits are each a
# real compile), for the eight buffers used last (a few open recipes).
_COMPILED: OrderedDict = OrderedDict()
_MOST_COMPILED = 8


def compile_buffer(text: str, path: str):
    """The real compile of a buffer (vtc.compiler.pipeline.compile_source): the buffer's path as its file, its
    folder as the base of relative paths, includes read from disk by the normal loader. The same text compiled
    again (the buffer's last text) gives the last result while no included file has changed on disk (see
    `forget`)."""
    from vtc.compiler.pipeline import compile_source

    hit = _COMPILED.get(path)
    if hit is not None and hit[0] == text and hit[2] == _stamps(hit[1].sources, path):
        _COMPILED.move_to_end(path)
        return hit[1]
    result = compile_source(text, path, base_dir=os.path.dirname(os.path.abspath(path)))
    _COMPILED[path] = (text, result, _stamps(result.sources, path))
    _COMPILED.move_to_end(path)
    while len(_COMPILED) > _MOST_COMPILED:
        _COMPILED.popitem(last=False)
    return result


def forget(path: str) -> None:
    """Drop the last compile of a buffer kept by compile_buffer (on save: what else the compile looks at on disk, a
    data folder or a model's config.json, may have changed too)."""
    _COMPILED.pop(path, None)


def _stamps(sources: dict, path: str) -> tuple:
    """(file, modification time, size) of each file a compile read besides the buffer itself."""
    out = []
    for name in sorted(sources):
        if name != path:
            try:
                st = os.stat(name)
                out.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, None, None))
    return tuple(out)


def internal_error(path: str, exc: BaseException) -> Diagnostic:
    """What the editor shows when analysing the buffer raised: a bug in vtc, said so, instead of a dead server."""
    return error("VT567", f"vtc lsp could not analyse this file: {type(exc).__name__}: {exc}", Span(path, 1, 1),
                 help="this is a bug in vtc; `vtc check` on the saved file may say more; please report it with "
                      "the recipe")


def diagnostics(text: str, path: str, encoding: str = "utf-16") -> list[dict]:
    """The LSP diagnostics of a buffer: every diagnostic of `vtc check` in this file (code, severity, message,
    help in the message and in ``data``), and every error of an included file on the `include` line that leads to
    it."""
    doc = Text(text, encoding)
    try:
        result = compile_buffer(text, path)
        found = result.diagnostics
        includes = _include_lines(text, path, result.sources)
    except Exception as exc:  # noqa: BLE001 - the server must outlive any bug: the bug is shown as VT567
        found, includes = [internal_error(path, exc)], {}
    out = []
    for d in found:
        if d.span is None or d.span.file == path:
            out.append(_lsp_diagnostic(d, doc, d.span or Span(path)))
        elif d.is_error and d.span.file in includes:
            where = includes[d.span.file]
            shown = f"{os.path.relpath(d.span.file, os.path.dirname(path))}:{d.span.line}"
            out.append(_lsp_diagnostic(d, doc, where, prefix=f"in {shown}: ", fix=False))
    return out


def _lsp_diagnostic(d: Diagnostic, doc: Text, span: Span, prefix: str = "", fix: bool = True) -> dict:
    message = prefix + d.message + (f"\nhelp: {d.help}" if d.help else "")
    data = {"help": d.help}
    suggestion = getattr(d, "suggestion", None)
    if fix and suggestion and span.line and span.end_line == span.line:
        data["suggestion"] = suggestion
    out = {"range": doc.range(span), "severity": SEVERITY[d.severity], "code": d.code, "source": "vtc",
           "message": message, "data": data}
    related = [{"location": {"uri": uri_of(s.file), "range": doc.range(s) if s.file == span.file else
                             {"start": {"line": max(s.line - 1, 0), "character": max(s.column - 1, 0)},
                              "end": {"line": max(s.line - 1, 0), "character": max(s.column - 1, 0)}}},
                "message": label} for s, label in d.related]
    if related:
        out["relatedInformation"] = related
    return out


def uri_of(path: str) -> str:
    """The `file:` URI of a file path (made absolute first), as LSP locations name files."""
    from pathlib import Path

    return Path(os.path.abspath(path)).as_uri()


_INCLUDE = re.compile(r'^\s*include\s+("(?:\\.|[^"\\])*"|\S+)', re.M)


def _include_lines(text: str, path: str, sources: dict[str, str]) -> dict[str, Span]:
    """Each file this buffer includes, directly or through other includes, -> the span of the buffer's `include`
    line that leads to it."""
    from vtc.compiler.parser import parse_source
    from vtc.compiler import ast

    recipe, _ = parse_source(text, path, partial=True)
    out: dict[str, Span] = {}
    for st in recipe.statements if recipe else ():
        if isinstance(st, ast.Include):
            target = _target(path, st.path.text)
            stack = [target]
            while stack:  # the files that one includes, found in their text as read by the compile
                name = stack.pop()
                if name in out:
                    continue
                out[name] = st.span
                for m in _INCLUDE.finditer(sources.get(name, "")):
                    stack.append(_target(name, m.group(1).strip('"')))
    return out


def _target(including: str, written: str) -> str:
    """The file an `include` names, as the compile's loader (pipeline.FileLoader) names it."""
    return os.path.normpath(os.path.join(os.path.dirname(including), os.path.expanduser(written)))


# --- the clause at a position ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _schema_properties() -> dict:
    from vtc.compiler.validate import schema

    return schema()["properties"]


@lru_cache(maxsize=1)
def _keys_by_keyword() -> dict[str, list[str]]:
    """Clause keyword -> the recipe-document keys it sets, from the schema's titles (the schema's `title` of a key
    is the clause that writes it: "finetune ... on" -> model, "images from column" -> image_column)."""
    from vtc.compiler.clauses import CLAUSE_KEYWORDS

    out: dict[str, list[str]] = {}
    for key, node in _schema_properties().items():
        title = node.get("title", "")
        for keyword in CLAUSE_KEYWORDS:
            if title == keyword or title.startswith(keyword + " "):
                out.setdefault(keyword, []).append(key)
    out["without"] = out.get("with", [])
    return out


def _statement_at(text: str, path: str, line: int, column: int):
    """(the parsed recipe or None, the statement whose span holds the compiler position, or None)."""
    from vtc.compiler.parser import parse_source

    recipe, _ = parse_source(text, path, partial=True)
    if recipe is None:
        return None, None
    best = None
    for st in recipe.statements:
        s = st.span
        if (s.line, s.column) <= (line, column) and (line, column) <= (s.end_line or s.line, s.end_column or 10**9):
            best = st
    if best is None:  # the position is after a clause's end on its line (a trailing space, a comment)
        for st in recipe.statements:
            if st.span.line == line and st.span.column <= column:
                best = st
    return recipe, best


def _keyword_of_line(code: str) -> str | None:
    """The clause keyword that a line's text starts with (for a line that did not parse)."""
    from vtc.compiler.clauses import CLAUSE_KEYWORDS

    words = " ".join(code.split())
    for keyword in sorted(CLAUSE_KEYWORDS, key=len, reverse=True):
        if words == keyword or words.startswith(keyword + " "):
            return keyword
    return None


_WORD = re.compile(r"[\w.\/~:+@%-]+")


def _word_at(line: str, index: int) -> tuple[int, int]:
    """The start and end of the word at (or just before) a string index of a line."""
    for m in _WORD.finditer(line):
        if m.start() <= index <= m.end():
            return m.start(), m.end()
    return index, index


# --- hover ----------------------------------------------------------------------------------------------------------


def hover(text: str, path: str, line: int, character: int, encoding: str = "utf-16") -> dict | None:
    """Markdown for the word at an LSP position: the clause's meaning, its default, the value in effect and where it
    came from (this file's line, an included file's line, or the default); for a word in it (an option, a part, the
    model) what that word means. None where there is nothing to say (a comment, an empty line)."""
    try:
        return _hover(text, path, line, character, encoding)
    except Exception:  # noqa: BLE001 - no hover rather than a dead server
        return None


def _hover(text: str, path: str, line: int, character: int, encoding: str = "utf-16") -> dict | None:
    doc = Text(text, encoding)
    offset = doc.offset_of(line, character)
    cline, ccol = doc.compiler_position(offset)
    raw = doc.lsp_line(line)
    index = doc.index(raw, character)
    start, end = _word_at(raw, index)
    if start == end:
        return None
    code = _code_part(raw)
    if start >= len(code):
        return None  # in a comment
    word = raw[start:end]
    _, statement = _statement_at(text, path, cline, ccol)
    if statement is not None and statement.span.line == cline:
        keyword = statement.keyword
    else:
        keyword = _keyword_of_line(code)
    if keyword is None:
        return None
    parts = [f"**`{keyword}`**"]
    from vtc.compiler import ast
    from vtc.compiler.clauses import BY_KEYWORD

    keys = _keys_by_keyword().get(keyword, [])
    props = _schema_properties()
    for key in keys:
        parts.append(props[key].get("description", ""))
    if keyword == "include":
        parts.append("Reads the clauses of another `.vt` file here; a clause written after the include overrides "
                     "the included one.")
    parts.append(f"Example: `{BY_KEYWORD[keyword].example}`")
    meaning = _word_meaning(keyword, word)
    if meaning:
        parts.insert(1, meaning)
    effect = _resolved(text, path, keyword, statement, word)
    if effect is None:  # the buffer does not compile: the values as written, each with its line or its default
        effect = _in_effect(text, path, keyword, keys, statement)
    elif not isinstance(statement, ast.Include):
        parts.append(_defaults(keys))
    if effect:
        parts.append(effect)
    lo, hi = doc.position(doc.lsp_starts[line] + start), doc.position(doc.lsp_starts[line] + end)
    return {"contents": {"kind": "markdown", "value": "\n\n".join(p for p in parts if p)},
            "range": {"start": lo, "end": hi}}


def _code_part(line: str) -> str:
    """A line without its `#` comment (a `#` inside double quotes is text)."""
    quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "#" and not quoted:
            return line[:i]
        i += 1
    return line


def _word_meaning(keyword: str, word: str) -> str | None:
    """What a word inside a clause means: an option (`with responses_only`), a part, a model name."""
    props = _schema_properties()
    if keyword in ("with", "without"):
        flag = props["flags"]["properties"].get(word)
        if flag:
            return f"`{word}`: {flag.get('description', '')}"
    if keyword == "finetune":
        from vtc.registry import load_registry

        found = load_registry().lookup(word)
        if found:
            key, entry = found
            hub = (entry.get("hub") or {}).get("16bit")
            return (f"`{word}`: the registry's `{key}`, family `{entry.get('family', '?')}`"
                    + (f", weights from `{hub}`" if hub else "") + " (`vtc plan` shows all)")
    return None


def _in_effect(text: str, path: str, keyword: str, keys: list[str], statement) -> str | None:
    """The values in effect for a clause's keys, each with where it came from; for an `include`, the values in
    effect that the included file set."""
    from vtc.compiler import ast
    from vtc.compiler.lower import lower_with_sources
    from vtc.compiler.parser import parse_source
    from vtc.compiler.pipeline import FileLoader
    from vtc.confine import repository_root

    recipe, _ = parse_source(text, path, partial=True)
    if recipe is None:
        return None
    document, spans, *_ = lower_with_sources(recipe, FileLoader(repository_root(path), already=len(text)))
    rows = []

    def props_of(key: str) -> dict:
        return _schema_properties()[key].get("properties", {})

    if isinstance(statement, ast.Include):
        target = _target(path, statement.path.text)
        for pointer, span in sorted(spans.items()):
            value = _leaf(document, pointer)
            parent = _leaf(document, pointer.rsplit("/", 1)[0]) if pointer.count("/") > 1 else None
            if span.file == target and value is not None and not isinstance(value, dict) \
                    and not isinstance(parent, list):
                rows.append(f"- `{pointer[1:].replace('/', '.')}` = `{_shown(value)}` ({_origin(span, path)})")
        return ("Values set by this include, as written (the recipe has errors, so vtc has not resolved it):\n"
                + "\n".join(rows)) if rows else \
            "No value of the included file is in effect here (each was overridden or the file was not read)."
    for key in keys:
        value = document.get(key)
        default = _default(key)
        if isinstance(value, dict) or (value is None and isinstance(default, dict)):
            known = props_of(key)
            subs = {k: v for k, v in default.items() if k in known} if isinstance(default, dict) else {}
            subs.update(value or {})
            for sub, v in subs.items():
                span = spans.get(f"/{key}/{sub}")
                was = default.get(sub) if isinstance(default, dict) and span is not None else None
                rows.append(f"- `{key}.{sub}` = `{_shown(v)}` ({_origin(span, path)})"
                            + (f"; default `{_shown(was)}`" if was is not None else ""))
        elif value is None and default is None:
            rows.append(f"- `{key}`: not set" + (" (the model's default)" if key in _BY_MODEL else ""))
        else:
            span = spans.get("/" + key) if value is not None else None
            rows.append(f"- `{key}` = `{_shown(default if value is None else value)}` ({_origin(span, path)})"
                        + (f"; default `{_shown(default)}`" if span is not None and default is not None else ""))
    return ("As written (the recipe has errors, so vtc has not resolved it):\n" + "\n".join(rows)) if rows else None


# Clause keyword -> the plan's JSON pointers it sets (a pointer to a section stands for each leaf under it): the
# plan's names are plan.schema.json's (tests/golden/plans/*.json show them with their provenance).
PLAN_POINTERS = {
    "finetune": ("/model/name", "/model/id", "/model/family", "/model/source", "/parts"),
    "using": ("/method",), "precision": ("/precision",),
    "from": ("/data/train",), "evaluate on": ("/data/eval",), "holdout": ("/data/holdout",),
    "ask": ("/data/instruction",), "system": ("/data/system",), "answer from": ("/data/answer",),
    "images from": ("/data/images_folder", "/data/image_column"), "resize": ("/images/resize",),
    "bad rows": ("/data/bad_rows",), "video": ("/video",), "window": ("/images/window",),
    "checkpoint every": ("/checkpoint/every_steps",), "tiff pages": ("/images/tiff_pages",),
    "lora": ("/lora/rank", "/lora/alpha", "/lora/dropout", "/lora/target_modules"),
    "train for": ("/training/epochs", "/training/steps"),
    "batch": ("/training/batch", "/training/micro_batch"), "micro batch": ("/training/micro_batch",),
    "accumulate": ("/training/batch", "/training/micro_batch"),
    "learning rate": ("/training/learning_rate", "/training/part_learning_rates"),
    "projector": ("/parts/projector", "/lora/modules_to_save"),
    "warmup": ("/training/warmup_ratio", "/training/warmup_steps"), "schedule": ("/training/schedule",),
    "optimizer": ("/training/optimizer",), "weight decay": ("/training/weight_decay",),
    "max length": ("/training/max_length",), "seed": ("/training/seed",), "metric": ("/evaluation/metrics",),
    "save to": ("/outputs/dir",), "export": ("/outputs/exports",), "gpus": ("/hardware/gpus",),
    "shard": ("/hardware/distributed/strategy",),
    # `with` / `without` options that a plan holds (packing and padding_free are refused, so never in one).
    "with": ("/training/responses_only", "/lora/rslora", "/training/gradient_checkpointing",
             "/model/trust_remote_code"),
}
PLAN_POINTERS["without"] = PLAN_POINTERS["with"]

# What a "derived" value of the plan is computed from (resolve.py), for the hover's "derived from ...".
_DERIVED = {"/data/train/kind": "the path as written (a folder, a data file or a Hub dataset)",
            "/data/eval/kind": "the path as written (a folder, a data file or a Hub dataset)",
            "/model/source": "the model's name (a registry name, a Hub id or a local folder)",
            "/lora/target_modules": "the model's layers and the parts trained (`finetune`, `projector`)",
            "/training/batching": "the batch, the GPUs and the memory estimate"}


def _resolved(text: str, path: str, keyword: str, statement, word: str = "") -> str | None:
    """The values in effect for a clause as the compiler resolved them (the plan of the buffer's compile, the same
    compile as its diagnostics), each with its origin in words; for an `include`, the values in effect that the
    included file (or a file it includes) set; for the model's name, also what the registry set for it (the image
    size of a recipe without `resize`, the markers, the geometry). None when the buffer has no plan (it has
    errors)."""
    from vtc.compiler import ast

    try:
        result = compile_buffer(text, path)
    except Exception:  # noqa: BLE001 - the diagnostics say VT567; the hover falls back to the text
        return None
    plan = result.plan
    if plan is None:
        return None
    provenance = plan.get("provenance", {})
    if isinstance(statement, ast.Include):
        includes = _include_lines(text, path, result.sources)
        files = {_display(name, path) for name, span in includes.items() if span == statement.span}
        rows = [_row(plan, pointer, origin, path) for pointer, origin in provenance.items()
                if origin.rpartition(":")[0] in files]
        return ("Values in effect set by this include:\n" + "\n".join(rows)) if rows else \
            "No value of the included file is in effect here (each was overridden by a later clause)."
    pointers = PLAN_POINTERS.get(keyword, ())
    rows = [_row(plan, pointer, origin, path) for pointer, origin in provenance.items()
            if any(pointer == p or pointer.startswith(p + "/") for p in pointers)]
    if keyword == "finetune" and word == (plan.get("model") or {}).get("name"):
        rows += [_row(plan, pointer, origin, path) for pointer, origin in provenance.items()
                 if origin == "registry" and not pointer.startswith(("/model/architecture/", "/model/id",
                                                                     "/model/family"))]
    return ("In effect:\n" + "\n".join(rows)) if rows else None


def _row(plan: dict, pointer: str, origin: str, path: str) -> str:
    """`- `training.seed` = `7` (this file, line 5)`."""
    shown = _shown(_leaf(plan, pointer))
    return f"- `{pointer[1:].replace('/', '.')}` = `{shown}` ({_said(origin, pointer, plan, path)})"


def _said(origin: str, pointer: str, plan: dict, path: str) -> str:
    """A provenance entry in words: "this file, line 5", "base.vt, line 3", "vtc's default", "the model registry
    (qwen2.5-vl)", "derived from ..."."""
    if origin == "default":
        return "vtc's default"
    if origin == "registry":
        return f"the model registry ({(plan.get('model') or {}).get('name', '?')})"
    if origin == "derived":
        why = next((w for p, w in _DERIVED.items() if pointer == p or pointer.startswith(p + "/")),
                   "other values (`vtc plan` shows them)")
        return "derived from " + why
    file, _, line = origin.rpartition(":")
    if not line.isdigit():
        return origin
    return f"this file, line {line}" if file == _display(path, path) else f"{file}, line {line}"


def _display(file: str, path: str) -> str:
    """A file as the plan's provenance names it: relative to the recipe's folder, with forward slashes."""
    return os.path.relpath(file, os.path.dirname(os.path.abspath(path))).replace(os.sep, "/")


def _defaults(keys: list[str]) -> str:
    """vtc's defaults for a clause's keys in one line ("" when none has one)."""
    shown = []
    for key in keys:
        if key in _BY_MODEL:
            shown.append(f"`{key}`: the model family's (`{_shown(_fallback(key))}` for a family without one)")
            continue
        default = _default(key)
        if isinstance(default, dict):
            shown.extend(f"`{key}.{k}` `{_shown(v)}`" for k, v in default.items())
        elif default is not None:
            shown.append(f"`{key}` `{_shown(default)}`")
    return ("Default: " + ", ".join(shown)) if shown else ""


def _fallback(key: str):
    from vtc.compiler.resolve import DEFAULTS

    return DEFAULTS.get(key)


def _leaf(document: dict, pointer: str):
    node = document
    for token in pointer.strip("/").split("/"):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


# Keys whose default depends on the model: resolve.DEFAULTS holds only the fallback for a family without its own
# (resize: 512, where Llama 3.2 Vision's is 560); the schema's description, shown above the values, says the rule.
_BY_MODEL = {"resize"}


def _default(key: str):
    """The default of a recipe-document key (resolve.DEFAULTS: `lora.rank` for /lora/rank), or None."""
    from vtc.compiler.resolve import DEFAULTS

    if key in _BY_MODEL:
        return None
    if key in DEFAULTS:
        return DEFAULTS[key]
    nested = {k.split(".", 1)[1]: v for k, v in DEFAULTS.items() if k.startswith(key + ".")}
    return nested or None


def _origin(span: Span | None, path: str) -> str:
    if span is None:
        return "default"
    if span.file == path:
        return f"this file, line {span.line}"
    return f"{os.path.relpath(span.file, os.path.dirname(path))}, line {span.line}"


def _shown(value) -> str:
    """A value as the hover shows it: on/off, a rate as `3e-4` (every float below 0.01 in that one form, whether
    written 3e-4 or 0.0003), lists and objects on one line, at most 60 characters."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value) if value else "none"
    if isinstance(value, dict) and {"part", "learning_rate"} <= set(value):  # a rate of its own: `vision 2e-5`
        return f"{value['part']} {_shown(value['learning_rate'])}"
    if isinstance(value, dict):
        return " ".join(f"{k} {_shown(v)}" for k, v in value.items())
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: float) -> str:
    """2e-4 -> `2e-4`, 0.03 -> `0.03`, 2.0 -> `2`."""
    if value and abs(value) < 0.01:
        mantissa, _, exponent = f"{value:.6e}".partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


# --- go to definition -----------------------------------------------------------------------------------------------


def definition(text: str, path: str, line: int, character: int, encoding: str = "utf-16") -> str | None:
    """The file an `include` line names (when it exists), for a position anywhere on that clause."""
    from vtc.compiler import ast

    try:
        doc = Text(text, encoding)
        cline, ccol = doc.compiler_position(doc.offset_of(line, character))
        _, statement = _statement_at(text, path, cline, ccol)
        if isinstance(statement, ast.Include):
            target = _target(path, statement.path.text)
            return target if os.path.isfile(target) else None
    except Exception:  # noqa: BLE001
        return None
    return None


# --- formatting and quick fixes -------------------------------------------------------------------------------------


def formatting(text: str, path: str, encoding: str = "utf-16") -> list[dict]:
    """`vtc fmt`'s output as one edit of the whole buffer; no edit when it is formatted already or does not
    parse."""
    from vtc.compiler.fmt import format_source

    try:
        formatted, _ = format_source(text, path)
    except Exception:  # noqa: BLE001
        return []
    if formatted is None or formatted == text:
        return []
    return [{"range": Text(text, encoding).whole(), "newText": formatted}]


def code_actions(uri: str, diagnostics: list[dict]) -> list[dict]:
    """A quick fix for each diagnostic that carries a suggestion (its ``data.suggestion``, set from the
    compiler's Diagnostic.suggestion): replace the word at its range with the suggestion."""
    out = []
    for d in diagnostics:
        data = d.get("data") or {}
        suggestion = data.get("suggestion") if isinstance(data, dict) else None
        if not suggestion:
            continue
        out.append({"title": f"Replace with `{suggestion}`", "kind": "quickfix", "diagnostics": [d],
                    "isPreferred": True,
                    "edit": {"changes": {uri: [{"range": d["range"], "newText": suggestion}]}}})
    return out


# --- completion -----------------------------------------------------------------------------------------------------

# Words inside clauses that the grammar fixes (src/vtc/grammar/vt.lark), by the clause they follow.
_AFTER = {"answer from": ("captions", "folders", "column"), "images from": ("column", "folder"),
          "train for": ("epochs", "steps"), "warmup": ("steps",), "checkpoint every": ("steps",),
          "lora": ("rank", "alpha", "dropout"), "gpus": ("all",), "resize": ("none", "between", "up to")}


def completion(text: str, path: str, line: int, character: int, encoding: str = "utf-16") -> list[dict]:
    """Completion items at an LSP position (see _completion)."""
    try:
        return _completion(text, path, line, character, encoding)
    except Exception:  # noqa: BLE001
        return []


def _completion(text: str, path: str, line: int, character: int, encoding: str = "utf-16") -> list[dict]:
    from vtc.compiler.clauses import BY_KEYWORD, CLAUSE_KEYWORDS

    doc = Text(text, encoding)
    raw = doc.lsp_line(line)
    index = doc.index(raw, character)
    before = raw[:index]
    code = _code_part(before)
    if len(code) < len(before):
        return []  # in a comment
    if len(re.findall(r'(?<!\\)"', code)) % 2 and re.match(r'\s*include\s+"', code) is None:
        return []  # in a string (`ask "...`)

    def items(labels, kind, detail=None, start=None):
        lo = start if start is not None else _partial_start(before)
        rng = {"start": {"line": line, "character": doc.units(raw[:lo])}, "end": {"line": line, "character": character}}
        return [{"label": label, "kind": kind, "detail": detail(label) if callable(detail) else detail,
                 "textEdit": {"range": rng, "newText": label}} for label in labels]

    keywords = items(CLAUSE_KEYWORDS, KEYWORD, lambda k: BY_KEYWORD[k].example)
    found = _last_clause(before)
    if found is None:
        return keywords
    keyword, rest = found
    props = _schema_properties()
    words = rest.split()
    typing = not rest or not rest[-1].isspace()  # the last word is being typed
    done = len(words) - (1 if typing and words else 0)  # whole words written after the keyword
    if keyword in ("include", "from", "evaluate on") and done == 0:
        return _paths(path, before, line, doc, raw, only_recipes=keyword == "include")
    if keyword in ("from", "evaluate on"):
        if words[done - 1:done] == ["format"] if done else False:
            from vtc.compiler.resolve import DATA_FORMATS

            return items(DATA_FORMATS, ENUM_MEMBER, "a data format")
        if words[done - 1:done] == ["split"] if done else False:
            return []
        return items(("split", "format"), KEYWORD) + keywords
    if keyword == "finetune":
        if "on" in words[:done]:
            if words[done - 1] == "on":
                from vtc.registry import load_registry

                return items(load_registry().names(), VALUE, "a model in vtc's registry")
            return keywords
        part = props["parts"]["items"]["enum"]
        return items(part, ENUM_MEMBER, "a part to train") + ([] if not done else items(("on",), KEYWORD))
    if keyword in ("with", "without"):
        if done and not rest.rstrip().endswith(","):
            return keywords
        flags = props["flags"]["properties"]
        return items(sorted(flags), PROPERTY, lambda f: flags[f].get("description", "").split(". ")[0])
    if keyword == "learning rate" and rest.rstrip().endswith(","):
        from vtc.compiler.checks import RATE_PARTS

        return items(RATE_PARTS, ENUM_MEMBER, "a part with a rate of its own")
    enum = _enum_of(keyword)
    if enum is not None:
        listed = props[_keys_by_keyword()[keyword][0]].get("type") == "array"
        if done == 0 or (listed and rest.rstrip().endswith(",")):
            return items(enum, ENUM_MEMBER, keyword)
        return keywords
    after = _AFTER.get(keyword)
    if after and done >= (0 if keyword in ("answer from", "images from", "lora", "gpus", "resize") else 1):
        return items(after, KEYWORD) + (keywords if done else [])
    return keywords if done else []


def _partial_start(before: str) -> int:
    m = re.search(r"[\w.\-]*$", before)
    return m.start() if m else len(before)


def _enum_of(keyword: str) -> list[str] | None:
    """The choices the schema gives the one key a clause sets (`schedule`, `metric`, ...), or None."""
    keys = _keys_by_keyword().get(keyword, [])
    if len(keys) != 1:
        return None
    node = _schema_properties()[keys[0]]
    enum = node.get("enum") or node.get("items", {}).get("enum")
    return [str(e) for e in enum] if enum else None


def _last_clause(before: str) -> tuple[str, str] | None:
    """The last clause keyword in a line's text before the cursor (strings blanked) and the text after it, or None
    when the text holds none (a keyword is being typed)."""
    from vtc.compiler.clauses import CLAUSE_KEYWORDS

    blank = re.sub(r'"(?:\\.|[^"\\])*"?', lambda m: '"' + " " * (len(m.group()) - 1), before)
    if blank.count('"') % 2 and re.match(r'\s*include\s+"', blank) is None:
        return None
    pattern = "|".join(r"\s+".join(map(re.escape, k.split())) for k in sorted(CLAUSE_KEYWORDS, key=len, reverse=True))
    last = None
    for m in re.finditer(rf"(?<![\w.\/~:+@%-])({pattern})(?=\s|$)", blank):
        head = blank[:m.start()].rstrip()
        word = " ".join(m.group(1).split())
        if word in ("projector", "lora", "vision") and (head.endswith(",") or head.split()[-1:] in (["using"],
                                                                                                    ["projector"])):
            continue  # `finetune vision, projector`, `using lora`, `projector lora`: a word, not a clause
        if m.end() == len(blank):
            continue  # the keyword itself is being typed
        last = (word, before[m.end():])
    return last


def _paths(path: str, before: str, line: int, doc: Text, raw: str, only_recipes: bool) -> list[dict]:
    """Folders and files (only .vt files after `include`) relative to the recipe's folder, for the path being
    typed."""
    m = re.search(r'"?([^\s"]*)$', before)
    typed = m.group(1) if m else ""
    folder_part, _, name_part = typed.rpartition("/")
    base = os.path.dirname(os.path.abspath(path))
    folder = os.path.join(base, os.path.expanduser(folder_part + "/" if folder_part else "") or ".")
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    start = len(before) - len(name_part)
    rng = {"start": {"line": line, "character": doc.units(raw[:start])},
           "end": {"line": line, "character": doc.units(before)}}
    out = []
    for entry in entries:
        if entry.name.startswith(".") and not name_part.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if not is_dir and only_recipes and not entry.name.endswith(".vt"):
            continue
        label = entry.name + ("/" if is_dir else "")
        out.append({"label": label, "kind": FOLDER if is_dir else FILE, "detail": "folder" if is_dir else "file",
                    "textEdit": {"range": rng, "newText": label}})
        if len(out) >= MOST_PATHS:
            break
    return out
