"""Evaluation: greedy answers for the evaluation rows, scored with the plan's metrics.

The same generation code serves `vtc run` (base model, then fine-tuned model) and `vtc ask`.
"""

from __future__ import annotations

from typing import Any, Sequence

from vtc.runtime import metrics as M


def prompt_messages(messages: list[dict]) -> list[dict]:
    """What the model sees before it answers: every turn up to and including the last user turn.

    A multi-turn conversation (user, assistant, user, assistant, ...) keeps its earlier turns as context, the
    earlier assistant answers and every earlier image included, and the model answers the last user turn; what
    follows that turn (the expected answer) is left out. A conversation with no user turn loses its assistant turns.
    """
    users = [j for j, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return [m for m in messages if m["role"] != "assistant"]
    return list(messages[: users[-1] + 1])


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def images_of(messages: list[dict]) -> list:
    """The PIL images in a conversation, in order."""
    return [part["image"] for m in messages if isinstance(m.get("content"), list)
            for part in m["content"] if part.get("type") == "image"]


def videos_of(messages: list[dict]) -> list[dict]:
    """The opened video parts in a conversation, in order (each {"type": "video", "video": [frames], "fps", ...})."""
    return [part for m in messages if isinstance(m.get("content"), list)
            for part in m["content"] if part.get("type") == "video" and isinstance(part.get("video"), (list, tuple))]


def answer_of(messages: list[dict]) -> str:
    """The expected answer of a conversation: the last assistant turn's text (a multi-turn conversation's earlier
    answers are context, as Rows.answer says)."""
    for m in reversed(messages):
        if m["role"] == "assistant":
            return _text(m["content"])
    return ""


def generate(model, processor, conversations: Sequence[list[dict]], *, max_new_tokens: int, batch_size: int,
             on_batch=None, synced_gpus: bool = False) -> list[str]:
    """Greedy answers, one per conversation (system/user turns with their images), in batches.

    Padding is on the left while generating (so every prompt ends where the answer starts) and restored after.
    ``synced_gpus``: a model sharded across processes (FSDP2) steps with the others until all are done.
    """
    import torch

    tokenizer = getattr(processor, "tokenizer", processor)
    saved_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    try:
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start : start + batch_size]
            texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
            images = [images_of(c) for c in chunk]
            kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
            if any(images):
                kwargs["images"] = images
            clips = [part for c in chunk for part in videos_of(c)]
            if clips:  # frames as vtc sampled and sized them, at their fps (collator.video_arguments)
                from vtc.runtime.collator import video_arguments

                kwargs.update(video_arguments(clips))
            inputs = processor(**kwargs).to(device)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=pad_id, **({"synced_gpus": True} if synced_gpus else {}))
            new = out[:, inputs["input_ids"].shape[1]:]
            answers.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
            if on_batch:
                on_batch(len(answers), len(conversations))
    finally:
        tokenizer.padding_side = saved_side
    return answers


def eval_batch_size(plan: dict) -> int:
    """Twice the training micro-batch (the run's, vtc.runtime.batching.in_force; outside a run the plan's pinned or
    fallback one): generation keeps no gradients or optimizer state, so twice as many rows fit where training
    fitted."""
    from vtc.runtime.batching import in_force

    return 2 * in_force(plan).micro_batch


def answer_rows(backend, model, processor, rows, plan: dict) -> list[str] | None:
    """The model's greedy answers for every row (a Rows sequence of conversations).

    Under torchrun with several processes each answers its own contiguous share of the rows (distributed.shard)
    and rank 0 gets every answer, in row order (the others get None): the same answers as one process, since a
    greedy answer depends only on its row (left padding and the attention mask make a row's answer independent
    of the rows batched with it; tests/test_distributed.py compares), in about 1/N of the time. The answer length
    limit is computed over every row, the same in every process."""
    from vtc.runtime.distributed import group

    g = group()
    backend.for_inference(model)
    lo, hi = g.shard(len(rows))
    conversations = [prompt_messages(rows[i]["messages"]) for i in range(lo, hi)]
    limit = answer_token_limit(processor, expected_answers(rows), plan["evaluation"]["max_new_tokens"])
    batch_size = eval_batch_size(plan)
    # Progress (vtc.runtime.progress): this process's rows; under several processes rank 0 shows its own share
    # (the shares are the same size, give or take one row, so its time left is the stage's), the others nothing.
    from vtc.runtime.progress import bar

    label = "answers" if g.size == 1 else f"answers (rank 0's share of {len(rows)} rows)"
    progress = bar(label, hi - lo, "rows")
    shown = [0]

    def on_batch(done: int, _total: int) -> None:
        progress.update(min(done, hi - lo) - shown[0])
        shown[0] = min(done, hi - lo)

    if getattr(backend, "sharded_weights", lambda m: False)(model):
        # FSDP2: every forward gathers each layer's weights from all the processes, so they must generate in step:
        # the same number of batches (a shorter share is topped up with copies of a row, whose answers are dropped)
        # and, inside each, generate's synced_gpus (a process whose answers are done keeps stepping with the rest).
        mine = len(conversations)
        most = -(-len(rows) // g.size)
        filler = conversations[-1] if conversations else prompt_messages(rows[0]["messages"])
        conversations += [filler] * (most - mine)
        with progress:
            answers = generate(model, processor, conversations, max_new_tokens=limit, batch_size=batch_size,
                               synced_gpus=True, on_batch=on_batch)[:mine]
    else:
        with progress:
            answers = generate(model, processor, conversations, max_new_tokens=limit, batch_size=batch_size,
                               on_batch=on_batch) if conversations else []
    return g.gather_in_order(answers)


def answer_token_limit(processor, expected: Sequence[str], plan_limit: int) -> int:
    """How many tokens an evaluation answer may run to: the plan's limit, or less when every expected answer is
    short. Past twice the longest expected answer (+16 tokens of slack) no metric can improve (exact match has
    failed and the error rates only grow), and an untrained model rambles to the limit: capping it keeps the
    before-training evaluation of a one-word task from costing more than the training."""
    tokenizer = getattr(processor, "tokenizer", processor)
    if not expected:
        return plan_limit
    longest = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in expected)
    return max(1, min(plan_limit, 2 * longest + 16))


def expected_answers(rows) -> list[str]:
    """The expected answer of every row (without opening its images when the rows can say it directly)."""
    if hasattr(rows, "answer"):
        return [rows.answer(i) for i in range(len(rows))]
    return [answer_of(rows[i]["messages"]) for i in range(len(rows))]


def score(names: Sequence[str], answers: Sequence[str], expected: Sequence[str]) -> dict[str, float]:
    return M.compute(list(names), list(answers), list(expected))
