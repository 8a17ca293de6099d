"""VisionCollator: rows of conversations -> a padded batch with labels, as Unsloth's UnslothVisionDataCollator does.

For each batch (unsloth_zoo 2026.10.9, vision_utils.py and dataset_utils.train_on_responses_only):

1. every row's messages go through the processor's chat template (``tokenize=False``, no generation prompt);
2. the images are taken from the message parts, in order;
3. ``processor(text=..., images=..., padding=True, add_special_tokens=False, return_tensors="pt")`` (the template
   already wrote BOS);
4. labels = input_ids, with ``ignore_index`` at padding, at every image/vision placeholder token (Qwen:
   <|image_pad|>, <|vision_start|>, <|vision_end|>, <|vision_pad|>, <|video_pad|>; Llama: <|image|>), at ids < 0,
   and at each position whose previous token is padding (left padding then gives the same loss as no padding);
5. with ``train_on_responses_only`` everything outside the assistant answers is masked too. An answer starts right
   after the response marker (``response_part``, e.g. "<|im_start|>assistant\\n") and runs up to and INCLUDING the
   end-of-turn token (the tokenizer's EOS: <|im_end|> for Qwen, <|eot_id|> for Llama), so the model learns to stop;
   what follows (Qwen's "\\n", the next turn) is masked. The markers are matched as their exact token sequences,
   as Unsloth does with force_match=True. In a multi-turn conversation every assistant turn is an answer and is
   trained, every system and user turn masked: Unsloth's rule with last_response_only=False, the default its
   UnslothVisionDataCollator uses (it passes no last_response_only; tests/test_multiturn.py pins the positions).

Sequences longer than ``max_seq_length`` are cut at the end, like the processor's truncation, but never through
image tokens: that is an error naming the counts, and ``check_lengths`` finds such rows before training starts
(instead of the model's "image features and image tokens do not match"), with the rows whose answer the cut
would shorten (VT564, or VT431 when nothing is left) and the rows with no token to train on (VT565: a response
marker that does not match the row's tokens). ``labels(batch)`` is the labelling alone, unchecked: vtc preview
(runtime/preview.py) shows it.

Collators run in data-loading worker processes (forked; plan["training"]["data_loading"]), a batch or more ahead
of the step: nothing in them touches CUDA. An error raised in a worker would reach the training process as torch's
"Caught VtcError in DataLoader worker process 0" with the traceback as text, its diagnostics lost; the collate
functions run inside ``worker_errors()``, which sends the exception itself across (``WorkerFailure``), so that the
run stops with the same diagnostics (VT430, VT434, an image unreadable since the data check: VT411) as without
workers.
"""

from __future__ import annotations

import base64
import builtins
import json
import re
import traceback
import warnings
from contextlib import contextmanager
from typing import Sequence

from vtc.diagnostics import Span, VtcError, error

# unsloth_zoo.vlm_tokens.IMAGE_TOKENS: every family's image/vision placeholder tokens (absent ones are skipped).
IMAGE_TOKENS = (
    "<|image|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<image>", "</image>", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "<image_soft_token>", "<start_of_image>",
    "<end_of_image>",
)


