"""VisionCollator: exact label positions for both tiny families, truncation, and the length check.

Expected positions are computed independently of the collator: the prompt (the chat template with a generation
prompt, run through the processor with the image) gives the answer's first position; the answer's own token ids and
the family's end-of-turn token give the rest. The pinned numbers are those for these rows and tokenizers.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from runtime_helpers import END_OF_TURN, MARKERS  # noqa: E402
from vtc.diagnostics import Span, VtcError  # noqa: E402
from vtc.runtime.collator import VisionCollator, check_lengths  # noqa: E402
from vtc.runtime.tiny_models import TINY_MODELS, ensure_tiny_model  # noqa: E402
IMAGE_TOKENS = {"tiny-qwen2.5-vl": ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>"),
                "tiny-llama-3.2-vision": ("<|image|>",)}
QUESTION = "What colour is the shape?"
# Pinned: (first answer position, batch length) for the rows below, per family.
PINNED = {"tiny-qwen2.5-vl": {"answer_start": 57, "length": 63, "image_positions": list(range(32, 50))},
          "tiny-llama-3.2-vision": {"answer_start": 26, "length": 31, "image_positions": [17]}}


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    from transformers import AutoProcessor

    root = tmp_path_factory.mktemp("cache")
    return {n: AutoProcessor.from_pretrained(ensure_tiny_model(n, cache_dir=root)) for n in TINY_MODELS}


def row(answer: str, size=(112, 112), system: str | None = None) -> dict:
    image = Image.new("RGB", size, (30, 160, 40))
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image", "image": image}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
    if system:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    return {"messages": messages}


def collator(processor, name, responses_only=True, max_len=512):
    q, a = MARKERS[name]
    return VisionCollator(processor, train_on_responses_only=responses_only, instruction_part=q if responses_only
                          else None, response_part=a if responses_only else None, max_seq_length=max_len)


def expected_answer_positions(processor, r: dict) -> tuple[int, list[int]]:
    """(prompt length, positions of the answer tokens and the end-of-turn token) without the collator's code."""
    prompt = processor.apply_chat_template(r["messages"][:-1], tokenize=False, add_generation_prompt=True)
    images = [p["image"] for m in r["messages"] for p in m["content"] if p["type"] == "image"]
    start = processor(text=[prompt], images=[images], return_tensors="pt",
                      add_special_tokens=False)["input_ids"].shape[1]
    answer_ids = processor.tokenizer(r["messages"][-1]["content"][0]["text"], add_special_tokens=False)["input_ids"]
    return start, list(range(start, start + len(answer_ids) + 1))


@pytest.mark.parametrize("name", TINY_MODELS)
def test_responses_only_labels_are_the_answer_and_its_end_of_turn(processors, name):
    proc = processors[name]
    rows = [row("green"), row("a blue square")]
    batch = collator(proc, name)(rows)
    ids, labels = batch["input_ids"], batch["labels"]
    assert ids.shape == (2, PINNED[name]["length"]) and labels.shape == ids.shape
    eot = proc.tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    for r, data in enumerate(rows):
        start, positions = expected_answer_positions(proc, data)
        assert start == PINNED[name]["answer_start"]
        trained = [i for i in range(ids.shape[1]) if labels[r, i] != -100]
        assert trained == positions
        assert labels[r, positions].tolist() == ids[r, positions].tolist()
        assert ids[r, positions[-1]] == eot
        answer = proc.tokenizer.decode(ids[r, positions[:-1]])
        assert answer == data["messages"][-1]["content"][0]["text"]
    # Pinned literally for the first row: "green" is one token, then the end-of-turn token.
    assert [i for i in range(ids.shape[1]) if labels[0, i] != -100] == \
        [PINNED[name]["answer_start"], PINNED[name]["answer_start"] + 1]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_full_labels_mask_only_images_and_padding(processors, name):
    proc = processors[name]
    batch = collator(proc, name, responses_only=False)([row("green"), row("a blue square")])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    image_ids = {proc.tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKENS[name]}
    for r in range(2):
        masked = [i for i in range(ids.shape[1]) if labels[r, i] == -100]
        images = [i for i in range(ids.shape[1]) if int(ids[r, i]) in image_ids]
        padding = [i for i in range(ids.shape[1]) if mask[r, i] == 0]
        assert images == PINNED[name]["image_positions"]
        assert masked == sorted(images + padding)
        keep = [i for i in range(ids.shape[1]) if i not in masked]
        assert labels[r, keep].tolist() == ids[r, keep].tolist()
    # Row 0 ("green") is shorter than row 1: right padding after its own tokens.
    alone = proc(text=[proc.apply_chat_template(row("green")["messages"], tokenize=False)],
                 images=[[row("green")["messages"][0]["content"][1]["image"]]], add_special_tokens=False,
                 return_tensors="pt")["input_ids"][0]
    assert mask[0].tolist() == [1] * len(alone) + [0] * (ids.shape[1] - len(alone))
    assert ids[0, : len(alone)].tolist() == alone.tolist()
    assert mask[1].tolist().count(0) == 0
    assert "pixel_values" in batch


