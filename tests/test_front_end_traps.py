"""Issue 10, the front end's traps: every problem at once, Windows paths, near-miss keywords, a clause broken over
lines, a clause overridden by an include, and what `vtc plan` / `vtc explain` say (plurals, long values, the test
answers, steps and time with --data).

Each test feeds what a new user wrote and checks the diagnostic (code, place, message, help), and, where the help
proposes a rewrite, that writing it gives no syntax error: advice must not lead into a second error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vtc.cli import cli
from vtc.compiler.explain import explain_plan, time_estimate, training_steps
from vtc.compiler.parser import parse_source
from vtc.compiler.pipeline import compile_file, compile_source
from vtc.compiler.plan import summarize_plan
from vtc.diagnostics import Severity

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "recipes" / "demo-shapes.vt"


def _suggested(help_text: str) -> str:
    """The first `code` of a help line: the text the help says to write."""
    found = re.search(r"`([^`]+)`", help_text)
    assert found, help_text
    return found.group(1)


def _parses(text: str) -> bool:
    recipe, diagnostics = parse_source(text, "r.vt")
    return recipe is not None and not any(d.is_error for d in diagnostics)


# --- item 6: every problem at once --------------------------------------------------------------------------------


def test_unknown_part_and_misspelt_model_are_reported_together(tmp_path):
    result = compile_source("finetune everything on qwen-2.5-vl\nfrom ./x\n", "r.vt", base_dir=str(tmp_path))
    by_code = {d.code: d for d in result.diagnostics}
    assert result.plan is None
    part, model = by_code["VT102"], by_code["VT201"]
    assert part.message == "unknown part `everything`" and part.help == "did you mean `all`?"
    assert (part.span.line, part.span.column) == (1, 10)
    assert model.message == "unknown model `qwen-2.5-vl`" and "did you mean `qwen2.5-vl`?" in model.help
    assert (model.span.line, model.span.column) == (1, 24)


def test_a_known_model_is_not_reported_when_only_the_part_is_wrong(tmp_path):
    result = compile_source("finetune everything on qwen2.5-vl\nfrom ./x\n", "r.vt", base_dir=str(tmp_path))
    assert [d.code for d in result.diagnostics if d.is_error] == ["VT102"]


# --- item 7: Windows paths ------------------------------------------------------------------------------------------


def test_a_bare_windows_path_says_backslash_and_offers_both_forms_that_work():
    text = "finetune all on qwen2.5-vl\nfrom C:\\Users\\me\\xrays batch 2\n"
    recipe, diagnostics = parse_source(text, "r.vt")
    [d] = diagnostics
    assert d.code == "VT004" and d.message == "unexpected character `\\` (backslash)"
    assert (d.span.line, d.span.column) == (2, 8)
    assert "use forward slashes: `C:/Users/me/xrays`" in d.help
    # Both rewrites the help offers parse, and mean the path: the advice leads to no second error.
    forward, quoted = re.findall(r"`([^`]+)`", d.help)
    for written in (forward, quoted):
        fixed = text.replace("C:\\Users\\me\\xrays", written)
        recipe, problems = parse_source(fixed, "r.vt")
        assert recipe is not None and problems == [], (fixed, problems)
        source = next(st for st in recipe.statements if type(st).__name__ == "From").source.text
        assert source in ("C:/Users/me/xrays", "C:\\Users\\me\\xrays")


@pytest.mark.parametrize("written, meant", [
    ('"C:\\Users\\me\\xrays"', "C:\\Users\\me\\xrays"),   # pasted from Explorer: backslashes stand for themselves
    ('"C:\\\\Users\\\\me"', "C:\\Users\\me"),              # `\\` is one backslash, as before
    ('"./say \\"hi\\""', './say "hi"'),                    # `\"` is a quote, as before
])
def test_a_quoted_path_keeps_its_backslashes(written, meant, tmp_path):
    result = compile_source(f"finetune all on qwen2.5-vl\nfrom {written}\n", "r.vt", base_dir=str(tmp_path))
    assert not [d for d in result.diagnostics if d.code in ("VT004", "VT005", "VT006")], result.diagnostics
    assert result.plan["data"]["train"]["source"] == meant
    assert result.plan["data"]["train"]["kind"] == "path"


def test_fmt_keeps_a_pasted_windows_path_and_its_meaning():
    from vtc.compiler.fmt import format_source

    text = ('finetune all on qwen2.5-vl\nfrom "C:\\Users\\me\\xrays"\nask "say \\"hi\\" \\\\ ok"\n'
            'save to "C:\\\\out\\\\"\n')
    formatted, problems = format_source(text, "r.vt")
    assert problems == []
    assert 'from "C:\\Users\\me\\xrays"' in formatted  # as pasted: no backslash doubled
    assert 'save to "C:\\out\\\\"' in formatted    # only the last one, before the quote, stays doubled
    assert 'ask "say \\"hi\\" \\\\ ok"' in formatted  # text: every backslash doubled, as before

    def values(source):
        recipe, _ = parse_source(source, "r.vt")
        return sorted(str(getattr(st, "source", getattr(st, "value", None)).text) for st in recipe.statements
                      if hasattr(st, "source") or hasattr(st, "value"))

    assert values(formatted) == values(text)


def test_text_still_refuses_unknown_escapes():
    _, diagnostics = parse_source('ask "Line one.\\nLine two."\n', "r.vt")
    [d] = diagnostics
    assert d.code == "VT006" and "a line break cannot be written" in d.help


def test_a_backslash_before_the_closing_quote_is_explained():
    _, diagnostics = parse_source('from "C:\\data\\"\n', "r.vt")
    [d] = diagnostics
    assert d.code == "VT005" and "a backslash just before" in d.help
    assert _parses('from "C:\\data"\n') and _parses('from "C:/data/"\n')


# --- item 8: suggestions that hit -----------------------------------------------------------------------------------


@pytest.mark.parametrize("line, clause", [
    ("epochs 3", "train for 3 epochs"),
    ("epoch 3", "train for 3 epochs"),
    ("epochs 1", "train for 1 epoch"),
    ("epochs: 3", "train for 3 epochs"),
    ("epochs=3", "train for 3 epochs"),
    ("num_train_epochs 2", "train for 2 epochs"),
    ("steps 100", "train for 100 steps"),
    ("max_steps 60", "train for 60 steps"),
    ("lr 2e-4", "learning rate 2e-4"),
    ("rank 8", "lora rank 8"),
    ("lora_alpha 32", "lora alpha 32"),
    ("batch_size 4", "batch 4"),
    ("gradient_accumulation_steps 8", "accumulate 8"),
    ("max_seq_length 4096", "max length 4096"),
    ("warmup_steps 10", "warmup 10 steps"),
    ('prompt "What is shown?"', 'ask "What is shown?"'),
    ("output_dir ./runs/x", "save to ./runs/x"),
    ("batch 2 epochs 3", "train for 3 epochs"),
])
def test_near_miss_keywords_get_the_clause_with_the_users_value(line, clause):
    _, diagnostics = parse_source(line + "\n", "r.vt")
    [d] = diagnostics
    assert d.code == "VT010" and d.help == f"did you mean `{clause}`?", d.help
    assert _parses(clause + "\n")


def test_a_path_with_a_space_is_not_taken_for_a_near_miss():
    _, diagnostics = parse_source("from ./my data\n", "r.vt")
    [d] = diagnostics
    assert d.code == "VT013" and 'put it in double quotes: `"./my data"`' in d.help


@pytest.mark.parametrize("line, clause", [
    ("batch size 4", "batch 4"),
    ("learning rate of 2e-4", "learning rate 2e-4"),
    ("train for about 3 epochs", "train for 3 epochs"),
])
def test_an_extra_word_in_a_clause_is_named(line, clause):
    _, diagnostics = parse_source(line + "\n", "r.vt")
    [d] = diagnostics
    assert d.code == "VT012" and d.help.startswith(f"write `{clause}`, without"), d.help
    assert _parses(clause + "\n")


@pytest.mark.parametrize("line, lowered", [
    ("Finetune vision on Qwen2.5-VL", "finetune vision on Qwen2.5-VL"),
    ("Finetune Vision, MLP on ./MyModel From ./Data", "finetune vision, mlp on ./MyModel from ./Data"),
    ("Learning Rate 2e-4", "learning rate 2e-4"),
    ("Train For 3 Epochs", "train for 3 epochs"),
    ('ASK "Which Organ?"', 'ask "Which Organ?"'),
])
def test_capitalised_keywords_echo_the_users_own_line(line, lowered):
    _, diagnostics = parse_source(line + "\n", "r.vt")
    assert diagnostics[0].code == "VT010"
    assert diagnostics[0].help == f"keywords are lower-case: write `{lowered}`"
    assert _parses(lowered + "\n")


def test_the_lower_case_echo_trains_what_the_user_wrote(tmp_path):
    _, diagnostics = parse_source("Finetune vision on Qwen2.5-VL\n", "r.vt")
    fixed = _suggested(diagnostics[0].help)
    result = compile_source(fixed + "\nfrom ./x\n", "r.vt", base_dir=str(tmp_path))
    assert result.plan is not None, result.diagnostics
    assert result.plan["model"]["family"] == "qwen2_5_vl"
    assert {k for k in ("vision", "language") if result.plan["parts"][k]} == {"vision"}


def test_a_finetune_clause_broken_over_two_lines_is_one_diagnostic():
    text = "finetune vision, mlp\n  on qwen2.5-vl\nfrom ./xrays\n"
    recipe, diagnostics = parse_source(text, "r.vt", partial=True)
    [d] = diagnostics
    assert d.code == "VT014" and d.severity is Severity.ERROR
    assert d.message == "the `finetune` clause is broken over lines 1 and 2: a clause stays on one line"
    assert (d.span.line, d.span.column, d.span.end_column) == (1, 1, 21)
    assert [(s.line, s.column, label) for s, label in d.related] == [(2, 3, "continued here")]
    assert d.help == "write it on one line: `finetune vision, mlp on qwen2.5-vl`"
    assert _parses(_suggested(d.help.split(": ", 1)[1]) + "\n")
    # The clause is kept, its words placed where they stand, so that later stages check the model too.
    finetune = recipe.statements[0]
    assert finetune.model.text == "qwen2.5-vl" and (finetune.model.span.line, finetune.model.span.column) == (2, 6)


@pytest.mark.parametrize("text, keyword, lines", [
    ("from ./x\n  split train\n", "from", "lines 1 and 2"),
    ("lora rank 16\n  alpha 32 batch 2\n", "lora", "lines 1 and 2"),
    ("finetune vision,\n  mlp,\n  attention\n  on qwen2.5-vl\n", "finetune", "lines 1-4"),
    ("train for 3\n  epochs\n", "train for", "lines 1 and 2"),
])
def test_other_broken_clauses(text, keyword, lines):
    _, diagnostics = parse_source(text, "r.vt")
    assert [d.code for d in diagnostics] == ["VT014"], [d.message for d in diagnostics]
    assert diagnostics[0].message == f"the `{keyword}` clause is broken over {lines}: a clause stays on one line"


def test_an_unfinished_clause_before_a_blank_line_is_still_missing_its_value():
    _, diagnostics = parse_source("finetune vision, mlp\n\non qwen2.5-vl\n", "r.vt")
    assert [d.code for d in diagnostics] == ["VT011", "VT010"]


def test_two_whole_clauses_on_two_lines_are_not_a_broken_clause():
    recipe, diagnostics = parse_source("finetune vision on qwen2.5-vl\nfrom ./x split train\nbatch 2\n", "r.vt")
    assert diagnostics == [] and len(recipe.statements) == 3


# --- item 11: a clause overridden by an include ----------------------------------------------------------------------


def _with_base(tmp_path, main: str, base: str):
    (tmp_path / "base.vt").write_text(base)
    (tmp_path / "x").mkdir(exist_ok=True)
    (tmp_path / "r.vt").write_text(main)
    return compile_file(str(tmp_path / "r.vt"))


def test_a_clause_before_an_include_that_overrides_it_is_a_warning(tmp_path):
    result = _with_base(tmp_path, 'finetune all on qwen2.5-vl\nfrom ./x\nbatch 8\ninclude "base.vt"\n',
                        "seed 1\nbatch 2\n")
    [d] = [d for d in result.diagnostics if d.code == "VT305"]
    assert d.severity is Severity.WARNING
    assert d.message == ("`batch 8` on line 3 is overridden by `batch 2` in base.vt (line 2), which the `include` "
                         "on line 4 brings in after it")
    assert (Path(d.span.file).name, d.span.line) == ("r.vt", 3)
    assert [(Path(s.file).name, s.line, label) for s, label in d.related] == [
        ("base.vt", 2, "the value that applies"), ("r.vt", 4, "included here")]
    assert "move the `include` above line 3" in d.help
    assert result.plan["training"]["batch"] == 2  # what the warning says is what happens


@pytest.mark.parametrize("main, base", [
    ('finetune all on qwen2.5-vl\nfrom ./x\ninclude "base.vt"\nbatch 8\n', "batch 2\n"),   # include first
    ('finetune all on qwen2.5-vl\nfrom ./x\nbatch 2\ninclude "base.vt"\n', "batch 2\n"),   # the same value
    ('finetune all on qwen2.5-vl\nfrom ./x\nseed 9\ninclude "base.vt"\n', "batch 2\n"),    # another setting
])
def test_no_override_warning_when_nothing_is_lost(tmp_path, main, base):
    result = _with_base(tmp_path, main, base)
    assert not [d for d in result.diagnostics if d.code == "VT305"]


def test_an_include_that_replaces_holdout_with_evaluate_on_is_a_warning(tmp_path):
    result = _with_base(tmp_path, 'finetune all on qwen2.5-vl\nfrom ./x\nholdout 10%\ninclude "base.vt"\n',
                        "evaluate on ./x\n")
    [d] = [d for d in result.diagnostics if d.code == "VT305"]
    assert d.message.startswith("`holdout 10%` on line 3 is overridden by `evaluate on ./x` in base.vt (line 1)")


# --- item 11: plan and explain --------------------------------------------------------------------------------------


def test_plan_summary_wraps_long_values_and_keeps_the_origin_column(tmp_path):
    prompt = ("You are an expert radiographer. Describe every finding in the order of the standard report: lungs, "
              "heart, mediastinum, bones and soft tissues, and any lines or tubes. Say so when the image is not a chest "
              "radiograph.")
    folder = "./runs/" + "/".join(f"level-{i}-of-a-deep-tree" for i in range(4))
    result = compile_source(f'finetune all on qwen2.5-vl\nfrom ./x\nsystem "{prompt}"\nsave to {folder}\n', "r.vt",
                            base_dir=str(tmp_path))
    lines = summarize_plan(result.plan).splitlines()
    origin_column = lines[[i for i, line in enumerate(lines) if line.lstrip().startswith("name ")][0]].index("r.vt:1")
    for origin in ("r.vt:3", "r.vt:4"):
        [row] = [line for line in lines if line.endswith(origin)]
        assert row.index(origin) == origin_column, row
    start = lines.index([line for line in lines if line.endswith("r.vt:3")][0])
    # The prompt wraps onto lines of its own, within the value column, and ends in "..." when cut.
    shown = [lines[start][27:origin_column].strip()] + [line.strip() for line in lines[start + 1:start + 4]]
    assert all(len(part) <= 44 for part in shown) and shown[-1].endswith("...")
    assert " ".join(shown)[:-3].rstrip(".") in prompt
    folder_rows = lines[lines.index([line for line in lines if line.endswith("r.vt:4")][0]):][:3]
    assert folder_rows[0][27:origin_column].rstrip().endswith("/")  # a path breaks after a `/`


def test_plurals_in_plan_and_explain(tmp_path):
    result = compile_source("finetune all on llama-3.2-vision\nfrom ./x\nresize 512\ntrain for 1 epoch\n", "r.vt",
                            base_dir=str(tmp_path))
    plan = result.plan
    assert plan["estimates"]["tiles_per_image"] == 1
    summary, text = summarize_plan(plan), explain_plan(plan)
    assert "(1 tile, 1 token in the text)" in summary and "1 tiles" not in summary
    assert re.search(r"length\s+1 epoch\s", summary) and "(s)" not in summary
    assert "each becomes 1 tile," in text and "tile(s)" not in text


def test_explain_promises_test_answers_only_when_there_is_test_data(tmp_path):
    plain = compile_source("finetune all on qwen2.5-vl\nfrom ./x\n", "r.vt", base_dir=str(tmp_path)).plan
    text = explain_plan(plain)
    assert "No test data is set aside, so there is no before/after score." in text
    assert "test answers" not in text and "answers to the test data" not in text
    held = compile_source("finetune all on qwen2.5-vl\nfrom ./x\nholdout 10%\n", "r.vt", base_dir=str(tmp_path)).plan
    assert "the model's answers to the test data with their scores" in explain_plan(held)


def _plan(tmp_path, text: str) -> dict:
    result = compile_source(text, "r.vt", base_dir=str(tmp_path))
    assert result.plan is not None, result.diagnostics
    return result.plan


@pytest.mark.parametrize("clauses, rows, expected", [
    ("batch 2\naccumulate 4\ntrain for 3 epochs\n", 24, (3, 9)),      # 12 batches, 3 steps an epoch
    ("batch 2\naccumulate 4\ntrain for 1 epoch\n", 25, (4, 4)),       # 13 batches: a last short step counts
    ("batch 4\naccumulate 1\ntrain for 60 steps\n", 48, (12, 60)),    # steps are steps, whatever the data
    ("batch 2\naccumulate 4\ntrain for 1.5 epochs\n", 24, (3, 5)),    # ceil(1.5 x 3)
    ("batch 2\naccumulate 4\ngpus 2\n", 32, (4, 4)),                  # 8 an update over both GPUs
    ("batch 8\ntrain for 1 epoch\n", 25, (4, 4)),                    # samples per update, however split
    ("batch 8\nmicro batch 2\ntrain for 2 epochs\n", 24, (3, 6)),
    ("batch 8\naccumulate 4\n", 3, (1, 1)),                           # at least one step
])
def test_training_steps_count_as_the_trainer_does(tmp_path, clauses, rows, expected):
    plan = _plan(tmp_path, "finetune all on qwen2.5-vl\nfrom ./x\nusing lora\n" + clauses)
    assert training_steps(plan, rows) == expected


def test_time_estimate_says_what_it_rests_on_or_why_there_is_none(tmp_path):
    qwen = _plan(tmp_path, "finetune all on qwen2.5-vl\nfrom ./x\nusing lora\n")
    sentence = time_estimate(qwen, 100)
    assert "H100" in sentence and "docs/gpu.md" in sentence and "1,189 tokens/s" in sentence
    low, high = re.search(r"roughly (.+?) to (.+?), start-up included", sentence).groups()
    assert low != high
    # Twice the steps, a longer estimate (the figures are computed, not a constant).
    assert time_estimate(qwen, 10_000) != sentence
    assert "was not timed" in time_estimate(_plan(tmp_path, "finetune all on qwen2.5-vl\nfrom ./x\n"), 100)
    for text, why in [
        ("finetune all on qwen2.5-vl\nfrom ./x\nusing full\n", "full fine-tuning"),
        ("finetune all on qwen2.5-vl\nfrom ./x\nusing lora\ngpus 2\n", "several GPUs"),
        ("finetune all on llama-3.2-vision\nfrom ./x\nusing lora\n", "cross-attention"),
        ("finetune all on qwen2.5-vl\nfrom ./x\nusing lora\nresize none\n", "how many tokens"),
    ]:
        said = time_estimate(_plan(tmp_path, text), 100)
        assert said.startswith("vtc cannot estimate") and why in said, said
    tiny = _plan(tmp_path, "finetune all on tiny-qwen2.5-vl\nfrom ./x\nusing lora\nresize 112\nbatch 4\n"
                           "accumulate 1\n")
    assert "5.6 s on two CPU cores" in time_estimate(tiny, 80) and "about 6 s" in time_estimate(tiny, 80)


def _image_folder(folder: Path, n: int, side: int = 400) -> None:
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (side, side), (i * 8 % 256, 0, 0)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"shape {i}")


def test_explain_data_counts_rows_steps_and_time(tmp_path):
    _image_folder(tmp_path / "imgs", 30)
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune vision, mlp on qwen2.5-vl\nusing lora\nfrom ./imgs\nholdout 20%\n"
                      "train for 3 epochs\n")
    result = CliRunner().invoke(cli, ["explain", str(recipe), "--data"])
    assert result.exit_code == 0, result.output
    assert "The data check counted 24 rows to train on and 6 rows to test on." in result.stdout
    assert "one pass over them takes 3 steps: 9 steps in all." in result.stdout
    assert "On one NVIDIA H100, training should take roughly" in result.stdout
    without = CliRunner().invoke(cli, ["explain", str(recipe)])
    assert "rows to train on" not in without.stdout


def test_explain_data_with_rows_that_stop_a_run_says_so(tmp_path):
    _image_folder(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "2.png").write_bytes(b"not a png")
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on qwen2.5-vl\nfrom ./imgs\n")
    result = CliRunner().invoke(cli, ["explain", str(recipe), "--data"])
    assert result.exit_code == 1
    assert "cannot count the training steps yet" in result.stdout
    assert "2.png" in result.output


def test_explain_data_imports_no_training_library(tmp_path):
    _image_folder(tmp_path / "imgs", 2)
    (tmp_path / "r.vt").write_text("finetune all on qwen2.5-vl\nfrom ./imgs\n")
    code = ("import sys; from click.testing import CliRunner; from vtc.cli import cli; "
            f"r = CliRunner().invoke(cli, ['explain', {str(tmp_path / 'r.vt')!r}, '--data']); "
            "bad = [m for m in ('torch', 'transformers', 'trl', 'peft', 'unsloth') if m in sys.modules]; "
            "print(r.output, bad); sys.exit(1 if bad or r.exit_code else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_explain_data_json_format_keeps_stdout_for_the_explanation(tmp_path):
    _image_folder(tmp_path / "imgs", 4, side=64)  # thumbnails: a data warning (VT423) for each image
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on qwen2.5-vl\nfrom ./imgs\n")
    result = CliRunner().invoke(cli, ["explain", str(recipe), "--data", "--format", "json"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    diagnostics, at = json.JSONDecoder().raw_decode(text)  # one JSON list of every diagnostic, then the paragraph
    assert [d["code"] for d in diagnostics].count("VT423") == 4
    assert text[at:].strip().startswith("This recipe") and "The data check counted 4 rows to train on." in text[at:]
