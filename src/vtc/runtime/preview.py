"""`vtc preview`: the first training rows exactly as the model will see them, and the token check of `vtc check --data`.

    preview_rows(plan, processor, collator, rows, n) -> [row preview]   what the HTML report and the terminal show
    render_text(previews, color) -> str                                 the terminal's form (ANSI colours or marks)
    preview_plan(plan, n) -> [row preview]                              `vtc preview`: processor, rows, collator
    token_check(plan, train, evaluation) -> ([Diagnostic], line)        `vtc check --data`: VT430/431/564/565

A row preview is a dict (JSON-ready):

    {"row": 1, "origin": "data/train/metadata.jsonl:1", "tokens": 63, "max_length": 512,
     "trained": 5,              # tokens with a label (labels != -100 in the collator's batch, after the cut)
     "answer_tokens": 5,        # the answer and its end-of-turn token (found with the response marker); in a
                                # multi-turn conversation every assistant turn's
     "answers": 1,              # how many answers (assistant turns) the row trains
     "answer_cut": 0,           # how many of those the max length cuts off
     "truncated": False,        # answer_cut > 0
     "image_cut": False,        # the max length would cut through the image tokens (the run stops: VT430)
     "problem": None,           # the diagnostic's message when this row would stop `vtc run` (VT430/431/564/565)
     "segments": [{"kind": "text", "text": "<|im_start|>system\\n...", "trained": False, "cut": False},
                  {"kind": "image", "tokens": 18, "cut": False}, ...]}

Each image's run of placeholder tokens is one segment (its count: what it takes of the max length); the text between
is decoded in runs of tokens that are alike (trained or not, kept or cut). The labels are the collator's own
(VisionCollator.labels over the batch it makes), so that what is shown green is exactly what the loss sees.

Imports torch and transformers (inside functions): `vtc check --data` imports them only when it checks token
lengths, and never without --data.
"""

from __future__ import annotations

import os
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, VtcError
from vtc.runtime.collator import VisionCollator

# Without colours (not a terminal, NO_COLOR, a log), trained text is between these marks.
OPEN, CLOSE = "⟦", "⟧"
CUT_MARK = "✂"
GREEN, DIM, CYAN, RED, RESET = "\x1b[32m", "\x1b[2m", "\x1b[36m", "\x1b[31m", "\x1b[0m"


def preview_rows(plan: dict, processor, collator, rows, n: int) -> list[dict]:
    """The first ``n`` rows of ``rows`` as the collator makes them (see the module docstring); ``processor`` is
    the model's. A collator that is not vtc's (the unsloth backend's) is replaced by vtc's, which labels alike
    (collator.py)."""
    limit = int(plan["training"]["max_length"])
    if not isinstance(collator, VisionCollator):  # a backend's own collator (unsloth's): vtc's follows its rules
        collator = make_collator(plan, processor)
    out = []
    for i in range(min(int(n), len(rows))):
        span = rows.origin(i) if hasattr(rows, "origin") else Span(f"row {i + 1}")
        out.append(preview_row(collator, rows[i], limit, i + 1, span))
    return out


def preview_row(collator, row: dict, limit: int, number: int, span: Span) -> dict:
    """One row's preview (module docstring)."""
    batch = collator._encode([row])
    ids = batch["input_ids"][0].tolist()
    image_cut = False
    try:
        cut = collator._truncate(batch, limit) if limit and len(ids) > limit else batch
        labels = collator.labels(cut)[0].tolist()
    except VtcError:  # the cut would fall inside the image tokens: show the labels of the whole row, cut at limit
        image_cut = True
        labels = collator.labels(batch)[0].tolist()[:limit]
    trained = [p < len(labels) and labels[p] != collator.ignore_index for p in range(len(ids))]
    counts = collator.token_counts(row, limit, batch=batch)
    problem = collator.length_problem(counts, limit, span)
    return {"row": number, "origin": span.location, "tokens": len(ids), "max_length": limit,
            "trained": sum(trained), "answer_tokens": len(counts["answer"]), "answers": counts["answers"],
            "answer_cut": counts["answer_cut"], "truncated": counts["answer_cut"] > 0, "image_cut": image_cut,
            "problem": problem.message if problem is not None else None, "code": problem.code if problem else None,
            "segments": _segments(collator, ids, trained, limit)}


