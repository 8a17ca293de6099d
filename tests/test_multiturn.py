"""Multi-turn conversations: every assistant turn trained, every system and user turn masked (both tiny families,
both backends' rules), evaluation answering the last user turn with the earlier turns as context, `vtc preview`,
the length checks (VT564), and a short real training run on each family from a multi-turn .jsonl.

The expected label positions are computed without the collator's code: each assistant turn's first position is the
length of the conversation before it, rendered with a generation prompt and run through the processor with the
images it holds; the answer's own token ids and the family's end-of-turn token give the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from runtime_helpers import END_OF_TURN, MARKERS, unsloth_backend_over_stand_ins  # noqa: E402
from vtc.compiler.pipeline import compile_source  # noqa: E402
from vtc.diagnostics import Span  # noqa: E402
from vtc.runtime.backends.base import chat_markers  # noqa: E402
from vtc.runtime.collator import VisionCollator, answer_spans  # noqa: E402
from vtc.runtime.tiny_models import TINY_MODELS, ensure_tiny_model  # noqa: E402

ANSWERS = ("red", "yes, quite sure", "blue")


@pytest.fixture(scope="module")
def processors():
    from transformers import AutoProcessor

    return {n: AutoProcessor.from_pretrained(ensure_tiny_model(n)) for n in TINY_MODELS}


def plan_for(name: str, responses_only: bool = True) -> dict:
    text = (f"finetune all on {name}\nusing lora\nfrom ./chats.jsonl\nresize 112\nmax length 512\n"
            f"{'with' if responses_only else 'without'} responses_only\n")
    result = compile_source(text, "/abs/r.vt", base_dir="/abs")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


def collator_for(processor, name: str, responses_only: bool = True, max_len: int = 512) -> VisionCollator:
    """The collator with the family's markers (the ones both backends pass on)."""
    q, a = MARKERS[name]
    return VisionCollator(processor, train_on_responses_only=responses_only, instruction_part=q, response_part=a,
                          max_seq_length=max_len)


def image(colour) -> Image.Image:
    return Image.new("RGB", (112, 112), colour)


def conversation(system: bool = True) -> list[dict]:
    """Three turns, images in the first and third user turns."""
    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image((220, 30, 30))}, text("What colour is it?")]},
        {"role": "assistant", "content": [text(ANSWERS[0])]},
        {"role": "user", "content": [text("Are you sure?")]},
        {"role": "assistant", "content": [text(ANSWERS[1])]},
        {"role": "user", "content": [{"type": "image", "image": image((30, 30, 220))}, text("And this one?")]},
        {"role": "assistant", "content": [text(ANSWERS[2])]},
    ]
    if system:
        messages.insert(0, {"role": "system", "content": [text("Answer with the colour.")]})
    return messages


def images_in(messages):
    return [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]


def expected_positions(processor, messages) -> list[list[int]]:
    """Each assistant turn's positions (its answer tokens and its end-of-turn token), without the collator."""
    out = []
    for t, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = messages[:t]
        prompt = processor.apply_chat_template(before, tokenize=False, add_generation_prompt=True)
        imgs = images_in(before)
        kwargs = dict(text=[prompt], return_tensors="pt", add_special_tokens=False)
        if imgs:
            kwargs["images"] = [imgs]
        start = processor(**kwargs)["input_ids"].shape[1]
        n = len(processor.tokenizer(m["content"][0]["text"], add_special_tokens=False)["input_ids"])
        out.append(list(range(start, start + n + 1)))
    return out


# --- labels ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("system", [True, False])
@pytest.mark.parametrize("name", TINY_MODELS)
def test_every_answer_is_trained_and_every_other_turn_masked(processors, name, system):
    proc = processors[name]
    messages = conversation(system)
    batch = collator_for(proc, name)([{"messages": messages}])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    spans = expected_positions(proc, messages)
    assert len(spans) == 3
    trained = [p for p, label in enumerate(labels) if label != -100]
    assert trained == [p for span in spans for p in span]
    assert all(labels[p] == ids[p] for p in trained)
    eot = proc.tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    for span, answer in zip(spans, ANSWERS):
        assert ids[span[-1]] == eot  # each answer's end-of-turn token is trained: the model learns to stop
        assert proc.tokenizer.decode(ids[span[0]:span[-1]]) == answer
    # The last answer ends the row (Qwen's template adds a "\n" after <|im_end|>: masked).
    assert spans[-1][-1] in (len(ids) - 1, len(ids) - 2)
    # Both images are in the row, their tokens masked.
    placeholders = set(collator_for(proc, name).placeholder_ids) - {proc.tokenizer.pad_token_id}
    image_pos = [p for p, t in enumerate(ids) if t in placeholders]
    assert image_pos and all(labels[p] == -100 for p in image_pos)
    first, last = spans[0][0], spans[-1][0]
    assert any(p < first for p in image_pos) and any(spans[1][-1] < p < last for p in image_pos)