class VisionCollator:
    """Callable for a Trainer: ``collator(rows) -> {"input_ids", "attention_mask", "labels", pixel tensors...}``."""

    def __init__(self, processor, *, train_on_responses_only: bool, instruction_part: str | None,
                 response_part: str | None, max_seq_length: int, ignore_index: int = -100):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.train_on_responses_only = bool(train_on_responses_only)
        self.instruction_part = instruction_part
        self.response_part = response_part
        self.max_seq_length = int(max_seq_length) if max_seq_length else None
        self.ignore_index = ignore_index
        self.placeholder_ids = _placeholder_ids(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self.eos_id = self.tokenizer.eos_token_id
        self.bos_id = self.tokenizer.bos_token_id
        self._warned = False
        self.a_ids = None  # the response marker's tokens, when known: where each answer is (check_lengths, preview)
        if self.train_on_responses_only:
            self._setup_markers()
        elif isinstance(instruction_part, str) and isinstance(response_part, str) and instruction_part \
                and response_part:
            try:  # not trained on responses only: the markers only find the answer, for the truncation check
                self._setup_markers()
            except VtcError:
                self.a_ids = None

    # --- the batch ----------------------------------------------------------------------------------------------

    def __call__(self, rows: list[dict]) -> dict:
        batch = self._encode(rows)
        if self.max_seq_length and batch["input_ids"].shape[1] > self.max_seq_length:
            batch = self._truncate(batch)
        labels = self.labels(batch)
        if self.train_on_responses_only:
            self._check_supervised(labels, batch.get("attention_mask"))
        batch["labels"] = labels
        return dict(batch)

    def labels(self, batch):
        """The labels of an encoded (and truncated) batch: input_ids with ``ignore_index`` wherever nothing is
        trained (images, padding, and under responses-only everything outside the answers). No check here:
        ``__call__`` checks; vtc preview (runtime/preview.py) shows these labels as they are."""
        import torch

        ids = batch["input_ids"]
        labels = ids.clone()
        labels[torch.isin(labels, torch.tensor(sorted(self.placeholder_ids), dtype=labels.dtype))] = self.ignore_index
        labels[labels < 0] = self.ignore_index
        mask = batch.get("attention_mask")
        if mask is not None and mask.shape == labels.shape:
            labels[mask == 0] = self.ignore_index
            # A target predicted from a pad position (left padding) is never trained (Unsloth does the same).
            labels[:, 1:].masked_fill_(mask[:, :-1] == 0, self.ignore_index)
        if self.train_on_responses_only:
            keep = torch.tensor([self.response_mask(row) for row in ids.tolist()], dtype=torch.bool)
            labels[~keep] = self.ignore_index
        return labels

    def render(self, messages: list[dict]) -> str:
        """The chat template's text for one conversation (what the model reads)."""
        return self.processor.apply_chat_template(_clean(messages), tokenize=False, add_generation_prompt=False)

    def _encode(self, rows: Sequence[dict]):
        texts, images, clips = [], [], []
        for row in rows:
            messages = row["messages"] if isinstance(row, dict) and "messages" in row else row
            texts.append(self.render(messages))
            images.append(_images_of(messages))
            clips.extend(_videos_of(messages))
        kwargs = dict(text=texts, padding=True, return_tensors="pt", add_special_tokens=False)
        if clips:
            kwargs.update(video_arguments(clips))
        if any(images):
            kwargs["images"] = images
            if not all(images):
                # Text-only rows beside image rows: Qwen-VL's processor takes the per-row lists as they are
                # (an empty list for a text-only row; image tokens are expanded in order). Llama 3.2 Vision's
                # MllamaProcessor refuses ("there should be either no images or at least one image per sample"):
                # its cross-attention mask is built per row from that row's images.
                try:
                    return self.processor(**kwargs)
                except (ValueError, TypeError, IndexError) as exc:
                    raise VtcError(error(
                        "VT434", f"this model's processor ({type(self.processor).__name__}) cannot put rows with "
                                 f"images and text-only rows in one batch: {str(exc).splitlines()[0][:160]}",
                        help="write `batch 1` (each batch is then one row), or give every row an image, or keep "
                             "the text-only rows out of this dataset",
                    )) from None
        return self.processor(**kwargs)

    def _truncate(self, batch, keep: int | None = None):
        """Keep each row's first max_seq_length (or ``keep``) tokens (the processor's right-side truncation),
        padding kept."""
        import torch

        ids, mask = batch["input_ids"], batch["attention_mask"]
        n, length = ids.shape
        keep = keep or self.max_seq_length
        lengths = mask.sum(dim=1)
        left = self.tokenizer.padding_side == "left"
        for r in range(n):
            content = ids[r, length - int(lengths[r]):] if left else ids[r, : int(lengths[r])]
            cut = content[keep:].tolist()
            if any(t in self.placeholder_ids for t in cut):
                n_img = sum(t in self.placeholder_ids for t in content.tolist())
                raise VtcError(error(
                    "VT430", f"a row of {int(lengths[r])} tokens ({int(lengths[r]) - n_img} text, {n_img} image) "
                             f"is longer than the max length {keep}, and cutting it would cut its image tokens",
                    help=f"raise `max length` to at least {int(lengths[r])}, or use a smaller `resize`",
                ))
        kept = torch.clamp(lengths, max=keep)
        new_len = int(kept.max())
        steps = torch.arange(new_len)
        if left:
            # Row r keeps its first kept[r] content tokens, left-padded to new_len; a padding slot maps to
            # position 0, which is padding in every row that needs padding (those rows are shorter than the batch).
            offset = steps.unsqueeze(0) - (new_len - kept).unsqueeze(1)
            index = torch.where(offset >= 0, (length - lengths).unsqueeze(1) + offset, torch.zeros_like(offset))
        else:
            index = steps.unsqueeze(0).expand(n, new_len)
        out = dict(batch)
        for key in ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "cross_attention_mask"):
            t = batch.get(key)
            if t is None or t.dim() < 2 or t.shape[1] != length:
                continue
            idx = index.reshape(n, new_len, *([1] * (t.dim() - 2))).expand(n, new_len, *t.shape[2:])
            out[key] = torch.gather(t, 1, idx)
        return out

    # --- responses only -------------------------------------------------------------------------------------------

    def _setup_markers(self) -> None:
        if not isinstance(self.instruction_part, str) or not isinstance(self.response_part, str) \
                or not self.instruction_part or not self.response_part:
            raise VtcError(error(
                "VT433", "training on responses only needs the chat template's instruction and response markers",
                help="this model family's markers are unknown: remove `with responses_only`",
            ))
        tok = self.tokenizer
        self.q_ids = tok(self.instruction_part, add_special_tokens=False)["input_ids"]
        self.a_ids = tok(self.response_part, add_special_tokens=False)["input_ids"]
        probe = [{"role": "user", "content": [{"type": "text", "text": "Q"}]},
                 {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]
        rendered = self.processor.apply_chat_template(probe, tokenize=False, add_generation_prompt=False)
        for name, marker in (("instruction", self.instruction_part), ("response", self.response_part)):
            if marker not in rendered:
                raise VtcError(error(
                    "VT433", f"the {name} marker {marker!r} does not occur in this model's chat template",
                    help=f"the template renders a chat as {rendered[:120]!r}; remove `with responses_only` "
                         "or use a model family whose markers vtc knows",
                ))
        # The role-opening special token both markers start with (<|im_start|>, <|start_header_id|>): any new
        # message ends an answer. Unsloth keeps it only when it is a special token.
        start = []
        for q, a in zip(self.q_ids, self.a_ids):
            if q != a:
                break
            start.append(q)
        specials = set(getattr(tok, "all_special_ids", []) or [])
        specials.update(i for i, t in (getattr(tok, "added_tokens_decoder", None) or {}).items()
                        if getattr(t, "special", False))
        self.message_start = start if start and all(i in specials for i in start) else []

    def response_mask(self, ids: list[int]) -> list[bool]:
        """True at the tokens trained under responses-only: each answer and its end-of-turn token.

        Unsloth's train_on_responses_only span rule: an answer starts after the response marker and ends at the
        EOS token (kept), or before the next BOS, message start, response marker or instruction marker; an answer
        running to the end of the row keeps everything to the end.
        """
        n = len(ids)
        keep = [False] * n
        a, q, ms = self.a_ids, self.q_ids, self.message_start
        j = 0
        while j < n:
            if ids[j: j + len(a)] != a:
                j += 1
                continue
            start = j + len(a)
            end = n
            k = start
            while k < n:
                t = ids[k]
                if t == self.eos_id:
                    end = k + 1
                    break
                if t == self.bos_id or (ms and ids[k: k + len(ms)] == ms) or ids[k: k + len(a)] == a \
                        or ids[k: k + len(q)] == q:
                    end = k
                    break
                k += 1
            for p in range(start, end):
                keep[p] = True
            j = max(end, start)
        return keep

    def _check_supervised(self, labels, mask) -> None:
        trained = (labels != self.ignore_index).sum(dim=1)
        empty = int((trained == 0).sum())
        if not empty:
            return
        truncated = self.max_seq_length is not None and mask is not None and \
            bool((mask.sum(dim=1) >= self.max_seq_length).any())
        message = (f"{empty} of {labels.shape[0]} rows in a batch have nothing to learn: the response marker "
                   f"{self.response_part!r} was not found in the rendered chat, or the answer was cut off")
        if empty == labels.shape[0] and not truncated:
            raise VtcError(error("VT432", message, help="check the model's markers (vtc plan shows them), or "
                                 "raise `max length`"))
        if not self._warned:
            self._warned = True
            warnings.warn(message, stacklevel=2)

    # --- before training ----------------------------------------------------------------------------------------

    def answer_positions(self, ids: list[int]) -> list[int]:
        """Where the answers are in a row's tokens (each answer and its end-of-turn token): found with the response
        marker when it is known (Unsloth's span rule, response_mask), else the row's last end-of-turn token alone."""
        if self.a_ids:
            return [p for p, keep in enumerate(self.response_mask(ids)) if keep]
        ends = [p for p, t in enumerate(ids) if t == self.eos_id]
        return ends[-1:]

    def token_counts(self, row: dict, max_seq_length: int | None = None, *, batch=None) -> dict:
        """One row measured as the collator makes it: {"total", "text", "image" (counts before truncation),
        "image_last" (position, or -1), "answer" (the answers' token positions, before truncation: every assistant
        turn of a multi-turn conversation), "answer_cut" (how many of them the max length cuts off), "answers"
        (how many answers), "answers_cut" (how many answers lose a token to the cut), "trained" (tokens whose label
        is not ignore_index once cut at the max length: the collator's own labels; None when the cut would fall
        inside the image tokens)}. ``batch``: the row already encoded (self._encode([row])), not encoded again."""
        batch = batch if batch is not None else self._encode([row])
        ids = batch["input_ids"][0].tolist()
        image_pos = [p for p, t in enumerate(ids) if t in self.placeholder_ids]
        limit = max_seq_length or self.max_seq_length
        answer = self.answer_positions(ids)
        spans = answer_spans(answer)
        counts = {"total": len(ids), "image": len(image_pos), "text": len(ids) - len(image_pos),
                  "image_last": image_pos[-1] if image_pos else -1, "answer": answer,
                  "answer_cut": sum(1 for p in answer if limit and p >= limit), "answers": len(spans),
                  "answers_cut": sum(1 for span in spans if limit and span[-1] >= limit)}
        try:
            cut = self._truncate(batch, limit) if limit and len(ids) > limit else batch
        except VtcError:  # the cut falls inside the image tokens (VT430)
            counts["trained"] = None
            return counts
        counts["trained"] = int((self.labels(cut) != self.ignore_index).sum())
        return counts

    def check_lengths(self, rows, max_seq_length: int | None = None) -> int:
        """The longest row's token count; raises VtcError naming every row that would train on nothing or on a cut
        answer, with its token counts: the max length would cut its image tokens (VT430), its whole answer (VT431,
        responses only) or the end of its answer (VT564), or it has no token to train on although it fits (VT565:
        the response marker does not match the row's tokens). Opens every row's images once."""
        limit = int(max_seq_length or self.max_seq_length or 0)
        problems = []
        longest = 0
        cache: dict = {}
        for i in range(len(rows)):
            row = rows[i]
            key = _cache_key(row)
            counts = cache.get(key) if key is not None else None
            if counts is None:
                counts = self.token_counts(row, limit)
                if key is not None:
                    cache[key] = counts
            longest = max(longest, counts["total"])
            problem = self.length_problem(counts, limit, rows.origin(i) if hasattr(rows, "origin")
                                          else Span(f"row {i + 1}"))
            if problem is not None:
                problems.append(problem)
        if problems:
            if len(problems) > 20:
                more = len(problems) - 20
                problems = problems[:20] + [error(problems[20].code, f"... and {more} more rows like these",
                                                  help=problems[20].help)]
            raise VtcError(problems)
        return longest

    def length_problem(self, counts: dict, limit: int, span: Span):
        """The diagnostic of one measured row (token_counts), or None when it trains on its whole answer."""
        where = span.location
        sizes = f"{counts['total']} tokens ({counts['text']} text + {counts['image']} image)"
        if limit and counts["total"] > limit and counts["image_last"] >= limit:
            return error(
                "VT430", f"{where}: {sizes} exceed the max length {limit} and the cut would fall inside the image "
                         "tokens", span,
                help=f"raise `max length` to at least {counts['total']}, or use a smaller `resize`")
        if counts["trained"] == 0 and limit and counts["total"] > limit:
            return error(
                "VT431", f"{where}: {sizes} exceed the max length {limit}, which cuts off the whole answer", span,
                help=f"raise `max length` to at least {counts['total']}, or use a smaller `resize`")
        if counts["trained"] == 0:
            return error(
                "VT565", f"{where}: this row would train on 0 tokens: under `with responses_only` only the answer "
                         f"after the response marker {self.response_part!r} is trained, and the marker's tokens "
                         "do not occur in the row as the chat template writes it", span,
                help="`vtc preview` shows the row as the model sees it; write `without responses_only` to train on "
                     "the whole text, or use a model whose chat template writes the family's markers (`vtc plan` "
                     "shows them)")
        if counts["answer_cut"]:
            # An answer cut anywhere is a problem: in a multi-turn conversation the cut takes the last answers
            # first (whole or in part), and the model would learn a cut answer, or miss the turns it was given.
            n = len(counts["answer"])
            k = counts.get("answers", 1)
            what = (f"the last {counts['answer_cut']} of the answer's {n} tokens" if k <= 1 else
                    f"{counts['answer_cut']} of the {n} tokens of its {k} answers ({counts['answers_cut']} of the "
                    "answers cut short or lost)")
            return error(
                "VT564", f"{where}: {sizes} exceed the max length {limit}, which cuts {what}: the model would "
                         "learn a cut answer and never to end it", span,
                help=f"raise `max length` to at least {counts['total']}, use a smaller `resize` (fewer image "
                     "tokens), or shorten the answer")
        return None


def check_lengths(rows, max_seq_length: int, processor=None, *, collator: VisionCollator | None = None) -> int:
    """Module-level form of ``VisionCollator.check_lengths`` (give the processor or a collator)."""
    if collator is None:
        if processor is None:
            raise TypeError("check_lengths needs the processor (or a collator) to count tokens")
        collator = VisionCollator(processor, train_on_responses_only=False, instruction_part=None,
                                  response_part=None, max_seq_length=max_seq_length)
    return collator.check_lengths(rows, max_seq_length)


def answer_spans(positions: list[int]) -> list[list[int]]:
    """The answers among sorted trained positions (answer_positions): each run of consecutive positions is one
    answer (two answers are never adjacent: the response marker stands between them)."""
    spans: list[list[int]] = []
    for p in positions:
        if spans and p == spans[-1][-1] + 1:
            spans[-1].append(p)
        else:
            spans.append([p])
    return spans


def _placeholder_ids(tokenizer) -> set[int]:
    """Ids of the image placeholder tokens this tokenizer has, plus its pad id (unk never counts)."""
    vocab = tokenizer.get_vocab()
    names = list(IMAGE_TOKENS)
    for attr in ("image_token", "video_token"):
        tok = getattr(tokenizer, attr, None)
        if isinstance(tok, str):
            names.append(tok)
    ids = {vocab[t] for t in names if t in vocab}
    unk = getattr(tokenizer, "unk_token_id", None)
    ids.discard(unk)
    if tokenizer.pad_token_id is not None:
        ids.add(tokenizer.pad_token_id)
    return ids


def _videos_of(messages: list[dict]) -> list[dict]:
    """The opened video parts of a conversation, in order: {"type": "video", "video": [PIL frames], "fps": ...,
    "resized_height": H, "resized_width": W} (vtc.runtime.video.Clip.part())."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "video" and isinstance(part.get("video"),
                                                                                          (list, tuple)):
                    out.append(part)
    return out


def video_arguments(clips: list[dict]) -> dict:
    """The processor's video arguments for a batch's clips (in order, across rows): the frames as they are, one list
    a clip, with each clip's metadata, so that transformers samples nothing again (``do_sample_frames=False``) and
    takes the rate from the metadata: Qwen2.5-VL's temporal positions (second_per_grid_ts = temporal_patch / fps)
    follow the clip's sampled fps. Unsloth's collator does the same (unsloth_zoo vision_utils.video_processor_kwargs).
    """
    videos, metadata = [], []
    for part in clips:
        frames = list(part["video"])
        fps = float(part["fps"])
        n = len(frames)
        videos.append(frames)
        metadata.append({"fps": fps, "total_num_frames": n, "frames_indices": list(range(n)),
                         "duration": n / fps if fps > 0 else None})
    return {"videos": videos, "video_metadata": metadata, "do_sample_frames": False}


def video_bounds(video: dict | None) -> tuple[int, int] | None:
    """(min_pixels, max_pixels) of one frame under the plan's video resize: bounds that every frame vtc sized
    (registry.frame_size, multiples of the resize's multiple) lies within, so that the processor's own smart_resize
    leaves the frames as they are. None without video."""
    if not video:
        return None
    resize = video["resize"]
    multiple = int(resize["multiple"])
    if resize["mode"] == "pixels":
        return int(resize["min_pixels"]), int(resize["max_pixels"])
    if resize["mode"] == "longest":
        side = -(-int(resize["size"]) // multiple) * multiple + multiple  # the longest side, rounded up, and some
        return multiple * multiple, side * side
    return None


def set_video_bounds(processor, video: dict | None) -> None:
    """Give the processor's video processor the plan's frame bounds (as the image processor keeps the images vtc
    sized): frames are sized by vtc (vtc.runtime.video.read_clip) and must reach the model as they are. Also keeps
    transformers' uncapped per-frame behaviour (``cap_pixels_per_frame=False``: the cap would resize again). A
    processor without a video processor (families without video) is left alone."""
    vp = getattr(processor, "video_processor", None)
    bounds = video_bounds(video)
    if vp is None or bounds is None:
        return
    lo, hi = bounds
    vp.size = {"shortest_edge": lo, "longest_edge": hi}
    for attr in ("min_pixels", "max_pixels"):
        if getattr(vp, attr, None) is not None:
            setattr(vp, attr, lo if attr == "min_pixels" else hi)
    vp.cap_pixels_per_frame = False
    vp.do_sample_frames = False


def _images_of(messages: list[dict]) -> list:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image" and part.get("image") is not None:
                    out.append(part["image"])
    return out


def _clean(messages: list[dict]) -> list[dict]:
    """Messages as the template expects them: string content as one text part, None keys dropped (as Unsloth)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = [{k: v for k, v in p.items() if v is not None} for p in content]
        out.append({"role": m["role"], "content": parts})
    return out


def _cache_key(row: dict):
    """Rows with the same text and image sizes have the same token counts."""
    try:
        messages = row["messages"]
        key = []
        for m in messages:
            for p in m["content"]:
                if p["type"] == "video":
                    key.append((m["role"], "video", len(p["video"]), p["video"][0].size, p.get("fps")))
                else:
                    key.append((m["role"], p["type"], p.get("text") if p["type"] == "text" else p["image"].size))
        return tuple(key)
    except (KeyError, TypeError, AttributeError):
        return None


# --- errors in data-loading workers ---------------------------------------------------------------------------------


class WorkerFailure(Exception):
    """An exception of a data-loading worker, carried whole to the training process.

    torch's DataLoader sends a worker's exception across as its type and its formatted traceback, and in the
    training process rebuilds it as ``type(text)`` (torch.utils.data._utils / torch._utils.ExceptionWrapper.reraise),
    which loses everything but text (a VtcError's diagnostics among it). A WorkerFailure's message is the original
    exception as JSON, base64-encoded behind MARK, so that when torch rebuilds it from the text, ``__new__``
    finds the mark and returns the original exception instead: the same VtcError with its diagnostics, the same
    OSError with its errno (a full disk stays VT522), a built-in exception of the same type; any other comes back as
    a RuntimeError naming its type. The worker's traceback is added to it as a note (for bugs).
    """

    MARK = "vtc-worker-failure:"

    def __new__(cls, *args):
        text = args[0] if len(args) == 1 and isinstance(args[0], str) else None
        if text is not None and cls.MARK in text:
            rebuilt = _unpack(text)
            if rebuilt is not None:
                return rebuilt  # not a WorkerFailure: Python then skips __init__, and torch raises this one
        return super().__new__(cls, *args)

    @classmethod
    def carrying(cls, exc: BaseException) -> "WorkerFailure":
        """The WorkerFailure a worker raises for ``exc`` (made without __new__'s unpacking)."""
        payload = _pack(exc)
        failure = Exception.__new__(cls)
        Exception.__init__(failure, cls.MARK + payload)
        return failure


def carried(exc: BaseException) -> BaseException:
    """The exception a WorkerFailure carries, when one arrives as itself (a torch that rebuilds a worker's exception
    another way than ``type(text)``); any other exception as it is."""
    if isinstance(exc, WorkerFailure):
        return _unpack(str(exc)) or exc
    return exc


def in_worker() -> bool:
    """Whether this code runs in a data-loading worker process (torch sets the worker info there only)."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return False
    return get_worker_info() is not None


@contextmanager
def worker_errors():
    """Around a collate function: in a data-loading worker, an exception leaves as a WorkerFailure carrying it (the
    training process raises the original); in the training process itself, exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        if not in_worker():
            raise
        raise WorkerFailure.carrying(exc) from None


def _pack(exc: BaseException) -> str:
    """The exception and its worker traceback as JSON, base64-encoded (one line of text). JSON, not pickle: vtc never
    unpickles (tests/test_security.py); what an exception is made of that JSON cannot hold goes as text."""
    item: dict = {"type": type(exc).__name__, "message": str(exc),
                  "where": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    if isinstance(exc, VtcError):
        item["diagnostics"] = [d.to_json() for d in exc.diagnostics]
    elif isinstance(exc, OSError) and exc.errno is not None:  # a full disk must stay a full disk (VT522)
        item["os"] = [exc.errno, exc.strerror, None if exc.filename is None else str(exc.filename)]
    return base64.b64encode(json.dumps(item).encode("utf-8")).decode("ascii")


def _unpack(text: str):
    """The exception a WorkerFailure's text carries, or None when the text holds none (then torch's own path): a
    VtcError with the same diagnostics, an OSError with the same errno, a built-in exception of the same type and
    message, anything else a RuntimeError naming its type; with the worker's traceback as a note."""
    words = text.rsplit(WorkerFailure.MARK, 1)[1].split()
    try:
        item = json.loads(base64.b64decode(words[0] if words else "", validate=True).decode("utf-8"))
        name, message, where = str(item["type"]), str(item["message"]), str(item["where"])
        if "diagnostics" in item:
            exc: BaseException = VtcError([_diagnostic(d) for d in item["diagnostics"]])
        elif "os" in item:
            number, strerror, filename = item["os"]
            exc = OSError(int(number), strerror, filename) if filename is not None else OSError(int(number), strerror)
        else:
            exc = _builtin(name, message) or RuntimeError(f"{name} in a data-loading worker: {message}")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None
    try:
        exc.add_note("raised in a data-loading worker process:\n" + where)
    except AttributeError:  # Python < 3.11
        pass
    return exc


def _builtin(name: str, message: str) -> Exception | None:
    """A built-in exception of that name with that message (ValueError, KeyError, ...), or None."""
    kind = getattr(builtins, name, None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)) or issubclass(kind, OSError):
        return None
    try:
        return kind(message)
    except TypeError:  # one whose constructor takes more (UnicodeDecodeError)
        return None


def _diagnostic(data: dict):
    """A Diagnostic from its to_json() form."""
    from vtc.diagnostics import Diagnostic, Severity

    def span(d):
        return Span(**{k: d[k] for k in ("file", "line", "column", "end_line", "end_column")}) if d else None

    return Diagnostic(data["code"], Severity(data["severity"]), data["message"], span(data["span"]), data["help"],
                      tuple((span(r["span"]), r["message"]) for r in data["related"]))


# torch's words when a worker process ends without a Python exception (torch/utils/data/dataloader.py and the
# SIGCHLD handler of torch/csrc/DataLoader.cpp): "DataLoader worker (pid 4242) is killed by signal: Killed.",
# "DataLoader worker (pid(s) 4242) exited unexpectedly".
_WORKER_DIED = re.compile(r"DataLoader worker \(pid(?:\(s\))? ?([\d, ]+)\) (is killed by signal: ([^.]+)|exited "
                          r"unexpectedly(?: with exit code -?\d+)?)")


def worker_died(exc: BaseException) -> str | None:
    """What became of a data-loading worker that ended without a Python error ("killed by signal: Killed"), from
    torch's exception anywhere in ``exc``'s chain; None when ``exc`` is not that."""
    seen: set[int] = set()
    e: BaseException | None = exc
    said = None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        found = _WORKER_DIED.search(str(e))
        if found and found.group(3):  # the signal (torch's SIGCHLD handler) says most: it is often the cause
            return f"killed by signal: {found.group(3).strip()}"
        if found and said is None:
            said = found.group(2)
        e = e.__cause__ or e.__context__
    return said


def worker_died_error(detail: str, doing: str, span: Span | None, resume: str = ""):
    """VT542: a data-loading worker process ended without a Python error, with the likely cause and what to do."""
    why = ""
    if detail.endswith("Killed"):
        why = " (Linux's out-of-memory killer ends processes this way: the machine's memory ran out)"
    elif detail.endswith("Bus error"):
        why = (" (a worker could not write its batch into shared memory, /dev/shm, which is full: in a container, "
               "`--shm-size=8g` raises it)")
    elif "Segmentation fault" in detail or "Aborted" in detail:
        why = " (a library crashed while opening or preparing an image)"
    return error(
        "VT542", f"a data-loading worker process stopped while {doing}: {detail}{why}", span,
        help="free memory on this machine, or make the batches in the training process: save the plan (`vtc plan "
             "recipe.vt -o plan.json`), set training.data_loading.workers to 0 in it (\"gpu\" and \"cpu\"), and run "
             "`vtc run plan.json`" + resume)