@pytest.mark.parametrize("name", TINY_MODELS)
def test_system_prompt_and_multi_turn(processors, name):
    proc = processors[name]
    image = Image.new("RGB", (112, 112), (200, 0, 0))
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Answer with one word."}]},
        {"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image", "image": image}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
        {"role": "user", "content": [{"type": "text", "text": "What shape?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "circle"}]},
    ]
    batch = collator(proc, name)([{"messages": messages}])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    trained = proc.tokenizer.convert_ids_to_tokens(ids[labels != -100].tolist())
    eot = END_OF_TURN[name]
    circle = proc.tokenizer.convert_ids_to_tokens(proc.tokenizer("circle", add_special_tokens=False)["input_ids"])
    assert trained == ["red", eot] + circle + [eot]
    text = proc.apply_chat_template(messages, tokenize=False)
    assert "Answer with one word." in text


@pytest.mark.parametrize("name", TINY_MODELS)
def test_left_padding_gives_the_same_trained_tokens(processors, name):
    proc = processors[name]
    rows = [row("green"), row("a blue square")]
    right = collator(proc, name)(rows)
    proc.tokenizer.padding_side = "left"
    try:
        left = collator(proc, name)(rows)
    finally:
        proc.tokenizer.padding_side = "right"
    for r in range(2):
        assert right["input_ids"][r][right["labels"][r] != -100].tolist() == \
            left["input_ids"][r][left["labels"][r] != -100].tolist()


@pytest.mark.parametrize("name", TINY_MODELS)
def test_truncation_cuts_text_but_never_image_tokens(processors, name):
    proc = processors[name]
    start = PINNED[name]["answer_start"]
    long_answer = "red green blue yellow circle square triangle"
    # Cut inside the answer: allowed, the sequence is shortened and keeps its images.
    batch = collator(proc, name, max_len=start + 2)([row(long_answer), row("green")])
    assert batch["input_ids"].shape[1] == start + 2
    assert batch["labels"][0].tolist()[start:] == batch["input_ids"][0].tolist()[start:]
    if name == "tiny-llama-3.2-vision":
        assert batch["cross_attention_mask"].shape[1] == start + 2
    # Cut inside the image tokens: an error with the counts.
    last_image = PINNED[name]["image_positions"][-1]
    with pytest.raises(VtcError) as exc:
        collator(proc, name, max_len=last_image)([row("green")])
    d = exc.value.diagnostics[0]
    assert d.code == "VT430" and f"max length {last_image}" in d.message


class _Rows(list):
    def origin(self, i):
        return Span("data/metadata.jsonl", i + 1)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_check_lengths_names_the_row_and_the_counts(processors, name):
    proc = processors[name]
    rows = _Rows([row("green"), row("blue", size=(224, 224))])
    c = collator(proc, name)
    longest = c.check_lengths(rows, 512)
    assert isinstance(longest, int) and longest >= PINNED[name]["length"] - 4
    if name == "tiny-qwen2.5-vl":
        # 224 px -> 64 image tokens (+ vision start/end): row 2 is 48 tokens longer than row 1, which fits
        # the limit exactly.
        limit = PINNED[name]["length"] - 3
        with pytest.raises(VtcError) as exc:
            c.check_lengths(rows, limit)
        (d,) = exc.value.diagnostics
        assert d.code == "VT430" and d.span == Span("data/metadata.jsonl", 2)
        assert "66 image" in d.message and f"max length {limit}" in d.message
        assert "raise `max length` to at least" in d.help
    else:
        limit = PINNED[name]["answer_start"]  # the answer starts exactly at the limit: nothing left to learn
        with pytest.raises(VtcError) as exc:
            c.check_lengths(rows, limit)
        assert {d.code for d in exc.value.diagnostics} == {"VT431"}
        assert [d.span.line for d in exc.value.diagnostics] == [1, 2]
    # The module-level form measures with the processor alone.
    assert check_lengths(rows, 512, proc) == longest


@pytest.mark.parametrize("name", TINY_MODELS)
def test_markers_missing_from_the_template_are_a_diagnostic(processors, name):
    other = MARKERS["tiny-llama-3.2-vision" if name == "tiny-qwen2.5-vl" else "tiny-qwen2.5-vl"]
    with pytest.raises(VtcError) as exc:
        VisionCollator(processors[name], train_on_responses_only=True, instruction_part=other[0],
                       response_part=other[1], max_seq_length=512)
    assert exc.value.diagnostics[0].code == "VT433"
    with pytest.raises(VtcError) as exc:
        VisionCollator(processors[name], train_on_responses_only=True, instruction_part=None,
                       response_part=None, max_seq_length=512)
    assert exc.value.diagnostics[0].code == "VT433"


def test_a_batch_with_nothing_to_learn_is_an_error(processors):
    name = "tiny-qwen2.5-vl"
    image = Image.new("RGB", (112, 112))
    only_user = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                           {"type": "image", "image": image}]}]}
    with pytest.raises(VtcError) as exc:
        collator(processors[name], name)([only_user])
    assert exc.value.diagnostics[0].code == "VT432"