def unsloth_rule(ids: list[int], q: list[int], a: list[int], eos: int, bos: int | None,
                 last_response_only: bool = False) -> list[int]:
    """The positions unsloth_zoo's train_on_responses_only trains (the rule the collator's docstring states),
    written out here independently: from after each response marker up to and including the end-of-turn token,
    or up to the next instruction/response marker or BOS; with last_response_only only the last answer."""
    spans, j, n = [], 0, len(ids)
    while j < n:
        if ids[j:j + len(a)] != a:
            j += 1
            continue
        start = k = j + len(a)
        end = n
        while k < n:
            if ids[k] == eos:
                end = k + 1
                break
            if ids[k] == bos or ids[k:k + len(a)] == a or ids[k:k + len(q)] == q:
                end = k
                break
            k += 1
        spans.append(list(range(start, end)))
        j = max(end, start)
    if last_response_only:
        spans = spans[-1:]
    return [p for s in spans for p in s]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_the_labels_are_unsloths_with_every_answer(processors, name):
    """UnslothVisionDataCollator calls train_on_responses_only with its default last_response_only=False: every
    answer. vtc's collator gives the same positions, and not those of the last answer alone."""
    proc = processors[name]
    col = collator_for(proc, name)
    batch = col([{"messages": conversation()}])
    ids = batch["input_ids"][0].tolist()
    trained = [p for p, label in enumerate(batch["labels"][0].tolist()) if label != -100]
    tok = proc.tokenizer
    q, a = (tok(m, add_special_tokens=False)["input_ids"] for m in MARKERS[name])
    assert trained == unsloth_rule(ids, q, a, tok.eos_token_id, tok.bos_token_id)
    assert trained != unsloth_rule(ids, q, a, tok.eos_token_id, tok.bos_token_id, last_response_only=True)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_without_responses_only_everything_but_images_and_padding_is_trained(processors, name):
    proc = processors[name]
    col = collator_for(proc, name, responses_only=False)
    short = [{"role": "user", "content": [{"type": "image", "image": image((0, 200, 0))},
                                          {"type": "text", "text": "Colour?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "green"}]}]
    batch = col([{"messages": conversation()}, {"messages": short}])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    placeholders = set(col.placeholder_ids)
    for r in range(2):
        for p in range(ids.shape[1]):
            masked = ids[r, p].item() in placeholders or mask[r, p] == 0 or (p > 0 and mask[r, p - 1] == 0)
            assert (labels[r, p].item() == -100) == masked, (r, p)
    assert int(mask[1].sum()) < ids.shape[1]  # the short row was padded
    text = proc.tokenizer.decode(labels[0][labels[0] != -100].tolist())
    assert all(answer in text for answer in ANSWERS) and "Are you sure?" in text


def test_the_unsloth_backend_passes_what_trains_every_answer(monkeypatch, processors):
    """The Unsloth backend's collator arguments: responses only with the family's markers and nothing that
    would keep only the last answer (UnslothVisionDataCollator has no last_response_only argument; its
    train_on_responses_only call keeps the default, False). Only a GPU run can prove Unsloth's own labels."""
    import sys

    backend = unsloth_backend_over_stand_ins(monkeypatch)
    try:
        for name in TINY_MODELS:
            plan = plan_for(name)
            args = backend.collator_arguments(plan)
            assert args["train_on_responses_only"] is True and "last_response_only" not in args
            assert (args["instruction_part"], args["response_part"]) == chat_markers(plan) == MARKERS[name]
            # Those markers occur before every answer of the rendered multi-turn chat.
            rendered = collator_for(processors[name], name).render(conversation())
            assert rendered.count(args["response_part"]) == 3 and rendered.count(args["instruction_part"]) == 3
    finally:
        sys.modules.pop("vtc.runtime.backends.unsloth_backend", None)


def test_llama_vision_takes_images_in_two_turns(processors):
    """MllamaProcessor with an image in the first and the third user turn: one cross-attention slot per image; the
    text after each image attends to it (the processor's rule: an image is seen from its <|image|> token on, up to
    the next image's)."""
    proc = processors["tiny-llama-3.2-vision"]
    batch = collator_for(proc, "tiny-llama-3.2-vision")([{"messages": conversation()}])
    ids = batch["input_ids"][0].tolist()
    cross = batch["cross_attention_mask"][0]  # (tokens, images, tiles)
    assert cross.shape[:2] == (len(ids), 2)
    image_id = proc.tokenizer.convert_tokens_to_ids("<|image|>")
    first, second = [p for p, t in enumerate(ids) if t == image_id]
    assert cross[first + 1, 0].any() and not cross[first + 1, 1].any()
    assert cross[second + 1, 1].any()
    assert not cross[:first, :].any()  # the system turn sees no image


# --- lengths: every turn counted, a cut of any answer reported -------------------------------------------------


@pytest.mark.parametrize("name", TINY_MODELS)
def test_token_counts_count_every_turn_and_a_cut_last_answer_is_vt564(processors, name):
    proc = processors[name]
    col = collator_for(proc, name)
    row = {"messages": conversation()}
    ids = col._encode([row])["input_ids"][0].tolist()
    spans = expected_positions(proc, row["messages"])
    counts = col.token_counts(row, 512)
    assert counts["total"] == len(ids) and counts["answers"] == 3 and counts["answers_cut"] == 0
    assert counts["answer"] == [p for s in spans for p in s] and counts["trained"] == len(counts["answer"])
    assert col.length_problem(counts, 512, Span("chats.jsonl", 1)) is None
    assert col.check_lengths([row], 512) == len(ids)
    # A max length that keeps the first two answers and both images but loses the last answer: trained > 0,
    # yet the cut of an answer (any answer) is a problem.
    limit = spans[-1][0]
    counts = col.token_counts(row, limit)
    assert counts["trained"] == len(spans[0]) + len(spans[1]) and counts["answers_cut"] == 1
    problem = col.length_problem(counts, limit, Span("chats.jsonl", 1))
    assert problem is not None and problem.code == "VT564"
    assert f"{len(spans[-1])} of the {counts['trained'] + len(spans[-1])} tokens of its 3 answers" \
        in problem.message
    # Only the end of the last answer cut: still VT564.
    counts = col.token_counts(row, spans[-1][-1])
    assert counts["answer_cut"] == 1 and col.length_problem(counts, spans[-1][-1], Span("c", 1)).code == "VT564"


def test_answer_spans_groups_runs():
    assert answer_spans([3, 4, 5, 9, 10, 20]) == [[3, 4, 5], [9, 10], [20]] and answer_spans([]) == []


# --- preview ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY_MODELS)
def test_preview_shows_every_answer_trained(processors, name):
    from vtc.runtime.preview import OPEN, preview_row, render_text

    proc = processors[name]
    col = collator_for(proc, name)
    pv = preview_row(col, {"messages": conversation()}, 512, 1, Span("chats.jsonl", 1))
    eot = END_OF_TURN[name]
    trained = [s["text"] for s in pv["segments"] if s["kind"] == "text" and s["trained"]]
    assert trained == [answer + eot for answer in ANSWERS]
    assert pv["answers"] == 3 and pv["problem"] is None
    assert sum(1 for s in pv["segments"] if s["kind"] == "image") == 2
    text = render_text([pv], color=False)
    assert all(f"{OPEN}{answer}" in text for answer in ANSWERS) and f"{OPEN}Are you sure" not in text
    assert "3 answers complete" in text


# --- evaluation ----------------------------------------------------------------------------------------------


def test_the_prompt_is_every_turn_up_to_the_last_user_turn():
    from vtc.runtime.evaluate import answer_of, prompt_messages

    messages = conversation()
    prompt = prompt_messages(messages)
    assert prompt == messages[:6] and prompt[-1]["role"] == "user"
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert answer_of(messages) == ANSWERS[2]
    single = conversation()[:3]
    assert prompt_messages(single) == single[:2] and answer_of(single) == ANSWERS[0]
    assert answer_of([{"role": "assistant", "content": "plain"}]) == "plain"


class _Recorder(torch.nn.Module):
    """A stand-in model whose generate records the inputs it was given and answers "ok"."""

    def __init__(self, tokenizer):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tokenizer = tokenizer
        self.calls = []

    def generate(self, input_ids, **kwargs):
        self.calls.append(dict(input_ids=input_ids, **kwargs))
        ok = self.tokenizer("ok", add_special_tokens=False)["input_ids"]
        return torch.cat([input_ids, torch.tensor([ok] * input_ids.shape[0])], dim=1)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_generation_reads_the_earlier_turns_and_their_images(processors, name):
    from vtc.runtime.evaluate import generate, prompt_messages

    proc = processors[name]
    model = _Recorder(proc.tokenizer)
    answers = generate(model, proc, [prompt_messages(conversation())], max_new_tokens=4, batch_size=1)
    assert answers == ["ok"]
    call = model.calls[0]
    text = proc.tokenizer.decode(call["input_ids"][0])
    for earlier in ("Answer with the colour.", "What colour is it?", ANSWERS[0], "Are you sure?", ANSWERS[1],
                    "And this one?"):
        assert earlier in text
    assert ANSWERS[2] not in text
    assert text.rstrip().endswith(("assistant", "assistant<|end_header_id|>"))  # the model answers next
    if name == "tiny-qwen2.5-vl":
        assert call["image_grid_thw"].shape[0] == 2
    else:
        assert call["pixel_values"].shape[1] == 2  # (rows, images, tiles, ...)


def test_predictions_record_the_last_user_turn_as_the_question(tmp_path):
    from vtc.runtime.sources.rows import Record, Rows

    parts = lambda t: [{"type": "text", "text": t}]  # noqa: E731
    chat = ({"role": "user", "content": parts("First?")}, {"role": "assistant", "content": parts("one")},
            {"role": "user", "content": parts("Second?")}, {"role": "assistant", "content": parts("two")})
    rows = Rows([Record(Span("c.jsonl", 1), "two", messages=chat), Record(Span("m.jsonl", 1), "x")],
                description="t", instruction="Describe.", system=None, resize={"mode": "none"}, window=None)
    assert rows.question(0) == "Second?" and rows.question(1) == "Describe."
    assert rows.answer(0) == "two"


# --- a real run on each family -------------------------------------------------------------------------------


def write_chats(folder: Path, n: int) -> None:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    names = list(colours)
    lines = []
    for i in range(n):
        a, b = names[i % 3], names[(i + 1) % 3]
        Image.new("RGB", (112, 112), colours[a]).save(folder / "img" / f"{i}a.png")
        Image.new("RGB", (112, 112), colours[b]).save(folder / "img" / f"{i}b.png")
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": [{"type": "image", "image": f"img/{i}a.png"},
                                         {"type": "text", "text": "What colour is it?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": a}]},
            {"role": "user", "content": [{"type": "text", "text": "Are you sure?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "yes"}]},
            {"role": "user", "content": [{"type": "image", "image": f"img/{i}b.png"},
                                         {"type": "text", "text": "And this one?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": b}]}]}))
    (folder / "chats.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("name", TINY_MODELS)
def test_a_short_run_on_multi_turn_chats(tmp_path, monkeypatch, name):
    from vtc.commands import run_target

    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "cache"))
    write_chats(tmp_path / "data", 6)
    recipe = tmp_path / "chats.vt"
    recipe.write_text(
        f"finetune all on {name}\nusing lora\nfrom ./data/chats.jsonl\nholdout 34%\nresize 112\n"
        "train for 2 steps\nbatch 2\nmicro batch 2\nlearning rate 2e-3\nwarmup 0 steps\nschedule constant\n"
        "optimizer adamw_torch\nweight decay 0\nmax length 512\nmetric exact_match\nlora rank 8 alpha 8\n"
        "with responses_only\nsave to ./runs\n", encoding="utf-8")
    run = run_target(str(recipe), backend="transformers")
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines() if line]
    import math

    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    losses = [r["loss"] for r in steps if r.get("loss") is not None]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    assert predictions
    for p in predictions:
        assert p["question"] == "And this one?" and p["expected"] in ("red", "blue", "green")
        assert len(p["images"]) == 2
