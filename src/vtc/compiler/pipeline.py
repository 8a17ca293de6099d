"""The whole compile: file -> parse -> lower (includes) -> validate -> resolve -> check -> plan. Never raises on user
input.

    compile_file(path) -> CompileResult(plan | None, diagnostics, sources)
    compile_source(text, file, load=None, base_dir=None) -> CompileResult

This module is the only one of the compiler's stages that touches the file system: it reads the recipe, the files
it includes, and a local model folder's config.json, and passes their text to the pure stages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from vtc.diagnostics import Diagnostic, Span, VtcError, error, has_errors, note, sort_diagnostics


# VT105: a required clause is missing; VT109: a base recipe, checked alone (see docs/diagnostics.md).
MISSING_CLAUSE = "VT105"
BASE_RECIPE = "VT109"


@dataclass
class CompileResult:
    """A plan (only when there is no error), every diagnostic (sorted), and the text of every file read."""

    plan: dict | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def _read_recipe(path: str) -> tuple[str | None, list[Diagnostic]]:
    from vtc.compiler.parser import decode_source

    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, [error("VT301", f"no such file: {path}", Span(path), "check the path to the recipe")]
    except IsADirectoryError:
        return None, [error("VT303", f"{path} is a folder, not a recipe", Span(path), "give a .vt file")]
    except OSError as exc:
        return None, [error("VT303", f"cannot read {path} ({exc.strerror or type(exc).__name__})", Span(path))]
    return decode_source(data, path)


def file_loader(written: str, including_file: str) -> tuple[str, str]:
    """The default include loader: `written` relative to the including file's folder, read and decoded."""
    name = os.path.normpath(os.path.join(os.path.dirname(including_file), os.path.expanduser(written)))
    if not os.path.exists(name):
        raise FileNotFoundError(name)
    text, diagnostics = _read_recipe(name)
    if text is None:
        raise VtcError(diagnostics)
    return name, text


def _local_config(model_name: str, base_dir: str) -> str | None:
    path = os.path.join(base_dir, os.path.expanduser(model_name), "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def compile_file(path: str, *, base_ok: bool = False) -> CompileResult:
    """Compile the recipe at ``path`` (relative paths in it are relative to its folder).

    ``base_ok`` (for `vtc check`): a file with neither a `finetune` line nor a `from` line is a base recipe, made to
    be included by others: its own clauses are checked, and instead of two missing-clause errors it gets a note.
    """
    text, diagnostics = _read_recipe(path)
    if text is None:
        return CompileResult(None, sort_diagnostics(diagnostics), {})
    result = compile_source(text, path, base_dir=os.path.dirname(os.path.abspath(path)), base_ok=base_ok)
    result.diagnostics = sort_diagnostics(diagnostics + result.diagnostics)
    return result


def compile_source(text: str, file: str, load=None, base_dir: str | None = None, *,
                   base_ok: bool = False) -> CompileResult:
    """Compile recipe text named ``file``. ``load`` resolves includes (default: the file system, relative to the
    including file); ``base_dir`` is where relative paths point (default: the folder of ``file``); ``base_ok`` as
    for compile_file."""
    sources = {file: text}
    try:
        return _compile(text, file, load if load is not None else file_loader,
                        base_dir or os.path.dirname(os.path.abspath(file)), sources, base_ok)
    except RecursionError:
        return CompileResult(None, [error("VT099", "this recipe is too deeply nested to read", Span(file, 1, 1))],
                             sources)


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
    document, spans, lowered, included, _files = lower_with_sources(recipe, load)
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
            diagnostics += _resolve_and_check(rest, spans, base_dir)[1]
        elif not any(keyword == "required" for keyword, *_ in raw_errors(document)):
            # What is left cannot be resolved (every part named is unknown, say), but every clause is there: the
            # model name is still checked, so that `finetune everything on qwen-2.5-vl` reports both mistakes.
            # (A recipe that lacks a required clause gets no semantic check, the model's included.)
            diagnostics += _model_problems(document, spans, base_dir)
        return CompileResult(None, sort_diagnostics(diagnostics), sources)
    resolved, found = _resolve_and_check(document, spans, base_dir)
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


def _resolve_and_check(document: dict, spans: dict, base_dir: str):
    """The resolve stage and the semantic checks on a schema-valid document: (Resolved, diagnostics)."""
    from vtc.compiler.checks import check
    from vtc.compiler.resolve import resolve
    from vtc.registry import is_local_path, load_registry

    name = document["model"]
    local = _local_config(name, base_dir) if is_local_path(name) else None
    resolved, diagnostics = resolve(document, spans, load_registry(), base_dir, local)
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
    return [makers[p.severity](p.code, p.message, spans.get("/model"), p.help) for p in problems]


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
