"""The recipe document against schema.json: every schema error becomes a sentence at the recipe span (VT1xx).

Two engines give the same errors:

* ``fast`` (the default): a small evaluator of exactly the JSON Schema keywords schema.json uses (type, enum,
  const, properties, additionalProperties, required, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
  minLength, minItems, uniqueItems, items, oneOf). It exists for start-up time: importing jsonschema costs about
  0.11 s on these machines, more than half of `vtc check`'s 0.2 s budget (docs/plan.md, Speed).
* ``jsonschema``: the reference implementation (Draft 2020-12), imported lazily; the tests check that both engines
  report the same errors on every shipped recipe and every bad golden.

Codes: VT101 unknown option or setting, VT102 a value that is not one of the choices, VT103 a value of the wrong
kind, VT104 out of range, VT105 a required clause missing, VT106 an item listed twice, VT107 an empty value,
VT108 a value in none of the accepted forms (resize).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, did_you_mean, error

SCHEMA_FILE = Path(__file__).with_name("schema.json")


def schema_text() -> str:
    """The JSON Schema that every recipe document is validated against (what `vtc schema` prints)."""
    return SCHEMA_FILE.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(schema_text())


@lru_cache(maxsize=1)
def _jsonschema_validator():
    import jsonschema  # lazily: ~0.11 s of imports

    return jsonschema.Draft202012Validator(schema())


# --- the fast engine ------------------------------------------------------------------------------------------------
# An error is (keyword, path, instance, schema node), like a jsonschema ValidationError's validator, absolute_path,
# instance and schema.


def _is_type(value, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "null":
        return value is None
    return False


def _equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _errors(value, node: dict, path: tuple) -> list[tuple]:
    out: list[tuple] = []
    if "type" in node and not _is_type(value, node["type"]):
        return [("type", path, value, node)]
    if "const" in node and not _equal(value, node["const"]):
        out.append(("const", path, value, node))
    if "enum" in node and not any(_equal(value, choice) for choice in node["enum"]):
        out.append(("enum", path, value, node))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            out.append(("minimum", path, value, node))
        if "maximum" in node and value > node["maximum"]:
            out.append(("maximum", path, value, node))
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            out.append(("exclusiveMinimum", path, value, node))
        if "exclusiveMaximum" in node and value >= node["exclusiveMaximum"]:
            out.append(("exclusiveMaximum", path, value, node))
    if isinstance(value, str) and "minLength" in node and len(value) < node["minLength"]:
        out.append(("minLength", path, value, node))
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            out.append(("minItems", path, value, node))
        if node.get("uniqueItems"):
            seen: list = []
            for item in value:
                if any(_equal(item, s) for s in seen):
                    out.append(("uniqueItems", path, value, node))
                    break
                seen.append(item)
        if "items" in node:
            for i, item in enumerate(value):
                out.extend(_errors(item, node["items"], path + (i,)))
    if isinstance(value, dict):
        props = node.get("properties", {})
        if node.get("additionalProperties") is False and set(value) - set(props):
            out.append(("additionalProperties", path, value, node))
        if any(r not in value for r in node.get("required", [])):
            out.append(("required", path, value, node))
        for key, sub in props.items():
            if key in value:
                out.extend(_errors(value[key], sub, path + (key,)))
    if "oneOf" in node:
        matches = sum(1 for sub in node["oneOf"] if not _errors(value, sub, path))
        if matches != 1:
            out.append(("oneOf", path, value, node))
    return out


def raw_errors(document: dict, engine: str = "fast") -> list[tuple]:
    """Schema errors as (keyword, path, instance, schema node), sorted; engine "fast" or "jsonschema"."""
    if engine == "jsonschema":
        errors = [(e.validator, tuple(e.absolute_path), e.instance, e.schema)
                  for e in _jsonschema_validator().iter_errors(document)]
        # jsonschema reports one error per missing required property; the fast engine one per object.
        unique, seen = [], set()
        for err in errors:
            key = (err[0], err[1])
            if key not in seen:
                seen.add(key)
                unique.append(err)
        errors = unique
    else:
        errors = _errors(document, schema(), ())
    return sorted(errors, key=lambda e: ([str(p) for p in e[1]], e[0]))


# --- errors -> diagnostics ------------------------------------------------------------------------------------------


def pointer(path) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


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
_EXAMPLE = {"batch": "batch 2", "accumulate": "accumulate 4", "learning rate": "learning rate 2e-4",
            "max length": "max length 2048", "seed": "seed 3407", "gpus": "gpus 1", "lora rank": "lora rank 16",
            "lora alpha": "lora alpha 16", "lora dropout": "lora dropout 0.05", "holdout": "holdout 10%",
            "train for": "train for 1 epoch", "warmup": "warmup 5 steps", "weight decay": "weight decay 0.001"}
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
    for keyword, path, instance, node in raw_errors(document, engine):
        title = node.get("title") or (str(path[-1]) if path else "recipe")
        span = _span(spans, path)
        if keyword == "additionalProperties":
            props = list(node.get("properties", {}))
            for extra in sorted(set(instance) - set(props)):
                where = _span(spans, path + (extra,))
                thing = "option" if path == ("flags",) else f"{title} setting" if path else "clause"
                hint = did_you_mean(extra, props)
                out.append(error("VT101", f"unknown {thing} `{extra}`", where,
                                 hint or "write one of: " + ", ".join(f"`{p}`" for p in props)))
        elif keyword == "enum":
            choices = [str(c) for c in node["enum"]]
            hint = did_you_mean(str(instance), choices)
            out.append(error("VT102", f"unknown {title} `{_shown(instance)}`", span,
                             hint or "write one of: " + ", ".join(f"`{c}`" for c in choices)))
        elif keyword == "type":
            expected = _KIND.get(node["type"], node["type"])
            example = _EXAMPLE.get(title)
            out.append(error("VT103", f"`{title}` needs {expected}, not `{_shown(instance)}`", span,
                             f"for example `{example}`" if example else None))
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
        else:  # oneOf / const: resize is the one field with several forms
            out.append(error(
                "VT108", f"`{title}` cannot be `{_shown(instance)}`", span,
                "write `resize 512` (longest side in pixels), `resize 640x480` (exact size) or `resize none`"
                if title == "resize" else node.get("description")))
    return out