def test_rows_from_the_demo_dataset_collate(processors):
    from pathlib import Path

    from runtime_helpers import recipe_plan
    from vtc.runtime.sources import load_rows

    repo = Path(__file__).resolve().parents[1]
    plan = recipe_plan(repo / "recipes", "from ./data/shapes", f'ask "{QUESTION}"', "resize 112")
    rows = load_rows(plan)
    name = "tiny-qwen2.5-vl"
    c = collator(processors[name], name)
    batch = c([rows[i] for i in range(4)])
    for r in range(4):
        trained = batch["input_ids"][r][batch["labels"][r] != -100].tolist()
        assert processors[name].tokenizer.decode(trained) == rows.answer(r) + "<|im_end|>"
    assert c.check_lengths(rows, 2048) == PINNED[name]["length"] - 3  # "yellow" etc. are single tokens


def text_row(answer: str) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is two and two?"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def test_text_only_rows_mix_with_image_rows_for_qwen(processors, tmp_path):
    """Qwen-VL's processor takes [[image], []]: each row gets the tokens and labels it gets alone, and the
    model trains on the batch (the image features go to the one row with image tokens)."""
    from transformers import AutoModelForImageTextToText

    name = "tiny-qwen2.5-vl"
    c = collator(processors[name], name)
    mixed = c([row("green"), text_row("four")])
    for r, alone in enumerate((c([row("green")]), c([text_row("four")]))):
        keep = mixed["attention_mask"][r] == 1
        assert mixed["input_ids"][r][keep].tolist() == alone["input_ids"][0].tolist()
        assert mixed["labels"][r][keep].tolist() == alone["labels"][0].tolist()
    assert mixed["image_grid_thw"].tolist() == c([row("green")])["image_grid_thw"].tolist()
    trained = mixed["input_ids"][1][mixed["labels"][1] != -100].tolist()
    assert processors[name].tokenizer.decode(trained) == "four<|im_end|>"
    model = AutoModelForImageTextToText.from_pretrained(ensure_tiny_model(name, cache_dir=tmp_path))
    loss = model(**mixed).loss
    assert torch.isfinite(loss)
    loss.backward()


def test_llama_refuses_mixed_batches_with_a_precise_diagnostic(processors):
    name = "tiny-llama-3.2-vision"
    c = collator(processors[name], name)
    with pytest.raises(VtcError) as exc:
        c([row("green"), text_row("four")])
    d = exc.value.diagnostics[0]
    assert d.code == "VT434" and "MllamaProcessor" in d.message and "at least one image per sample" in d.message
    assert "batch 1" in d.help
    assert c([text_row("four")])["input_ids"].shape[0] == 1  # a text-only batch alone is fine
