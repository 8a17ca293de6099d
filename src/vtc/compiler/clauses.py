"""The clause table: one row for each clause keyword of the language, in the order of the language table.

The grammar (src/vtc/grammar/vt.lark) says how a clause is written; this table says the rest that the front end
needs to know about it:

* ``keyword``: the keyword as users write it, words separated by one space. Its grammar terminal is the same in
  upper case with ``_`` for the spaces (``learning rate`` -> ``LEARNING_RATE``).
* ``example``: a whole clause, shown in the help line of syntax errors.
* ``word``: what a plain word (a name) means in the clause, for syntax errors ("expected a method (qlora, lora or
  full)"); empty where the clause takes no name, or where "a name" says it.
* ``key``: for a simple clause -- a keyword and one value, in the grammar rule ``number`` (the value is a number)
  or ``choice`` (the value stays text) -- the recipe-document key it sets: ``batch 2`` -> ``/batch``.

The order of the rows is the canonical order of `vtc fmt`. The parser, lowering and fmt handle every simple
clause through this table, so a new one needs only its grammar terminal, an alternative in ``number`` or
``choice``, and a row here.
"""

from __future__ import annotations

from vtc.records import record

__all__ = ["Clause", "CLAUSES", "CLAUSE_KEYWORDS", "BY_KEYWORD", "BY_TERMINAL", "ONE_LINE_EXAMPLE"]


@record
class Clause:
    keyword: str
    example: str
    word: str = ""
    key: str = ""


_PART = "a part to train (vision, language, attention, mlp, projector or all)"
_OPTION = "an option name"
_DATA = "a folder or a dataset name"
_COLUMN = "a column name"

CLAUSES: tuple[Clause, ...] = (
    Clause("finetune", "finetune vision, mlp on qwen2.5-vl", _PART),
    Clause("include", 'include "base.vt"', "a file name"),
    Clause("using", "using lora", "a method (qlora, lora or full)", key="method"),
    Clause("precision", "precision bf16", "a precision (auto, bf16 or fp16)", key="precision"),
    Clause("with", "with responses_only, rslora", _OPTION),
    Clause("without", "without gradient_checkpointing", _OPTION),
    Clause("from", "from unsloth/Radiology_mini split train", _DATA),
    Clause("evaluate on", "evaluate on ./val", _DATA),
    Clause("holdout", "holdout 10%"),
    Clause("ask", 'ask "Describe this X-ray."', key="instruction"),
    Clause("system", 'system "You are an expert radiographer."', key="system"),
    Clause("answer from", "answer from column caption", _COLUMN),
    Clause("images from", "images from column image", _COLUMN),
    Clause("resize", "resize 512"),
    Clause("bad rows", "bad rows skip", "what to do with bad rows (skip or stop)", key="bad_rows"),
    Clause("window", "window 40 400"),
    Clause("tiff pages", "tiff pages all", "which pages (all or first)", key="tiff_pages"),
    Clause("video", "video 2 fps, at most 16 frames, between 1.5 and 8 seconds, frame size 336"),
    Clause("lora", "lora rank 16 alpha 16 dropout 0"),
    Clause("projector", "projector full", "how the projector trains (full or lora)", key="projector"),
    Clause("train for", "train for 60 steps"),
    Clause("batch", "batch 8", key="batch"),
    Clause("micro batch", "micro batch 2", key="micro_batch"),
    Clause("accumulate", "accumulate 4", key="accumulate"),
    Clause("learning rate", "learning rate 2e-4",
           "a part with a rate of its own (vision, projector or language)"),
    Clause("warmup", "warmup 5 steps"),
    Clause("schedule", "schedule cosine", "a schedule name (linear, cosine, ...)", key="schedule"),
    Clause("optimizer", "optimizer adamw_8bit", "an optimizer name (adamw_8bit, adamw_torch, ...)", key="optimizer"),
    Clause("weight decay", "weight decay 0.01", key="weight_decay"),
    Clause("max length", "max length 2048", key="max_length"),
    Clause("seed", "seed 3407", key="seed"),
    Clause("metric", "metric exact_match, cer", "a metric name (exact_match, cer, wer, ...)"),
    Clause("save to", "save to ./runs/xray", "a folder", key="save_to"),
    Clause("export", "export adapter, merged", "an export kind (adapter or merged)"),
    Clause("gpus", "gpus 2", "a number of GPUs or `all`", key="gpus"),
    Clause("shard", "shard model", "what to split across the GPUs (model)", key="shard"),
    Clause("checkpoint every", "checkpoint every 50 steps"),
)

# The clause-start keywords as users write them, in table order.
CLAUSE_KEYWORDS: tuple[str, ...] = tuple(c.keyword for c in CLAUSES)
BY_KEYWORD: dict[str, Clause] = {c.keyword: c for c in CLAUSES}
# Grammar terminal -> row: LEARNING_RATE -> the `learning rate` row.
BY_TERMINAL: dict[str, Clause] = {c.keyword.upper().replace(" ", "_"): c for c in CLAUSES}

ONE_LINE_EXAMPLE = "finetune vision,mlp on qwen2.5-vl with responses_only from ./xrays resize 512"
