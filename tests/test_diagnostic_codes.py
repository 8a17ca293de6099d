"""The registry of diagnostic codes (src/vtc/codes.py) against the source, the documentation and the compiler.

Every code string in src/vtc is registered and every registered code is used; the severities written at the call
sites agree with the registry; each recipe example reports what the registry shows; docs/diagnostics.md is what
tools/gen_diagnostics_doc.py generates. (That the tests make vtc report every code: tests/test_zz_every_code_raised.py.)
"""

from __future__ import annotations

import ast as pyast
import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

from vtc.codes import CODES, RANGES, SEVERITIES, title

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "vtc"
REGISTRY = SOURCE / "codes.py"
CODE = re.compile(r"VT\d{3}")
LITERAL = re.compile(r"[\"'](VT\d{3})[\"']")


def source_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py") if p != REGISTRY)


def codes_in_source() -> dict[str, list[str]]:
    """code -> the files (relative to src/vtc) whose text holds it as a string literal."""
    found: dict[str, list[str]] = {}
    for path in source_files():
        for code in sorted(set(LITERAL.findall(path.read_text(encoding="utf-8")))):
            found.setdefault(code, []).append(str(path.relative_to(SOURCE)))
    return found


def test_every_code_in_the_source_is_registered():
    missing = {code: files for code, files in codes_in_source().items() if code not in CODES}
    assert not missing, f"codes used in src/vtc but not registered in src/vtc/codes.py: {missing}"


def test_every_registered_code_is_used_in_the_source():
    dead = sorted(set(CODES) - set(codes_in_source()))
    assert not dead, f"registered in src/vtc/codes.py but used nowhere in src/vtc: {dead}"


def test_entries_are_complete_and_consistent():
    digits = [digit for digit, _ in RANGES]
    for code, entry in CODES.items():
        assert entry.code == code and CODE.fullmatch(code) and code[2] in digits, code
        assert entry.severity and len(set(entry.severity)) == len(entry.severity), code
        assert set(entry.severity) <= set(SEVERITIES), code
        assert entry.title and len(entry.title) <= 45 and len(entry.title.split()) <= 7, (code, entry.title)
        assert "|" not in entry.title and not entry.title.endswith("."), code
        assert entry.explanation.endswith(".") and entry.example, code
        header = entry.reported.split("\n")[0]
        assert re.match(rf"({'|'.join(entry.severity)})\[{code}\]: ", header), (code, header)


def test_title_by_code():
    assert title("VT409") == "listed file missing"
    assert title("VT999") == "VT999"


def test_the_data_checks_labels_are_the_registrys_titles():
    from vtc.runtime.validate import label

    assert label("VT409") == "listed file missing"
    assert label("VT422") == "duplicate row (warning)"  # the table marks warnings, which do not stop a run


# --- severities at the call sites ----------------------------------------------------------------------------------

_HELPERS = {"error": "error", "warning": "warning", "note": "note"}


def _constants(tree: pyast.Module) -> dict[str, str]:
    """Module-level names bound to a code string (`MISSING_CLAUSE = "VT105"`)."""
    out = {}
    for node in tree.body:
        if isinstance(node, pyast.Assign) and isinstance(node.value, pyast.Constant):
            for target in node.targets:
                if isinstance(target, pyast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def _code_of(node, constants: dict[str, str]) -> str | None:
    if isinstance(node, pyast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
        return node.value
    if isinstance(node, pyast.Name) and CODE.fullmatch(constants.get(node.id, "")):
        return constants[node.id]
    return None


def _name(func) -> str | None:
    return func.id if isinstance(func, pyast.Name) else func.attr if isinstance(func, pyast.Attribute) else None


def severities_at_call_sites() -> list[tuple[str, str, str]]:
    """(code, severity, file:line) for every call whose code and severity are both written out:
    ``error("VT412", ...)``, ``warning(...)``, ``note(...)``, ``Diagnostic("VT412", Severity.ERROR, ...)`` and the
    model registry's ``Problem("VT202", "note", ...)``."""
    found = []
    for path in source_files():
        tree = pyast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)
        for node in pyast.walk(tree):
            if not isinstance(node, pyast.Call) or not node.args:
                continue
            name, code = _name(node.func), _code_of(node.args[0], constants)
            if code is None:
                continue
            severity = None
            if name in _HELPERS:
                severity = _HELPERS[name]
            elif name == "Diagnostic" and len(node.args) > 1 and isinstance(node.args[1], pyast.Attribute):
                severity = node.args[1].attr.lower()
            elif name == "Problem" and len(node.args) > 1 and isinstance(node.args[1], pyast.Constant):
                severity = node.args[1].value
            if severity is not None:
                found.append((code, severity, f"{path.relative_to(SOURCE)}:{node.lineno}"))
    return found


def test_severities_at_call_sites_agree_with_the_registry():
    sites = severities_at_call_sites()
    assert len({code for code, _, _ in sites}) >= 80, "the call-site scan finds too little: is it out of date?"
    wrong = [f"{where}: {code} as {severity}, registered as {' or '.join(CODES[code].severity)}"
             for code, severity, where in sites if code in CODES and severity not in CODES[code].severity]
    assert not wrong, "\n".join(wrong)


# --- the examples --------------------------------------------------------------------------------------------------

RECIPE_EXAMPLES = sorted(code for code, entry in CODES.items() if entry.example_is_recipe)


@pytest.mark.parametrize("code", RECIPE_EXAMPLES)
def test_a_recipe_example_gets_what_the_registry_shows(code, tmp_path, monkeypatch):
    """Compiled in an empty folder as xray.vt: the diagnostic of the code, rendered, is the registry's `reported`
    (rustc's error index compiles its examples too)."""
    from vtc.compiler.pipeline import compile_source

    monkeypatch.chdir(tmp_path)
    entry = CODES[code]
    result = compile_source(entry.example, "xray.vt", base_dir=str(tmp_path))
    rendered = [d.render(result.sources) for d in result.diagnostics if d.code == code]
    assert entry.reported in rendered, (
        f"the example of {code} in src/vtc/codes.py no longer shows what vtc says; vtc says:\n\n"
        + "\n\n".join(rendered or [d.render(result.sources) for d in result.diagnostics])
        + "\n\nupdate the entry, then run .venv/bin/python tools/gen_diagnostics_doc.py")


# --- the document ------------------------------------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("gen_diagnostics_doc", ROOT / "tools" / "gen_diagnostics_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_document_is_generated_from_the_registry():
    generator = _generator()
    current = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    assert current == generator.generate(), (
        f"docs/diagnostics.md is not what src/vtc/codes.py gives: run {generator.COMMAND}")


def test_each_code_is_documented_once_and_the_readme_links_the_document():
    text = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    headings = Counter(re.findall(r"^### (VT\d{3})$", text, re.M))
    rows = Counter(re.findall(r"^\| \[(VT\d{3})\]", text, re.M))
    assert headings == rows == Counter(set(CODES)), "each code needs one heading and one table row"
    assert "](docs/diagnostics.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
