"""The recipe document against schema.json: every schema error becomes a sentence at the recipe span (VT1xx).

The schema is evaluated by vtc.schema_engine: its fast evaluator by default (start-up time), jsonschema as the
reference engine (``engine="jsonschema"``); tests check that both report the same errors.

Codes: VT101 unknown option or setting, VT102 a value that is not one of the choices, VT103 a value of the wrong
kind, VT104 out of range, VT105 a required clause missing, VT106 an item listed twice, VT107 an empty value,
VT108 a value in none of the accepted forms (resize).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from vtc import schema_engine
from vtc.diagnostics import Diagnostic, Span, did_you_mean, error, suggest
from vtc.schema_engine import pointer

SCHEMA_FILE = Path(__file__).with_name("schema.json")


def schema_text() -> str:
    """The JSON Schema that every recipe document is validated against (what `vtc schema` prints)."""
    return SCHEMA_FILE.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(schema_text())


def raw_errors(document: dict, engine: str = "fast") -> list[tuple]:
    """Schema errors of a recipe document as (keyword, path, instance, schema node), sorted (vtc.schema_engine)."""
    return schema_engine.raw_errors(document, schema(), engine)


def value_range(pointer: str) -> tuple[object, object]:
    """(lowest, highest) value the schema allows at a document pointer (`/batch`, `/lora/rank`, `/resize/width`),
    inclusive or not; (None, None) when it gives no range there."""
    node = schema()
    for token in [t for t in pointer.strip("/").split("/") if t]:
        node = _child(node, token)
        if node is None:
            return None, None
    for branch in [node] + list(node.get("oneOf", [])):
        low = branch.get("minimum", branch.get("exclusiveMinimum"))
        high = branch.get("maximum", branch.get("exclusiveMaximum"))
        if low is not None or high is not None:
            return low, high
    return None, None


def _child(node: dict, token: str) -> dict | None:
    for branch in [node] + list(node.get("oneOf", [])):
        found = branch.get("properties", {}).get(token)
        if found is not None:
            return found
    return None


# --- errors -> diagnostics ------------------------------------------------------------------------------------------


def _span(spans: dict[str, Span], path) -> Span | None:
    """The span of the value at path, or of its nearest parent that has one."""
    path = list(path)
    while True:
        ptr = pointer(path)
        if ptr in spans:
            return spans[ptr]
        if not path:
            return None
        path.pop()


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict) and set(value) == {"width", "height"}:
        return f"{value['width']}x{value['height']}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


_KIND = {"integer": "a whole number", "number": "a number", "string": "a word or a quoted text",
         "boolean": "on or off", "array": "a list", "object": "settings"}
_EXAMPLE = {"batch": "batch 8", "micro batch": "micro batch 2", "accumulate": "accumulate 4",
            "learning rate": "learning rate 2e-4",
            "max length": "max length 2048", "seed": "seed 3407", "gpus": "gpus 2", "lora rank": "lora rank 16",
            "lora alpha": "lora alpha 16", "lora dropout": "lora dropout 0.05", "holdout": "holdout 10%",
            "train for": "train for 1 epoch", "warmup": "warmup 5 steps", "weight decay": "weight decay 0.001"}
# Words that mean a choice without being spelled like it (a misspelling is caught by did_you_mean): schema title ->
# {word: choice}.
_SYNONYMS = {
    "part": {"everything": "all", "every": "all", "whole": "all", "entire": "all", "full": "all", "both": "all",
             "image": "vision", "images": "vision", "visual": "vision", "encoder": "vision", "vit": "vision",
             "text": "language", "llm": "language", "lm": "language", "decoder": "language",
             "attn": "attention", "self_attn": "attention", "ffn": "mlp", "feed_forward": "mlp", "feedforward": "mlp"},
}
_REQUIRED = {
    "model": ("the recipe has no `finetune <parts> on <model>` line",
              "start the recipe with a line like `finetune all on qwen2.5-vl`"),
    "parts": ("the recipe has no `finetune <parts> on <model>` line",
              "start the recipe with a line like `finetune all on qwen2.5-vl`"),
    "train_data": ("the recipe never says where the training data is",
                   "add a line like `from ./images` (a folder) or `from unsloth/Radiology_mini` (a Hub dataset)"),
}


def validate(document: dict, spans: dict[str, Span], engine: str = "fast") -> list[Diagnostic]:
    """Check the recipe document against schema.json; one diagnostic per problem, at the recipe's span."""
    out: list[Diagnostic] = []
    reported_required: set[str] = set()
    for keyword, path, instance, node in schema_engine.worst_only(raw_errors(document, engine)):
        title = node.get("title") or (str(path[-1]) if path else "recipe")
        span = _span(spans, path)
        if keyword == "additionalProperties":
            props = list(node.get("properties", {}))
            for extra in sorted(set(instance) - set(props)):
                where = _span(spans, path + (extra,))
                thing = "option" if path == ("flags",) else f"{title} setting" if path else "clause"
                hint = did_you_mean(extra, props)
                out.append(error("VT101", f"unknown {thing} `{extra}`", where,
                                 hint or "write one of: " + ", ".join(f"`{p}`" for p in props),
                                 suggestion=suggest(extra, props)))
        elif keyword == "enum":
            choices = [str(c) for c in node["enum"]]
            meant = _SYNONYMS.get(title, {}).get(str(instance).lower())
            hint = f"did you mean `{meant}`?" if meant in choices else did_you_mean(str(instance), choices)
            fix = meant if meant in choices else suggest(str(instance), choices)
            if title == "projector" and _is_number(instance):  # `learning rate 2e-4, vision 2e-5 projector 1e-4`
                hint = (f"for the projector's learning rate, put a comma before `projector`: `learning rate ..., "
                        f"projector {_shown(instance)}`; without it, `projector` starts a clause of its own "
                        "(`projector full` or `projector lora`)")
                fix = None
            out.append(error("VT102", f"unknown {title} `{_shown(instance)}`", span,
                             hint or "write one of: " + ", ".join(f"`{c}`" for c in choices), suggestion=fix))
        elif keyword == "type":
            expected = _KIND.get(node["type"], node["type"])
            example = _EXAMPLE.get(title)
            low, high = node.get("minimum", node.get("exclusiveMinimum")), node.get(
                "maximum", node.get("exclusiveMaximum"))
            within = f" (it takes values from {low} to {high})" if low is not None and high is not None else ""
            out.append(error("VT103", f"`{title}` needs {expected}, not `{_shown(instance)}`", span,
                             f"for example `{example}`{within}" if example else None))
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            bound = node[keyword]
            phrase = {"minimum": f"at least {bound}", "maximum": f"at most {bound}",
                      "exclusiveMinimum": f"more than {bound}", "exclusiveMaximum": f"less than {bound}"}[keyword]
            low, high = node.get("minimum", node.get("exclusiveMinimum")), node.get(
                "maximum", node.get("exclusiveMaximum"))
            help = f"`{title}` takes values from {low} to {high}" if low is not None and high is not None else None
            out.append(error("VT104", f"`{title}` must be {phrase} (found {_shown(instance)})", span, help))
        elif keyword == "required":
            for name in node.get("required", []):
                if name in instance or (not path and name in reported_required):
                    continue
                if not path and name in _REQUIRED:
                    message, help = _REQUIRED[name]
                    if message in reported_required:
                        continue
                    reported_required.update({name, message})
                    out.append(error("VT105", message, span, help))
                else:
                    out.append(error("VT105", f"`{title}` needs a `{name}`", span))
        elif keyword == "uniqueItems":
            dupes = sorted({str(x) for x in instance if instance.count(x) > 1})
            item_span = span
            for i, item in enumerate(instance):
                if str(item) in dupes and instance.index(item) != i:
                    item_span = _span(spans, path + (i,))
                    break
            out.append(error("VT106", f"`{title}` lists `{dupes[0] if dupes else '?'}` twice", item_span,
                             "list each one once"))
        elif keyword in ("minLength", "minItems"):
            out.append(error("VT107", f"`{title}` is empty", span, "write a value, for example: "
                             + (f"`{_EXAMPLE[title]}`" if title in _EXAMPLE else f"`{title} ...`")))
        elif title == "gpus" and isinstance(instance, (int, float)) and not isinstance(instance, bool):
            # `gpus` is a number or `all`: a number out of range is a range problem, not a wrong form.
            out.append(error("VT104", f"`gpus` must be from 1 to 64 (found {_shown(instance)})", span,
                             "write the number of GPUs to train on, from 1 to 64, or `gpus all` (one process per "
                             "visible GPU)"))
        else:  # oneOf / const: resize and gpus are the fields with several forms
            out.append(error(
                "VT108", f"`{title}` cannot be `{_shown(instance)}`", span,
                "write `resize 512` (longest side in pixels), `resize 640x480` (exact size), `resize none` or a pixel "
                "budget such as `resize between 200k and 1m pixels`"
                if title == "resize" else node.get("description")))
    return out


def _is_number(value) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True
