"""`vtc lsp`: the analysis functions in-process, and the server through a client that speaks JSON-RPC over stdio.

The subprocess tests share one server (a module fixture) and run in file order: open, ask, change, shut down.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vtc.cli import cli
from vtc.compiler.clauses import BY_KEYWORD, CLAUSE_KEYWORDS
from vtc.compiler.fmt import format_source
from vtc.compiler.pipeline import compile_file, compile_source
from vtc.compiler.resolve import DATA_FORMATS
from vtc.compiler.validate import schema
from vtc.lsp import analysis, missing_server
from vtc.lsp.analysis import PLAN_POINTERS
from vtc.registry import load_registry

# The server's tests need pygls (the lsp extra, which `make setup` installs); the analysis tests do not.
needs_pygls = pytest.mark.skipif(missing_server() is not None,
                                 reason="the lsp extra (pip install 'vtc[lsp]') is not installed")

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.vt"))

BASE = "batch 4\nlearning rate 1e-4\n"
GOOD = 'include "base.vt"\nfinetune vision, mlp on qwen2.5-vl\nfrom ./data\nschedule cosine\n'


@pytest.fixture
def folder(tmp_path):
    """A recipe folder: base.vt (included), a data folder, a subfolder holding a recipe and a text file."""
    (tmp_path / "base.vt").write_text(BASE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "other.vt").write_text("batch 2\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    return tmp_path


def codes(found):
    return [d["code"] for d in found]


def position(text: str, needle: str, after: int = 0) -> tuple[int, int]:
    """The (line, character) of the first ``needle`` in ``text`` (ASCII lines), plus ``after`` characters."""
    index = text.index(needle) + after
    line = text.count("\n", 0, index)
    return line, index - (text.rfind("\n", 0, index) + 1)


def apply(text: str, edit: dict) -> str:
    doc = analysis.Text(text)
    r = edit["range"]
    start = doc.offset_of(r["start"]["line"], r["start"]["character"])
    end = doc.offset_of(r["end"]["line"], r["end"]["character"])
    return text[:start] + edit["newText"] + text[end:]


# --- diagnostics ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_diagnostics_are_those_of_vtc_check(recipe):
    path = str(recipe)
    found = analysis.diagnostics(recipe.read_text(encoding="utf-8"), path)
    expected = [d for d in compile_file(path).diagnostics if d.span is None or d.span.file == path]
    assert codes(found) == [d.code for d in expected]
    for lsp, d in zip(found, expected):
        assert lsp["message"].startswith(d.message)
        assert lsp["range"]["start"]["line"] == max(d.span.line - 1, 0)
        assert lsp["data"]["help"] == d.help


def test_a_diagnostic_has_code_severity_range_and_help(folder):
    text = GOOD.replace("schedule cosine", "schedule cosin")
    [d] = [d for d in analysis.diagnostics(text, str(folder / "main.vt")) if d["code"] == "VT102"]
    assert d["severity"] == 1 and d["source"] == "vtc"
    assert d["range"] == {"start": {"line": 3, "character": 9}, "end": {"line": 3, "character": 14}}
    assert "did you mean `cosine`?" in d["message"] and d["data"]["suggestion"] == "cosine"


def test_ranges_count_utf16_code_units(folder):
    # 😀 is one character and two UTF-16 code units; é is one of each.
    text = 'ask "é😀" batch 8 sedd 3\nfinetune all on qwen2.5-vl\nfrom ./data\n'
    [d] = [d for d in analysis.diagnostics(text, str(folder / "main.vt")) if d["code"] == "VT010"]
    assert d["range"]["start"] == {"line": 0, "character": 18}
    assert d["range"]["end"] == {"line": 0, "character": 22}
    [d8] = [d for d in analysis.diagnostics(text, str(folder / "main.vt"), "utf-8") if d["code"] == "VT010"]
    assert d8["range"]["start"] == {"line": 0, "character": 21}  # é is 2 bytes, 😀 4


def test_lines_count_as_lsp_counts_them(folder):
    # \x0c (form feed) ends a line for str.splitlines (the compiler's count: `b` starts a clause) but not for LSP.
    text = "# a\x0cb\nfinetune all on qwen2.5-vl\nfrom ./data\nbatch x\n"
    found = [d for d in analysis.diagnostics(text, str(folder / "main.vt")) if d["code"].startswith("VT0")]
    assert [(d["code"], d["range"]["start"]) for d in found] == [("VT010", {"line": 0, "character": 4}),
                                                                 ("VT012", {"line": 3, "character": 6})]
    assert analysis.Text(text).lsp_line(3) == "batch x"


def test_an_error_in_an_included_file_is_shown_on_the_include_line(folder):
    (folder / "base.vt").write_text("batch 4\nschedul cosine\n", encoding="utf-8")
    (folder / "outer.vt").write_text('include "base.vt"\n', encoding="utf-8")
    text = '# top\ninclude "outer.vt"\nfinetune all on qwen2.5-vl\nfrom ./data\n'
    found = analysis.diagnostics(text, str(folder / "main.vt"))
    [d] = [d for d in found if d["code"] == "VT010"]
    assert d["range"]["start"]["line"] == 1
    assert d["message"].startswith("in base.vt:2: unknown clause `schedul`")
    assert "suggestion" not in d["data"]  # the fix belongs in base.vt, not on this line


def test_a_bug_in_the_compiler_is_a_diagnostic_not_a_dead_server(folder, monkeypatch):
    def broken(text, path):
        raise RuntimeError("boom")

    monkeypatch.setattr(analysis, "compile_buffer", broken)
    [d] = analysis.diagnostics(GOOD, str(folder / "main.vt"))
    assert d["code"] == "VT567" and "RuntimeError: boom" in d["message"]


# --- quick fixes ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrong, right, code", [
    ("with respones_only", "with responses_only", "VT101"),
    ("schedule cosin", "schedule cosine", "VT102"),
    ("finetune vison, mlp on qwen2.5-vl", "finetune vision, mlp on qwen2.5-vl", "VT102"),
    ("finetune all on qwen2.5-vll", "finetune all on qwen2.5-vl", "VT201"),
    ("schedul cosine", "schedule cosine", "VT010"),
    ("train for 2 epocs", "train for 2 epochs", "VT012"),
    ("learning rate 2e-4, visio 2e-5", "learning rate 2e-4, vision 2e-5", "VT213"),
])
def test_a_did_you_mean_has_a_quick_fix_that_fixes_it(folder, wrong, right, code):
    base = "finetune all on qwen2.5-vl\nfrom ./data\n"
    text = base + wrong + "\n" if not wrong.startswith("finetune") else wrong + "\nfrom ./data\n"
    found = [d for d in analysis.diagnostics(text, str(folder / "main.vt")) if d["code"] == code]
    assert found, analysis.diagnostics(text, str(folder / "main.vt"))
    uri = (folder / "main.vt").as_uri()
    [action] = analysis.code_actions(uri, found)
    assert action["kind"] == "quickfix"
    [edit] = action["edit"]["changes"][uri]
    fixed = apply(text, edit)
    assert right in fixed
    assert code not in [d.code for d in compile_source(fixed, str(folder / "main.vt")).diagnostics]


@pytest.mark.parametrize("wrong, right, code", [
    ("from ./data format sharegp", "from ./data format sharegpt", "VT204"),
    ("from ./data\nresize between 200k and 1mb pixels", "resize between 200k and 1m pixels", "VT208"),
    ("from data/rows.jsonll", "from ./data/rows.jsonl", "VT401"),  # a folder beside the recipe, misspelled
    ('from "data/rows.jsonll"', "from ./data/rows.jsonl", "VT401"),  # the quotes go with the written path
])
def test_the_compilers_other_did_you_means_have_quick_fixes(folder, wrong, right, code):
    path = str(folder / "main.vt")
    text = "finetune all on qwen2.5-vl\n" + wrong + "\n"
    found = [d for d in analysis.diagnostics(text, path) if d["code"] == code]
    [action] = analysis.code_actions(folder.as_uri(), found)
    [edit] = action["edit"]["changes"][folder.as_uri()]
    fixed = apply(text, edit)
    assert right in fixed
    assert code not in [d.code for d in compile_source(fixed, path, base_dir=str(folder)).diagnostics]


def test_no_quick_fix_for_a_folder_name_that_needs_quotes(folder):
    (folder / "data" / "my rows").mkdir()
    found = [d for d in analysis.diagnostics("finetune all on qwen2.5-vl\nfrom data/my_rowz\n", str(folder / "main.vt"))
             if d["code"] == "VT401"]
    assert found and "did you mean the folder `./data/my rows`?" in found[0]["message"]
    assert analysis.code_actions(folder.as_uri(), found) == []


def test_no_quick_fix_without_a_suggestion(folder):
    text = "finetune all on qwen2.5-vl\nfrom ./data\nschedule zzzzzz\n"
    found = analysis.diagnostics(text, str(folder / "main.vt"))
    assert "VT102" in codes(found)
    assert analysis.code_actions("file:///x.vt", found) == []


# --- completion -----------------------------------------------------------------------------------------------------


def labels(text, folder, line=0, character=None, name="main.vt"):
    character = len(text.split("\n")[line]) if character is None else character
    return [i["label"] for i in analysis.completion(text, str(folder / name), line, character)]


def test_clause_keywords_at_a_line_start_with_their_example(folder):
    items = analysis.completion("fin", str(folder / "main.vt"), 0, 3)
    assert [i["label"] for i in items] == list(CLAUSE_KEYWORDS)
    assert items[0]["detail"] == BY_KEYWORD["finetune"].example
    assert items[0]["textEdit"]["range"]["start"] == {"line": 0, "character": 0}


def test_completion_after_each_clause_offers_the_validators_lists(folder):
    props = schema()["properties"]
    assert labels("finetune vision, ", folder)[:6] == props["parts"]["items"]["enum"]
    assert labels("finetune vision on ", folder) == load_registry().names()
    assert labels("with ", folder) == sorted(props["flags"]["properties"])
    assert labels("without responses_only, ", folder) == sorted(props["flags"]["properties"])
    assert labels("using ", folder) == props["method"]["enum"]
    assert labels("precision ", folder) == props["precision"]["enum"]
    assert labels("schedule ", folder) == props["schedule"]["enum"]
    assert labels("optimizer adamw", folder) == props["optimizer"]["enum"]
    assert labels("metric cer, ", folder) == props["metrics"]["items"]["enum"]
    assert labels("export ", folder) == props["exports"]["items"]["enum"]
    assert labels("from ./data format ", folder) == list(DATA_FORMATS)
    assert labels("learning rate 2e-4, ", folder) == ["vision", "projector", "language"]
    assert labels("train for 3 ", folder)[:2] == ["epochs", "steps"]
    assert labels('ask "with ', folder) == []  # inside a string
    assert labels("batch 8  # with ", folder) == []  # in a comment
    assert labels("batch 8 sch", folder) == list(CLAUSE_KEYWORDS)  # the one-line form: the next clause


def test_paths_after_include_and_from(folder):
    assert labels('include "', folder) == ["base.vt", "data/", "more/"]
    assert labels("include more/", folder) == ["other.vt"]
    assert labels("from ", folder) == ["base.vt", "data/", "more/", "notes.txt"]
    items = analysis.completion("from ./data/r", str(folder / "main.vt"), 0, 13)
    assert [i["label"] for i in items] == ["rows.jsonl"]
    assert items[0]["textEdit"]["range"]["start"]["character"] == 12  # only the name after the last slash


# --- hover, definition, formatting ----------------------------------------------------------------------------------


def hover_text(text, folder, needle, after=0, name="main.vt"):
    line, character = position(text, needle, after)
    found = analysis.hover(text, str(folder / name), line, character)
    return found["contents"]["value"] if found else None


def test_hover_gives_meaning_default_and_the_value_in_effect_with_its_origin(folder):
    text = GOOD + "seed 7\n"
    seed = hover_text(text, folder, "seed", 1)
    assert schema()["properties"]["seed"]["description"] in seed
    assert "`training.seed` = `7` (this file, line 5)" in seed and "Default: `seed` `3407`" in seed
    batch = hover_text(text + "batch 2\n", folder, "batch", 2)
    assert "`training.batch` = `2` (this file, line 6)" in batch
    schedule = hover_text(text, folder, "cosine")
    assert "`training.schedule` = `cosine` (this file, line 4)" in schedule
    model = hover_text(text, folder, "qwen2.5-vl")
    assert "the registry's `qwen2.5-vl-7b`" in model
    assert "`model.family` = `qwen2_5_vl` (the model registry (qwen2.5-vl))" in model


def test_hover_says_a_value_comes_from_an_include_or_the_default(folder):
    text = GOOD + "learning rate 3e-4\n"
    include = hover_text(text, folder, "include", 2)
    assert "`training.batch` = `4` (base.vt, line 1)" in include
    assert "learning_rate" not in include  # overridden on line 5
    assert "learning_rate` = `1e-4` (base.vt, line 2)" in hover_text(GOOD, folder, "include", 2)
    rate = hover_text(text, folder, "learning rate", 2)
    assert "`training.learning_rate` = `3e-4` (this file, line 5)" in rate
    optimizer = hover_text(text + "optimizer adamw_torch\n", folder, "optimizer")
    assert "`training.optimizer` = `adamw_torch` (this file, line 6)" in optimizer
    warmup = hover_text(text + "warmup 3%\n", folder, "warmup")
    assert "`training.warmup_ratio` = `0.03` (this file, line 6)" in warmup
    flags = hover_text(text + "with rslora\n", folder, "rslora")
    assert "`lora.rslora` = `on` (this file, line 6)" in flags
    assert "`training.gradient_checkpointing` = `on` (vtc's default)" in flags
    assert schema()["properties"]["flags"]["properties"]["rslora"]["description"] in flags


def test_hover_names_the_include_that_set_a_value_with_its_file_and_line(folder):
    (folder / "more" / "other.vt").write_text("# sizes\nbatch 2\nseed 11\n", encoding="utf-8")
    text = 'batch 8\ninclude "more/other.vt"\nfinetune all on qwen2.5-vl\nfrom ./data\nseed 5\n'
    # `batch 8` comes before the include, whose `batch 2` is the one in effect.
    assert "`training.batch` = `2` (more/other.vt, line 2)" in hover_text(text, folder, "batch")
    assert "`training.seed` = `5` (this file, line 5)" in hover_text(text, folder, "seed")
    include = hover_text(text, folder, "include")
    assert "`training.batch` = `2` (more/other.vt, line 2)" in include and "seed" not in include


def test_hover_gives_resize_from_the_models_family(folder):
    for model, size in (("qwen2.5-vl", 512), ("llama-3.2-vision", 560)):
        text = f"finetune all on {model}\nfrom ./data\n"  # no `resize`: the model's family decides
        on_model = hover_text(text, folder, model)
        assert f"`images.resize.size` = `{size}` (the model registry ({model}))" in on_model
        written = hover_text(text + "resize 448\n", folder, "resize")
        assert "`images.resize.size` = `448` (this file, line 3)" in written
        assert "Default: `resize`: the model family's" in written
    budget = hover_text("finetune all on qwen2.5-vl\nfrom ./data\nresize up to 1m pixels\n", folder, "resize")
    assert "`images.resize.max_pixels` = `1000000` (this file, line 3)" in budget
    assert "`images.resize.min_pixels` = `3136`" in budget  # the model's own minimum, as `up to` keeps it


def test_hover_gives_a_learning_rate_one_way_however_it_is_written(folder):
    for written in ("3e-4", "0.0003", "3E-4", "0.00030"):
        text = f"finetune all on qwen2.5-vl\nfrom ./data\nlearning rate {written}, vision 2e-5\n"
        rate = hover_text(text, folder, "learning")
        assert "`training.learning_rate` = `3e-4` (this file, line 3)" in rate, rate
        assert "`training.part_learning_rates` = `vision 2e-5` (this file, line 3)" in rate


def test_hover_says_what_a_derived_value_comes_from(folder):
    text = "finetune all on qwen2.5-vl\nfrom ./data\n"
    data = hover_text(text, folder, "from")
    assert "`data.train.kind` = `path` (derived from the path as written" in data
    assert "`data.train.source` = `./data` (this file, line 2)" in data
    assert "`data.train.format` = `auto` (vtc's default)" in data
    lora = hover_text(text + "lora rank 8\n", folder, "lora")
    assert "`lora.target_modules` = `" in lora and "(derived from the model's layers" in lora


def test_every_clause_names_plan_values_that_plans_have():
    """PLAN_POINTERS holds each clause keyword (but `include`), each pointer a value of the golden plans."""
    assert set(PLAN_POINTERS) == set(CLAUSE_KEYWORDS) - {"include"}
    pointers = set()
    for plan in (ROOT / "tests" / "golden" / "plans").glob("*.json"):
        pointers |= set(json.loads(plan.read_text(encoding="utf-8"))["provenance"])
    for keyword, wanted in PLAN_POINTERS.items():
        for p in wanted:
            assert any(q == p or q.startswith(p + "/") for q in pointers), (keyword, p)


def test_hover_reads_the_compile_of_the_diagnostics_and_sees_an_include_change(folder, monkeypatch):
    import vtc.compiler.pipeline as pipeline

    calls = []
    real = pipeline.compile_source
    monkeypatch.setattr(pipeline, "compile_source", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    path = str(folder / "main.vt")
    text = GOOD + "seed 9\n"
    analysis.diagnostics(text, path)
    assert "`training.seed` = `9`" in hover_text(text, folder, "seed")
    assert "`training.batch` = `4` (base.vt, line 1)" in hover_text(text, folder, "include")
    assert calls == [path]  # one compile for the keystroke's diagnostics and both hovers
    (folder / "base.vt").write_text("# changed\nbatch 6\n", encoding="utf-8")
    os.utime(folder / "base.vt", ns=(1, 1))  # a different stamp, whatever the file system's clock resolution
    assert "`training.batch` = `6` (base.vt, line 2)" in hover_text(text, folder, "include")
    assert len(calls) == 2
    analysis.forget(path)
    analysis.diagnostics(text, path)
    assert len(calls) == 3
    analysis.diagnostics(GOOD, path)  # a keystroke, then its undo: each text is compiled (only the last is kept)
    analysis.diagnostics(text, path)
    assert len(calls) == 5


def test_hover_on_a_value_left_to_its_default(folder):
    text = "finetune all on qwen2.5-vl\nfrom ./data\nlora rank 8\n"
    lora = hover_text(text, folder, "rank")
    assert "`lora.rank` = `8` (this file, line 3)" in lora and "`lora.rank` `16`" in lora  # and its default
    assert "`lora.alpha` = `16` (vtc's default)" in lora


def test_hover_still_explains_a_clause_when_the_recipe_has_errors(folder):
    text = "finetune all on nosuchmodel\nschedule zzz\noptimizer\nseed 4\nlearning rate 0.0003\n"
    assert schema()["properties"]["optimizer"]["description"] in hover_text(text, folder, "optimizer")
    assert schema()["properties"]["schedule"]["description"] in hover_text(text, folder, "schedule")
    seed = hover_text(text, folder, "seed")
    assert "As written (the recipe has errors" in seed and "`seed` = `4` (this file, line 4); default `3407`" in seed
    assert "`learning_rate` = `3e-4` (this file, line 5)" in hover_text(text, folder, "learning")
    assert hover_text("# just a comment with batch\n", folder, "batch") is None


def test_definition_of_an_include_is_the_included_file(folder):
    text = GOOD
    assert analysis.definition(text, str(folder / "main.vt"), 0, 12) == str(folder / "base.vt")
    assert analysis.definition(text, str(folder / "main.vt"), 1, 3) is None
    assert analysis.definition('include "gone.vt"\n', str(folder / "main.vt"), 0, 12) is None


def test_formatting_is_vtc_fmt_as_one_edit(folder):
    text = "batch 8\nfinetune all on qwen2.5-vl   # the model\nfrom ./data\n"
    [edit] = analysis.formatting(text, str(folder / "main.vt"))
    assert apply(text, edit) == format_source(text, str(folder / "main.vt"))[0]
    formatted = apply(text, edit)
    assert analysis.formatting(formatted, str(folder / "main.vt")) == []
    assert analysis.formatting("batch 8 9 9\n", str(folder / "main.vt")) == []  # does not parse


# --- never a crash --------------------------------------------------------------------------------------------------

FRAGMENTS = ["finetune", " vision", ",", " on ", "qwen2.5-vl", "include", ' "base.vt"', "with", " respones_only",
             "from ./data", "batch", " 8", "\n", "\r\n", "\r", "#", '"', "é", "😀", "\x0c", "\t", "learning rate",
             " 2e-4", "lora rank", "resize between 200k and 1m pixels", "video 2 fps", "\\", "\x00", "\ufeff"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=14),
       line=st.integers(0, 6), character=st.integers(0, 40))
def test_any_text_gets_well_formed_answers(folder, parts, line, character):
    text = "".join(parts)
    path = str(folder / "main.vt")
    doc = analysis.Text(text)
    lines = len(doc.lsp_starts)

    def inside(r):
        for p in (r["start"], r["end"]):
            assert 0 <= p["line"] < lines
            assert 0 <= p["character"] <= doc.units(doc.lsp_line(p["line"]))
        assert (r["start"]["line"], r["start"]["character"]) <= (r["end"]["line"], r["end"]["character"])

    found = analysis.diagnostics(text, path)
    assert "VT567" not in codes(found)  # the compiler itself never raised
    for d in found:
        inside(d["range"])
    # The unguarded functions (the public ones turn an exception into no answer): none may raise.
    for item in analysis._completion(text, path, line, character):
        assert item["textEdit"]["range"]["start"]["line"] == line
    found = analysis._hover(text, path, line, character)
    if found:
        inside(found["range"])
    for edit in analysis.formatting(text, path):
        inside(edit["range"])
        assert apply(text, edit) == format_source(text, path)[0]
    analysis.definition(text, path, line, character)


# --- `vtc lsp` without pygls ----------------------------------------------------------------------------------------


def test_without_pygls_vtc_lsp_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygls", None)
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)
    problem = missing_server()
    assert problem.code == "VT566" and "pip install 'vtc[lsp]'" in problem.help
    result = CliRunner().invoke(cli, ["lsp", "--stdio"])
    assert result.exit_code == 1
    assert "error[VT566]" in result.output and "vtc[lsp]" in result.output


@needs_pygls
def test_the_language_server_never_imports_the_training_stack():
    code = ("import sys, vtc.lsp.server, vtc.lsp.analysis as a; a.diagnostics(open(sys.argv[1]).read(), sys.argv[1]);"
            " a.hover(open(sys.argv[1]).read(), sys.argv[1], 5, 1);"
            " print(sorted(m for m in ('torch', 'transformers', 'av') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "recipes" / "receipts.vt")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the server over stdio --------------------------------------------------------------------------------------------


class Client:
    """A minimal LSP client: Content-Length framed JSON-RPC over the server's stdin and stdout."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "vtc", "lsp", "--stdio"], cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages: queue.Queue = queue.Queue()
        self.next_id = 0
        self.diagnostics: dict[str, list] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = stream.readline()
                if not line:
                    self.messages.put(None)
                    return
                line = line.decode("ascii").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            self.messages.put(json.loads(body))

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self.proc.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body)
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self.send({"method": method, "params": params})

    def _next(self) -> dict:
        # A generous bound so that a broken server fails the test instead of hanging it (not a speed assertion).
        message = self.messages.get(timeout=60)
        assert message is not None, self.proc.stderr.read().decode()
        if message.get("method") == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        return message

    def request(self, method: str, params: dict):
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self._next()
            if message.get("id") == self.next_id and "method" not in message:
                assert "error" not in message, message
                return message["result"]

    def wait_diagnostics(self, uri: str) -> list:
        self.diagnostics.pop(uri, None)
        while uri not in self.diagnostics:
            self._next()
        return self.diagnostics[uri]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if missing_server() is not None:
        pytest.skip("the lsp extra (pip install 'vtc[lsp]') is not installed")
    folder = tmp_path_factory.mktemp("lsp")
    (folder / "base.vt").write_text(BASE, encoding="utf-8")
    (folder / "data").mkdir()
    client = Client(folder)
    client.folder = folder
    yield client
    if client.proc.poll() is None:
        client.proc.kill()
    client.proc.wait()


