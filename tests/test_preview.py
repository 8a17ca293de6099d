"""`vtc preview` and the checks that a row trains on its whole answer (VT564, VT565), on both tiny families, with and
without responses_only, against the labels the collator really produces."""

from __future__ import annotations

import json
import os

import pytest

from runtime_helpers import make_plan, make_shapes  # noqa: E402  (sets HF_HUB_OFFLINE)

from vtc.diagnostics import VtcError
from vtc.runtime.collator import VisionCollator
from vtc.runtime.preview import CLOSE, OPEN, make_collator, preview_rows, render_text, token_check
from vtc.runtime.tiny_models import TINY_MODELS, ensure_tiny_model

# The response marker of each family with the probe's answer "A" after it: it occurs in the chat template's
# rendering of VT433's probe, so the collator is made, but never in a row whose answer is a colour.
WRONG_MARKER = {"tiny-qwen2.5-vl": "<|im_start|>assistant\nA",
                "tiny-llama-3.2-vision": "<|start_header_id|>assistant<|end_header_id|>\n\nA"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("p") / "shapes", n=6)


@pytest.fixture(scope="module")
def processors():
    from transformers import AutoProcessor

    return {n: AutoProcessor.from_pretrained(ensure_tiny_model(n)) for n in TINY_MODELS}


def rows_of(plan):
    from vtc.runtime.validate import validate_for_run

    return validate_for_run(plan).train


def real_labels(collator, row):
    return collator([row])["labels"][0]


@pytest.mark.parametrize("responses_only", [True, False])
@pytest.mark.parametrize("name", TINY_MODELS)
def test_preview_shows_what_the_collator_trains(shapes, processors, name, responses_only):
    plan = make_plan(shapes, model=name, responses_only=responses_only)
    proc = processors[name]
    collator = make_collator(plan, proc)
    rows = rows_of(plan)
    previews = preview_rows(plan, proc, collator, rows, 3)
    assert [p["row"] for p in previews] == [1, 2, 3]
    for i, pv in enumerate(previews):
        row = rows[i]
        labels = real_labels(collator, row)
        ids = collator._encode([row])["input_ids"][0].tolist()
        assert pv["trained"] == int((labels != -100).sum()) > 0
        assert pv["tokens"] == len(ids) and not pv["truncated"] and not pv["image_cut"] and pv["problem"] is None
        # One marker per image, its count the image's run of placeholder tokens.
        images = [s for s in pv["segments"] if s["kind"] == "image"]
        placeholders = set(collator.placeholder_ids) - {collator.pad_id}
        assert len(images) == 1 and images[0]["tokens"] == sum(t in placeholders for t in ids)
        # The trained text is exactly the tokens with a label; the whole text is the rendered chat.
        trained_text = "".join(s["text"] for s in pv["segments"] if s["kind"] == "text" and s["trained"])
        assert trained_text == proc.tokenizer.decode(labels[labels != -100].tolist(), skip_special_tokens=False)
        answer = row["messages"][-1]["content"][0]["text"]
        if responses_only:
            eot = {"tiny-qwen2.5-vl": "<|im_end|>", "tiny-llama-3.2-vision": "<|eot_id|>"}[name]
            assert trained_text == answer + eot and pv["answer_tokens"] == pv["trained"]
        else:
            assert answer in trained_text and "What colour is the shape?" in trained_text
        text = render_text([pv], color=False)
        assert (f"{OPEN}{answer}" if responses_only else f"{answer}<") in text and OPEN in text
        assert f"[image: {images[0]['tokens']} tokens]" in text
        assert "\x1b[" not in text and "answer complete" in text
        coloured = render_text([pv], color=True)
        assert "\x1b[32m" in coloured and OPEN not in coloured


@pytest.mark.parametrize("responses_only", [True, False])
@pytest.mark.parametrize("name", TINY_MODELS)
def test_a_max_length_that_cuts_the_answer_is_shown_and_stops_the_run(shapes, processors, name, responses_only):
    from vtc.runtime.train import check_lengths

    plan = make_plan(shapes, model=name, responses_only=responses_only)
    proc = processors[name]
    rows = rows_of(plan)
    total = make_collator(plan, proc).token_counts(rows[0])["total"]
    # Qwen's template writes "\n" after <|im_end|>: the end-of-turn token is the one before the last.
    end = {"tiny-qwen2.5-vl": 2, "tiny-llama-3.2-vision": 1}[name]
    plan["training"]["max_length"] = total - end  # the end-of-turn token is cut, the answer's words kept
    collator = make_collator(plan, proc)
    (pv,) = preview_rows(plan, proc, collator, rows, 1)
    assert pv["truncated"] and pv["answer_cut"] == 1 and pv["code"] == "VT564"
    assert pv["trained"] == int((real_labels(collator, rows[0]) != -100).sum()) > 0
    assert any(s["cut"] for s in pv["segments"]) and "✂[max length" in render_text([pv], color=False)
    # A backend's own collator (unsloth's) is measured with vtc's, which labels alike.
    assert preview_rows(plan, proc, lambda batch: batch, rows, 1) == [pv]
    with pytest.raises(VtcError) as exc:
        check_lengths(plan, proc, collator, rows, [])  # the `length check` stage of `vtc run`
    d = exc.value.diagnostics[0]
    assert d.code == "VT564" and d.span.file.endswith("metadata.jsonl") and d.span.line == 1
    assert f"max length {total - end}" in d.message and "cuts the last 1 of the answer" in d.message
    assert f"raise `max length` to at least {total}" in d.help and "`resize`" in d.help
    found, line = token_check(plan, rows, None)  # `vtc check --data`
    assert {x.code for x in found} == {"VT564"} and "problems above" in line