def _segments(collator, ids: list[int], trained: list[bool], limit: int) -> list[dict]:
    images = set(collator.placeholder_ids) - {collator.pad_id}
    segments: list[dict] = []
    run: list[int] = []
    state = None
    for p, t in enumerate(ids):
        cut = bool(limit) and p >= limit
        now = ("image", False, cut) if t in images else ("text", trained[p], cut)
        if now != state and run:
            segments.append(_segment(collator, state, run))
            run = []
        state = now
        run.append(t)
    if run:
        segments.append(_segment(collator, state, run))
    return segments


def _segment(collator, state, run: list[int]) -> dict:
    kind, trained, cut = state
    if kind == "image":
        clip = collator.tokenizer.convert_tokens_to_ids("<|video_pad|>")  # Qwen-VL's clip placeholder
        what = "clip" if isinstance(clip, int) and clip in run else "image"
        return {"kind": "image", "what": what, "tokens": len(run), "cut": cut}
    text = collator.tokenizer.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return {"kind": "text", "text": text, "trained": trained, "cut": cut, "tokens": len(run)}


def use_color(stream) -> bool:
    """ANSI colours: only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def render_text(previews: list[dict], color: bool) -> str:
    """The previews for the terminal: each row's chat text, trained tokens green (or between ⟦ ⟧ without
    colours), the rest dim, each image one marker with its token count, the max length's cut marked with ✂."""
    lines = []
    if color:
        lines.append(f"legend: {GREEN}trained{RESET}  {DIM}not trained{RESET}  "
                     f"{CYAN}[image: N tokens] or [clip: N tokens]{RESET}  {RED}{CUT_MARK} cut by max length{RESET}")
    else:
        lines.append(f"legend: {OPEN}trained{CLOSE}, the rest not trained; [image: N tokens] or [clip: N tokens]; "
                     f"{CUT_MARK} where max length cuts the row")
    for pv in previews:
        lines.append("")
        lines.append(f"row {pv['row']} ({pv['origin']}): {pv['tokens']} tokens, {pv['trained']} trained, "
                     + _answer_words(pv))
        body, marked = [], False
        for seg in pv["segments"]:
            if seg["cut"] and not marked:
                marked = True
                body.append(f"{RED}{CUT_MARK}[max length {pv['max_length']}: the rest is cut]{RESET}" if color
                            else f"{CUT_MARK}[max length {pv['max_length']}: the rest is cut]")
            if seg["kind"] == "image":
                text = f"[{seg.get('what', 'image')}: {seg['tokens']} tokens]"
                body.append(f"{CYAN}{text}{RESET}" if color else text)
            elif seg["trained"]:
                text = seg["text"].rstrip("\n")  # the mark closes before the line ends
                tail = seg["text"][len(text):]
                body.append(f"{GREEN}{text}{RESET}{tail}" if color else f"{OPEN}{text}{CLOSE}{tail}")
            else:
                body.append(f"{DIM}{seg['text']}{RESET}" if color else seg["text"])
        lines.append("".join(body).rstrip("\n"))
        if pv["problem"]:
            lines.append(f"error[{pv['code']}]: {pv['problem']}")
    return "\n".join(lines)


def _answer_words(pv: dict) -> str:
    if pv["image_cut"]:
        return f"max length {pv['max_length']} cuts through the image tokens"
    k = pv.get("answers", 1)
    if pv["truncated"]:
        if k > 1:
            return (f"answers cut by `max length {pv['max_length']}` ({pv['answer_cut']} of the "
                    f"{pv['answer_tokens']} tokens of its {k} answers lost)")
        return (f"answer cut by `max length {pv['max_length']}` ({pv['answer_cut']} of its {pv['answer_tokens']} "
                "tokens lost)")
    if k > 1:
        return f"{k} answers complete ({pv['answer_tokens']} tokens with their end-of-turn tokens)"
    return f"answer complete ({pv['answer_tokens']} tokens with its end-of-turn)"