def test_server_initialize_announces_the_features(server):
    result = server.request("initialize", {"processId": os.getpid(), "rootUri": server.folder.as_uri(),
                                           "capabilities": {}})
    caps = result["capabilities"]
    for feature in ("completionProvider", "hoverProvider", "definitionProvider", "documentFormattingProvider",
                    "codeActionProvider"):
        assert caps.get(feature), feature
    assert result["serverInfo"]["name"] == "vtc"
    server.notify("initialized", {})


def test_server_publishes_diagnostics_and_answers_requests(server):
    uri = (server.folder / "main.vt").as_uri()
    text = GOOD.replace("schedule cosine", "with respones_only")
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "vt", "version": 1,
                                                            "text": text}})
    found = server.wait_diagnostics(uri)
    [wrong] = [d for d in found if d["code"] == "VT101"]
    assert wrong["range"] == {"start": {"line": 3, "character": 5}, "end": {"line": 3, "character": 18}}
    actions = server.request("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": wrong["range"], "context": {"diagnostics": [wrong]}})
    assert [a["edit"]["changes"][uri][0]["newText"] for a in actions] == ["responses_only"]

    items = server.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                       "position": {"line": 3, "character": 5}})
    assert "responses_only" in [i["label"] for i in items["items"]]
    hover = server.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                  "position": {"line": 0, "character": 2}})
    assert "`batch` = `4` (base.vt, line 1)" in hover["contents"]["value"]
    where = server.request("textDocument/definition", {"textDocument": {"uri": uri},
                                                       "position": {"line": 0, "character": 12}})
    assert where["uri"] == (server.folder / "base.vt").as_uri()
    edits = server.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                       "options": {"tabSize": 4, "insertSpaces": True}})
    assert len(edits) == 1 and edits[0]["newText"] == format_source(text, str(server.folder / "main.vt"))[0]


def test_server_updates_diagnostics_as_the_user_types(server):
    uri = (server.folder / "main.vt").as_uri()
    server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                             "contentChanges": [{"text": GOOD}]})
    found = server.wait_diagnostics(uri)
    assert [d for d in found if d["severity"] == 1] == []
    hover = server.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                  "position": {"line": 0, "character": 2}})
    assert "`training.batch` = `4` (base.vt, line 1)" in hover["contents"]["value"]  # now from the plan


def test_server_shuts_down_and_exits(server):
    assert server.request("shutdown", None) is None
    server.notify("exit", None)
    assert server.proc.wait(timeout=60) == 0
