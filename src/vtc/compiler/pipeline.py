"""The whole compile: file -> parse -> lower (includes) -> validate -> resolve -> check -> plan. Never raises on user
input.

    compile_file(path) -> CompileResult(plan | None, diagnostics, sources)
    compile_source(text, file, load=None, base_dir=None) -> CompileResult

This module is the only one of the compiler's stages that touches the file system: it reads the recipe, the files
it includes, and a local model folder's config.json, and passes their text to the pure stages. Every one of them is
read through vtc.confine (regular files only, size limits; includes inside the main recipe's repository, .vt files
only: FileLoader), and the diagnostics are capped per file (vtc.diagnostics.cap_per_file). docs/security.md,
"Recipes and includes", says the rule for users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from vtc.compiler.lower import IncludeRefused
from vtc.diagnostics import (Diagnostic, Span, VtcError, cap_per_file, error, has_errors, note,
                             sort_diagnostics)


# VT105: a required clause is missing; VT109: a base recipe, checked alone (see docs/diagnostics.md).
MISSING_CLAUSE = "VT105"
BASE_RECIPE = "VT109"


@dataclass
class CompileResult:
    """A plan (only when there is no error), every diagnostic (sorted), and the text of every file read."""

    plan: dict | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


# The largest recipe file vtc reads, a main recipe or an include. Recipes are a few KB (the largest in recipes/ is
# under 2 KB); 128 KB is fifty times that, room for several 20,000-character `system` prompts, and the parser reads
# it in under a second even when every line is a clause (some 50 us a line). A bigger file is a data file given by
# mistake, or a trap for a pre-commit hook (50 MB once took 92 s and 5.4 GB): refused before it is parsed (VT307),
# the main recipe too, so that `vtc check` stays bounded whatever it is given.
RECIPE_LIMIT = 128 * 1024
# All the recipe files one compile reads (the main recipe and its includes, each counted once): at most this many
# files and bytes (VT307), so that a graph of includes is bounded as a single file is (about 2 s at worst).
MOST_FILES = 64
MOST_BYTES = 256 * 1024


def _size(n: int) -> str:
    return f"{n // 1024:,} KB" if n >= 1024 else f"{n} bytes"


def _read_recipe(path: str) -> tuple[str | None, list[Diagnostic]]:
    """A recipe named on the command line (or through the API): any place, but a regular file (never a FIFO, which
    blocks for ever, or a device: /dev/zero reads until memory runs out) of at most RECIPE_LIMIT bytes."""
    from vtc.compiler.parser import decode_source
    from vtc.confine import Refused, read_confined

    shown = path  # Diagnostic.render shows control characters escaped; JSON keeps the name exact
    if os.path.isdir(path):
        return None, [error("VT303", f"{shown} is a folder, not a recipe", Span(path), "give a .vt file")]
    try:
        data = read_confined(path, None, RECIPE_LIMIT)
    except Refused as exc:
        if exc.kind == "missing":
            return None, [error("VT301", f"no such file: {shown}", Span(path), "check the path to the recipe")]
        if exc.kind == "too_large":
            return None, [error("VT307", f"{shown} is larger than {_size(RECIPE_LIMIT)}: too large for a recipe",
                                Span(path), "a recipe is a short text file of clauses; is this a data file?")]
        return None, [error("VT303", f"cannot read {shown}: {exc.reason}", Span(path), "give a .vt recipe file")]
    return decode_source(data, path)


class FileLoader:
    """The include loader of one compile (see lower.py for the loader contract). The confinement rule
    (vtc.confine): an included file must be a `.vt` file (by its name as written and after following links), a
    regular file, inside ``root`` after every link is followed (the main recipe's repository, vtc.confine.
    repository_root), and at most RECIPE_LIMIT bytes; the compile reads at most MOST_FILES files and MOST_BYTES
    bytes in all. A refused file is never read, so its content cannot reach a message. Each file is read once."""

    def __init__(self, root: str, already: int = 0) -> None:
        self.root = str(root)
        self.bytes = already  # what the compile has read so far (the main recipe)
        self.read = 1  # files read, the main recipe included
        self.done: dict[str, tuple] = {}  # name -> (name, text) or the exception it raised

    def __call__(self, written: str, including_file: str) -> tuple[str, str]:
        name = os.path.normpath(os.path.join(os.path.dirname(including_file), os.path.expanduser(written)))
        if name not in self.done:
            try:
                self.done[name] = (name, self._read(written, name))
            except (IncludeRefused, VtcError, OSError) as exc:
                self.done[name] = exc  # type: ignore[assignment]
        found = self.done[name]
        if isinstance(found, Exception):
            raise found
        return found

    def _read(self, written: str, name: str) -> str:
        from vtc.compiler.parser import decode_source
        from vtc.confine import Refused, confine, outside, read_confined

        shown = written
        rule = (f"an include must be a .vt recipe file inside {self.root} (the main recipe's git "
                "repository, or its folder outside one); copy what you need into a .vt file there")
        if not written.lower().endswith(".vt"):
            raise IncludeRefused("VT306", f"`include {shown}`: vtc includes only .vt recipe files", rule)
        if outside(name, self.root):
            raise IncludeRefused("VT306", f"`include {shown}` leads outside the recipe's repository (after "
                                          "following links); vtc opens nothing there", rule)
        try:
            real = os.path.realpath(name)
        except (OSError, ValueError):  # pragma: no cover - confine refused such a name already
            real = name
        if not os.path.lexists(name):
            raise FileNotFoundError(name)
        reason = confine(name, self.root)
        if reason:
            if os.path.isdir(name):
                raise IsADirectoryError(name)
            raise IncludeRefused("VT303", f"cannot read the included file `{shown}`: {reason}",
                                 "include a .vt recipe file (a regular file)")
        if not real.lower().endswith(".vt"):
            raise IncludeRefused("VT306", f"`include {shown}` is a link to a file that is not a .vt recipe file", rule)
        if self.read >= MOST_FILES:
            raise IncludeRefused("VT307", f"`include {shown}`: this recipe would read more than {MOST_FILES} "
                                          "recipe files", "include fewer files (a base recipe and a few variants)")
        try:
            data = read_confined(name, self.root, RECIPE_LIMIT)
        except Refused as exc:
            if exc.kind == "too_large":
                raise IncludeRefused("VT307", f"the included file `{shown}` is larger than "
                                              f"{_size(RECIPE_LIMIT)}: too large for a recipe",
                                     "a recipe is a short text file of clauses; include a .vt recipe file") from None
            if exc.kind == "missing":
                raise FileNotFoundError(name) from None
            raise IncludeRefused("VT303", f"cannot read the included file `{shown}`: {exc.reason}",
                                 "include a .vt recipe file you may read") from None
        if self.bytes + len(data) > MOST_BYTES:
            raise IncludeRefused("VT307", f"`include {shown}`: the recipe and its includes would be more than "
                                          f"{_size(MOST_BYTES)} of text", "include fewer or shorter files")
        self.bytes += len(data)
        self.read += 1
        text, diagnostics = decode_source(data, name)
        if text is None:
            raise VtcError(diagnostics)
        return text


def file_loader(written: str, including_file: str) -> tuple[str, str]:
    """An include loader rooted at the repository of ``including_file`` (for callers that have no compile: each
    call starts afresh). compile_file and compile_source make a FileLoader for the main recipe instead."""
    from vtc.confine import repository_root

    return FileLoader(repository_root(including_file))(written, including_file)


def _local_config(model_name: str, base_dir: str) -> str | None:
    """The text of a local model folder's config.json, under the confinement rule (inside the model folder after
    following links, a regular file, at most resolve.CONFIG_LIMIT bytes, UTF-8), or None."""
    from vtc.compiler.resolve import read_config

    return read_config(os.path.join(base_dir, os.path.expanduser(model_name)))


def compile_file(path: str, *, base_ok: bool = False) -> CompileResult:
    """Compile the recipe at ``path`` (relative paths in it are relative to its folder).

    ``base_ok`` (for `vtc check`): a file with neither a `finetune` line nor a `from` line is a base recipe, made to
    be included by others: its own clauses are checked, and instead of two missing-clause errors it gets a note.
    """
    text, diagnostics = _read_recipe(path)
    if text is None:
        return CompileResult(None, sort_diagnostics(diagnostics), {})
    result = compile_source(text, path, base_dir=os.path.dirname(os.path.abspath(path)), base_ok=base_ok)
    if diagnostics:  # none when the file decoded (decode_source reports only failures); kept general all the same
        result.diagnostics = cap_per_file(sort_diagnostics(diagnostics + result.diagnostics))
    return result


def compile_source(text: str, file: str, load=None, base_dir: str | None = None, *,
                   base_ok: bool = False) -> CompileResult:
    """Compile recipe text named ``file``. ``load`` resolves includes (default: the file system, relative to the
    including file); ``base_dir`` is where relative paths point (default: the folder of ``file``); ``base_ok`` as
    for compile_file."""
    sources = {file: text}
    if load is None:
        from vtc.confine import repository_root

        # Includes come from the main recipe's repository (or, outside one, its folder): vtc.confine.
        load = FileLoader(repository_root(file), already=len(text))
    try:
        result = _compile(text, file, load, base_dir or os.path.dirname(os.path.abspath(file)), sources, base_ok)
    except RecursionError:
        return CompileResult(None, [error("VT099", "this recipe is too deeply nested to read", Span(file, 1, 1))],
                             sources)
    # At most MAX_PER_FILE diagnostics a file, and a note that counts the rest (diagnostics.cap_per_file).
    result.diagnostics = cap_per_file(result.diagnostics)
    return result


def _compile(text: str, file: str, load, base_dir: str, sources: dict[str, str], base_ok: bool) -> CompileResult:
    from vtc.compiler.lower import lower_with_sources
    from vtc.compiler.parser import parse_source
    from vtc.compiler.validate import raw_errors, validate

    # Every problem at once: after a syntax error the statements that did parse still go through lowering and
    # validation, so a typo on line 1 and a bad value on line 5 are reported together. No plan is made then.
    recipe, diagnostics = parse_source(text, file, partial=True)
    if recipe is None:
        return CompileResult(None, sort_diagnostics(diagnostics), sources)
    syntax_failed = has_errors(diagnostics)
    document, spans, lowered, included, files = lower_with_sources(recipe, load)
    problems = lowered + validate(document, spans)
    if syntax_failed:
        # A clause on a line that failed to parse is not missing; don't say it is.
        problems = [d for d in problems if d.code != MISSING_CLAUSE]
    is_base = base_ok and not syntax_failed and "model" not in document and "train_data" not in document
    if is_base:
        problems = [d for d in problems if d.code != MISSING_CLAUSE] + [note(
            BASE_RECIPE, "a base recipe (no `finetune` line, no `from` line): its own clauses were checked",
            Span(file), help="a recipe that includes it is checked in full; to run it, add `finetune <parts> on "
                             "<model>` and `from <data>`")]
    diagnostics += problems
    sources.update(included)
    if is_base:  # nothing to plan, and no model for the semantic checks
        return CompileResult(None, sort_diagnostics(diagnostics), sources)
    if syntax_failed or has_errors(problems):
        # No plan, but every problem at once: the semantic checks still look at the values that are valid (those
        # that failed validation are left out, as if unwritten), unless something they need is missing.
        rest = valid_part(document)
        if rest is not None:
            diagnostics += _resolve_and_check(rest, spans, base_dir, files)[1]
        elif not any(keyword == "required" for keyword, *_ in raw_errors(document)):
            # What is left cannot be resolved (every part named is unknown, say), but every clause is there: the
            # model name is still checked, so that `finetune everything on qwen-2.5-vl` reports both mistakes.
            # (A recipe that lacks a required clause gets no semantic check, the model's included.)
            diagnostics += _model_problems(document, spans, base_dir)
        return CompileResult(None, sort_diagnostics(diagnostics), sources)
    resolved, found = _resolve_and_check(document, spans, base_dir, files)
    diagnostics += found
    if has_errors(diagnostics):
        return CompileResult(None, sort_diagnostics(diagnostics), sources)
    from vtc.compiler.plan import build_plan
    from vtc.plans import plan_problems

    plan = build_plan(resolved)
    # The plan is checked before it leaves the compiler, as the runtime checks it when it reads one: a plan that
    # fails its own schema is a bug in vtc, reported as one rather than run.
    wrong = plan_problems(plan)
    if wrong:
        diagnostics += [error("VT098", f"internal error: the plan vtc made has {pointer} {sentence}", Span(file),
                              help="this is a bug in vtc; please report it with the recipe")
                        for pointer, sentence in wrong]
        return CompileResult(None, sort_diagnostics(diagnostics), sources)
    return CompileResult(plan, sort_diagnostics(diagnostics), sources)


def _resolve_and_check(document: dict, spans: dict, base_dir: str, files: list[str]):
    """The resolve stage and the semantic checks on a schema-valid document: (Resolved, diagnostics). ``files``:
    every recipe file read (the main one first), which the plan lists whether or not a value of it survived."""
    from vtc.compiler.checks import check
    from vtc.compiler.resolve import resolve
    from vtc.registry import is_local_path, load_registry

    name = document["model"]
    local = _local_config(name, base_dir) if is_local_path(name) else None
    resolved, diagnostics = resolve(document, spans, load_registry(), base_dir, local, files=files)
    return resolved, diagnostics + check(resolved)


def _model_problems(document: dict, spans: dict, base_dir: str) -> list[Diagnostic]:
    """What resolving the model name alone finds (VT201-VT203), at the name's span; nothing when the name is not a
    valid value (the schema reported it)."""
    from vtc.compiler.validate import raw_errors
    from vtc.diagnostics import warning
    from vtc.registry import is_local_path, load_registry, resolve_model

    name = document.get("model")
    if not isinstance(name, str) or any(path[:1] == ("model",) for _, path, _, _ in raw_errors(document)):
        return []
    from vtc.compiler.resolve import beside_recipe, read_config
    from vtc.registry import is_hub_id

    local = _local_config(name, base_dir) if is_local_path(name) else None
    beside = beside_recipe(name, base_dir) if is_hub_id(name) else None
    if beside is not None and local is None:
        local = read_config(beside)
    _found, problems = resolve_model(name, load_registry(), local, beside_recipe=beside)
    makers = {"error": error, "warning": warning, "note": note}
    return [makers[p.severity](p.code, p.message, spans.get("/model"), p.help, suggestion=p.suggestion)
            for p in problems]


def valid_part(document: dict) -> dict | None:
    """The document without the values that fail the schema, or None when what is left still fails it (a required
    clause is missing, say)."""
    import copy

    from vtc.compiler.validate import raw_errors

    rest = copy.deepcopy(document)
    paths = []
    for keyword, path, instance, node in raw_errors(document):
        if keyword == "required":
            return None
        if keyword == "additionalProperties" and isinstance(instance, dict):
            paths += [(*path, extra) for extra in instance if extra not in node.get("properties", {})]
        elif path:
            paths.append(tuple(path))
    # Deepest and last first, so that removing a list item does not shift the ones still to remove.
    for path in sorted(set(paths), key=lambda p: (len(p), [(isinstance(k, str), k) for k in p]), reverse=True):
        parent = rest
        try:
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
    return rest if not raw_errors(rest) else None