# --- what `vtc preview` and `vtc check --data` load ---------------------------------------------------------------


def make_collator(plan: dict, processor):
    """The collator the transformers backend trains with (the unsloth backend's follows the same rules)."""
    from vtc.runtime.backends.base import chat_markers
    from vtc.runtime.collator import VisionCollator, set_video_bounds

    instruction_part, response_part = chat_markers(plan)
    set_video_bounds(processor, plan["video"])  # clips are measured at the size vtc gives their frames
    return VisionCollator(processor, train_on_responses_only=plan["training"]["responses_only"],
                          instruction_part=instruction_part, response_part=response_part,
                          max_seq_length=plan["training"]["max_length"])


def load_processor(plan: dict, model_path: str):
    """The model's processor (AutoProcessor), as the backends load it; the model's own code (trust_remote_code)
    failing is its diagnostic (VT509), never a traceback."""
    from transformers import AutoProcessor

    from vtc.runtime.model_path import model_code_error

    try:
        return AutoProcessor.from_pretrained(model_path, trust_remote_code=plan["model"]["trust_remote_code"])
    except Exception as exc:
        code = model_code_error(plan, exc, "loading the processor", model_path)
        if code is None:
            raise
        raise VtcError(code) from None


def preview_plan(plan: dict, n: int) -> list[dict]:
    """`vtc preview`: the data checked (the start of `vtc run`: bad rows stop it as they stop a run), the
    processor loaded (a Hub model offline: VT503), and the first ``n`` training rows previewed."""
    from vtc.runtime.model_path import resolve_model_path
    from vtc.runtime.validate import validate_for_run

    check = validate_for_run(plan)
    processor = load_processor(plan, resolve_model_path(plan))
    collator = make_collator(plan, processor)
    return preview_rows(plan, processor, collator, check.train, n)


def local_model_path(plan: dict) -> str | None:
    """The model's folder when it is on this machine (a tiny model, built here if need be; a local folder; a Hub
    model in the Hugging Face cache), else None: `vtc check --data` never downloads."""
    model = plan["model"]
    source, mid = model["source"], model["id"]
    if source == "tiny":
        from vtc.runtime.tiny_models import ensure_tiny_model

        return str(ensure_tiny_model(mid))
    if source == "local":
        from vtc.runtime.model_path import local_folder

        p = local_folder(plan)
        return str(p) if (p / "config.json").is_file() else None
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(mid, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError, an invalid id)
        return None
    return folder if (Path(folder) / "config.json").is_file() else None


def token_check(plan: dict, train, evaluation) -> tuple[list[Diagnostic], str]:
    """`vtc check --data`: the length check that starts `vtc run` (every training and evaluation row trains on its
    whole answer: VT430, VT431, VT564, VT565; markers unknown to the template: VT433), when the model's processor
    is on this machine; and one line saying what was checked, or why not."""
    path = local_model_path(plan)
    if path is None:
        return [], (f"token lengths: not checked (the model {plan['model']['id']} is not on this machine; "
                    "`vtc run` checks them once it has it)")
    try:
        processor = load_processor(plan, path)
        collator = make_collator(plan, processor)
        longest = collator.check_lengths(train, plan["training"]["max_length"])
        if evaluation is not None and len(evaluation):
            longest = max(longest, collator.check_lengths(evaluation, plan["training"]["max_length"]))
    except VtcError as exc:
        return list(exc.diagnostics), "token lengths: problems above (`vtc preview` shows rows as the model sees them)"
    except Exception as exc:  # a processor that cannot be loaded (a broken folder): say so, the run will too
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        return [], f"token lengths: not checked (the processor of {plan['model']['id']} did not load: {first})"
    return [], (f"token lengths: every row trains on its whole answer; longest row {longest} tokens "
                f"(max length {plan['training']['max_length']})")
