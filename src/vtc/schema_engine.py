"""A small evaluator of the JSON Schema keywords that vtc's two schemas use, and the reference engine beside it.

vtc validates two documents against shipped schemas: the recipe document (compiler/schema.json, on every
`vtc check`) and the plan (plan.schema.json, whenever a plan is written or read). Importing jsonschema costs about
0.11 s on these machines, more than half of `vtc check`'s 0.2 s budget, so the ``fast`` engine here evaluates
exactly the keywords in ``KEYWORDS`` (Draft 2020-12 semantics) and nothing else. It earns its place by two tests
(tests/test_schema_engine.py): both shipped schemas use no keyword outside ``KEYWORDS``, and on every document of
the fuzz corpus the fast engine reports the same errors as jsonschema, the reference engine (``engine="jsonschema"``,
imported lazily).

An error is (keyword, path, instance, schema node), like a jsonschema ValidationError's validator, absolute_path,
instance and schema.
"""

from __future__ import annotations

# Keywords the fast engine evaluates. Annotations (title, description, default, examples, $comment) and the
# identifiers ($schema, $id, $defs) are read but never fail a document.
KEYWORDS = frozenset({
    "type", "enum", "const", "properties", "additionalProperties", "required", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "minItems", "maxItems", "uniqueItems", "items", "oneOf",
    "$ref",
})
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$schema", "$id", "$defs"})


def keywords_used(schema) -> set[str]:
    """Every keyword a schema uses, anywhere in it (property names under `properties` and `$defs` excluded)."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            found.add(key)
            if key in ("properties", "$defs"):
                for sub in value.values():
                    walk(sub)
            elif key in ("items", "additionalProperties", "oneOf"):
                walk(value)
    walk(schema)
    return found


def _is_type(value, kind) -> bool:
    if isinstance(kind, list):
        return any(_is_type(value, k) for k in kind)
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
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _errors(value, node: dict, path: tuple, root: dict) -> list[tuple]:
    if "$ref" in node:
        # Only local references into $defs ("#/$defs/name"), the one form vtc's schemas use; keywords beside a
        # $ref apply as well (Draft 2020-12).
        target = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _errors(value, target, path, root) + (_errors(value, rest, path, root) if rest else [])
    out: list[tuple] = []
    # Each keyword applies on its own, and only to values of its kind (minimum to numbers, items to lists, ...),
    # so a value of the wrong type can fail other keywords too: jsonschema reports them all, and so does this.
    if "type" in node and not _is_type(value, node["type"]):
        out.append(("type", path, value, node))
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
        if "maxItems" in node and len(value) > node["maxItems"]:
            out.append(("maxItems", path, value, node))
        if node.get("uniqueItems"):
            seen: list = []
            for item in value:
                if any(_equal(item, s) for s in seen):
                    out.append(("uniqueItems", path, value, node))
                    break
                seen.append(item)
        if "items" in node:
            for i, item in enumerate(value):
                out.extend(_errors(item, node["items"], path + (i,), root))
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        if extra is False and set(value) - set(props):
            out.append(("additionalProperties", path, value, node))
        if any(r not in value for r in node.get("required", [])):
            out.append(("required", path, value, node))
        for key, sub in props.items():
            if key in value:
                out.extend(_errors(value[key], sub, path + (key,), root))
        if isinstance(extra, dict):
            for key in value:
                if key not in props:
                    out.extend(_errors(value[key], extra, path + (key,), root))
    if "oneOf" in node:
        matches = sum(1 for sub in node["oneOf"] if not _errors(value, sub, path, root))
        if matches != 1:
            out.append(("oneOf", path, value, node))
    return out


_REFERENCE: list[tuple[dict, object]] = []  # (schema, its jsonschema validator)


def _reference_validator(schema: dict):
    for known, validator in _REFERENCE:
        if known is schema:
            return validator
    import jsonschema  # lazily: ~0.11 s of imports

    validator = jsonschema.Draft202012Validator(schema)
    _REFERENCE.append((schema, validator))
    return validator


def raw_errors(document, schema: dict, engine: str = "fast") -> list[tuple]:
    """Schema errors as (keyword, path, instance, schema node), sorted; engine "fast" or "jsonschema"."""
    if engine == "jsonschema":
        validator = _reference_validator(schema)
        errors = [(e.validator, tuple(e.absolute_path), e.instance, e.schema)
                  for e in validator.iter_errors(document)]
        # jsonschema reports one error per missing required property; the fast engine one per object.
        unique, seen = [], set()
        for err in errors:
            key = (err[0], err[1])
            if key not in seen:
                seen.add(key)
                unique.append(err)
        errors = unique
    else:
        errors = _errors(document, schema, (), schema)
    return sorted(errors, key=lambda e: ([str(p) for p in e[1]], e[0]))


def worst_only(errors: list[tuple]) -> list[tuple]:
    """The errors to tell a person: where a value has the wrong type, only that (not also that it is out of range).
    """
    wrong_type = {e[1] for e in errors if e[0] == "type"}
    return [e for e in errors if e[0] == "type" or e[1] not in wrong_type]


def raw_errors_at(value, node: dict, path: tuple, root: dict) -> list[tuple]:
    """The fast engine's errors of ``value`` against one node of the schema ``root`` (e.g. one oneOf form)."""
    return _errors(value, node, path, root)


def pointer(path) -> str:
    """The JSON pointer (RFC 6901) of a path of keys and indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