@pytest.mark.parametrize("name", TINY_MODELS)
def test_a_marker_that_matches_no_row_trains_on_nothing_and_is_found_before_training(shapes, processors, name):
    from vtc.runtime.train import check_lengths

    plan = make_plan(shapes, model=name, responses_only=True)
    plan["model"]["markers"]["response_part"] = WRONG_MARKER[name]
    proc = processors[name]
    rows = rows_of(plan)
    collator = make_collator(plan, proc)
    (pv,) = preview_rows(plan, proc, collator, rows, 1)
    assert pv["trained"] == 0 and pv["code"] == "VT565" and not pv["truncated"]
    assert not any(s.get("trained") for s in pv["segments"])
    with pytest.raises(VtcError) as exc:  # what the collator would do at the first batch: nothing to learn
        collator([rows[0]])
    assert exc.value.diagnostics[0].code == "VT432"
    with pytest.raises(VtcError) as exc:
        check_lengths(plan, proc, collator, rows, [])
    d = exc.value.diagnostics[0]
    assert d.code == "VT565" and d.span.line == 1 and "0 tokens" in d.message
    assert repr(WRONG_MARKER[name]) in d.message and "without responses_only" in d.help
    found, _ = token_check(plan, rows, None)
    assert found and {x.code for x in found} == {"VT565"}


def test_markers_known_without_responses_only_find_the_answer(processors):
    name = "tiny-qwen2.5-vl"
    c = VisionCollator(processors[name], train_on_responses_only=False, instruction_part="<|im_start|>user\n",
                       response_part="<|im_start|>assistant\n", max_seq_length=512)
    bare = VisionCollator(processors[name], train_on_responses_only=False, instruction_part=None,
                          response_part=None, max_seq_length=512)
    ids = processors[name].tokenizer("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nred<|im_end|>\n",
                                     add_special_tokens=False)["input_ids"]
    found = c.answer_positions(ids)
    assert processors[name].tokenizer.decode([ids[p] for p in found]) == "red<|im_end|>"
    assert bare.answer_positions(ids) == [found[-1]]  # without markers: the last end-of-turn token


def test_vtc_preview_and_check_data_on_the_command_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from vtc.cli import cli

    make_shapes(tmp_path / "shapes", n=4)
    recipe = tmp_path / "r.vt"
    base = ("finetune all on tiny-qwen2.5-vl\nfrom ./shapes\nask \"What colour is the shape?\"\nresize 112\n"
            "with responses_only\n")
    recipe.write_text(base)
    monkeypatch.setenv("NO_COLOR", "1")
    res = CliRunner().invoke(cli, ["preview", str(recipe), "--rows", "2"])
    assert res.exit_code == 0, res.output
    assert res.output.count("\nrow ") == 2 and "[image: 18 tokens]" in res.output and OPEN in res.output
    assert "\x1b[" not in res.output and "2 trained, answer complete" in res.output
    res = CliRunner().invoke(cli, ["preview", str(recipe), "--rows", "1", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)[0]["trained"] == 2
    res = CliRunner().invoke(cli, ["check", "--data", str(recipe)])
    assert res.exit_code == 0, res.output
    assert "token lengths: every row trains on its whole answer; longest row 60 tokens" in res.output
    recipe.write_text(base + "max length 58\n")
    for command in (["preview", str(recipe), "--rows", "1"], ["check", "--data", str(recipe)]):
        res = CliRunner().invoke(cli, command)
        assert res.exit_code == 1 and "VT564" in res.output and "shapes/metadata.jsonl:1" in res.output
    assert CLOSE + "✂[max length 58" in CliRunner().invoke(cli, ["preview", str(recipe), "--rows", "1"]).output


def test_check_data_says_when_the_model_is_not_here(tmp_path):
    from click.testing import CliRunner

    from vtc.cli import cli

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    make_shapes(tmp_path / "shapes", n=4)
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on vtctest/not-cached-vl\nfrom ./shapes\n")
    res = CliRunner().invoke(cli, ["check", "--data", str(recipe)], env={"HF_HOME": str(tmp_path / "hf")})
    assert "token lengths: not checked (the model vtctest/not-cached-vl is not on this machine" in res.output


def test_vtc_run_stops_at_the_length_check(tmp_path):
    from vtc.commands import run_target

    make_shapes(tmp_path / "shapes", n=4)
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./shapes\nask \"What colour is the shape?\"\n"
                      "resize 112\nmax length 58\ntrain for 1 steps\noptimizer adamw_torch\nsave to ./runs\n")
    with pytest.raises(VtcError) as exc:
        run_target(str(recipe), backend="transformers")
    assert {d.code for d in exc.value.diagnostics} == {"VT564"}
    assert not (tmp_path / "runs").exists()  # stopped before the run folder is made, before any step
