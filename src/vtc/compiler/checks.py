"""Semantic checks on a schema-valid recipe document (VT2xx). Each check has a code, a test
(tests/test_checks.py) and an entry in docs/diagnostics.md. Checks never change the document.

    check(document, spans, registry, model=None) -> [Diagnostic]

``model`` is resolve_model's result when the pipeline resolved the model already (it may have read a local
folder's config.json); otherwise the name is resolved here without reading files.
"""

from __future__ import annotations

from vtc.compiler.plan import DEFAULTS, image_estimate, selection, trainable_parameters
from vtc.diagnostics import Diagnostic, Span, error, note, warning
from vtc.registry import Registry, default_resize, model_geometry, resolve_model

# Unsloth advises 300-1000 px for vision fine-tuning (unsloth#1326): above, image tokens (and activations) grow with
# the area and run out of memory; below, Qwen-VL's 28 px tokens and Llama's 560 px tiles lose the detail that
# reports and documents need.
MIN_SIDE, MAX_SIDE = 300, 1000
# Text that must fit beside the image tokens: chat template, instruction and a short answer.
MIN_TEXT_TOKENS = 64
LR_SUSPICIOUS = 1e-2


_UNSET = object()


def check(document: dict, spans: dict[str, Span], registry: Registry, model=_UNSET) -> list[Diagnostic]:
    """Every semantic problem of the document, each at the span of the value that causes it."""
    out: list[Diagnostic] = []
    at = lambda ptr: _span(spans, ptr)  # noqa: E731
    get = document.get
    flags = get("flags") or {}
    method = get("method", DEFAULTS["method"])

    # VT201-VT203: the model name.
    if model is _UNSET:  # not resolved by the caller: resolve here (no file is read) and report what it found
        model = None
        if isinstance(get("model"), str):
            model, problems = resolve_model(get("model"), registry)
            for p in problems:
                maker = {"error": error, "warning": warning, "note": note}[p.severity]
                out.append(maker(p.code, p.message, at("/model"), p.help))
    family = model["family"] if model else None
    entry = model["entry"] if model else None
    tiny = bool(model and model["source"] == "tiny")

    # VT220-VT221: what trains.
    parts = [p for p in get("parts") or [] if isinstance(p, str)]
    if "all" in parts and len(parts) > 1:
        out.append(warning("VT221", "`all` already trains every part; the other parts listed add nothing",
                           at("/parts"), "write `finetune all on ...` or list only the parts you want"))
    if parts and entry and entry.get("architecture"):
        chosen = selection(parts)
        table = trainable_parameters("lora", chosen, family, entry["architecture"], 1, None)
        if table is not None and table["total"] == 0:
            out.append(error("VT220", f"`{', '.join(parts)}` trains nothing in {get('model')}", at("/parts"),
                             "choose parts this model has, e.g. `finetune all`"))

    # VT230-VT233: image standardisation.
    resize = get("resize")
    if resize == 0 or (isinstance(resize, dict) and 0 in (resize.get("width"), resize.get("height"))):
        out.append(error("VT231", "`resize 0` would shrink every image to nothing", at("/resize"),
                         "write `resize 512` (longest side in pixels), `resize 640x480` or `resize none`"))
        resize = None
        bad_resize = True
    else:
        bad_resize = False
    if not tiny and resize is not None and resize != "none" and not bad_resize:
        sides = [resize] if isinstance(resize, (int, float)) else [resize["width"], resize["height"]]
        longest = max(sides)
        if longest > MAX_SIDE:
            out.append(warning(
                "VT230", f"images standardised to {longest} px on the longest side: above {MAX_SIDE} px the image "
                "tokens grow with the area and training often runs out of GPU memory", at("/resize"),
                f"Unsloth advises {MIN_SIDE}-{MAX_SIDE} px; try `resize 768`"))
        elif longest < MIN_SIDE:
            out.append(warning(
                "VT230", f"images standardised to {longest} px on the longest side: below {MIN_SIDE} px fine "
                "detail (text, small findings) is lost", at("/resize"),
                f"Unsloth advises {MIN_SIDE}-{MAX_SIDE} px; try `resize 512`"))
    if resize == "none" and not tiny:
        out.append(warning(
            "VT233", "`resize none` keeps every image's own size, so image tokens and memory depend on the largest "
            "image (a 3000 px photo is about 11,000 Qwen-VL tokens)", at("/resize"),
            f"standardise to {MIN_SIDE}-{MAX_SIDE} px, e.g. `resize 512`"))

    # VT232: max length vs image tokens.
    geometry = model_geometry(family, entry, registry)
    if geometry is not None and resize != "none" and not bad_resize:
        if resize is None:
            size = default_resize(family, entry, registry) or 512
            images = {"mode": "longest", "size": size}
        elif isinstance(resize, dict):
            images = {"mode": "exact", "size": [int(resize["width"]), int(resize["height"])]}
        else:
            images = {"mode": "longest", "size": int(resize)}
        est = image_estimate(geometry, images)
        max_length = int(get("max_length", DEFAULTS["max_length"]))
        text_tokens = est["text_tokens_per_image"]
        if text_tokens is not None:
            w, h = est["image_size"]
            how = (f"{w}x{h} px is {est['image_tokens_per_image']} image tokens"
                   if geometry["kind"] != "tiles" else
                   f"{est['tiles']} tiles of {geometry['tile_size']} px reach the model through cross-attention "
                   f"and take {text_tokens} token in the text")
            where = at("/max_length") if "max_length" in document else at("/resize") or at("/model")
            if text_tokens + 2 > max_length:
                out.append(error(
                    "VT232", f"`max length {max_length}` is too short for one image: {how}, plus 2 markers",
                    where, f"write `max length {_round_up(text_tokens + 2 + 256)}` or a smaller `resize`"))
            elif text_tokens + 2 + MIN_TEXT_TOKENS > max_length:
                out.append(warning(
                    "VT232", f"`max length {max_length}` leaves {max_length - text_tokens - 2} tokens for the "
                    f"question and the answer: {how}", where,
                    f"write `max length {_round_up(text_tokens + 2 + 256)}` or a smaller `resize`"))

    # VT240: responses_only needs the chat markers.
    if flags.get("responses_only") and family is None and model is not None:
        out.append(error(
            "VT240", f"`responses_only` needs the chat markers of {get('model')}, and vtc does not know its family",
            at("/flags/responses_only"),
            "use a model from the registry (or one whose name says its family), or write `without responses_only`"))

    # VT241-VT245: method combinations.
    model_name = get("model") if isinstance(get("model"), str) else ""
    four_bit_checkpoint = "4bit" in model_name.lower().replace("-", "")
    if method == "full" and four_bit_checkpoint:
        out.append(error("VT241", f"full fine-tuning cannot train 4-bit weights, and `{model_name}` is a 4-bit "
                         "checkpoint", at("/method"),
                         "use the 16-bit model (without -bnb-4bit), or `using qlora`"))
    elif method == "lora" and four_bit_checkpoint:
        out.append(warning("VT241", f"`{model_name}` is stored in 4 bit, so `using lora` still trains on 4-bit "
                           "weights (that is qlora)", at("/method"),
                           "write `using qlora`, or use the 16-bit model"))
    if method == "full" and flags.get("rslora"):
        out.append(warning("VT242", "`rslora` has no effect with full fine-tuning (it scales LoRA adapters)",
                           at("/flags/rslora"), "remove `with rslora`, or use `using lora`"))
    if method == "full" and "lora" in document:
        out.append(warning("VT243", "`lora` settings have no effect with full fine-tuning", at("/lora"),
                           "remove the `lora` clause, or use `using lora`"))
    exports = get("exports") or DEFAULTS["exports"]
    if method == "qlora" and "merged" in exports:
        out.append(note("VT244", "with qlora the adapter was trained against 4-bit weights; `export merged` adds it "
                        "to the 16-bit weights, so the merged model can answer slightly differently",
                        at("/exports"), "compare the merged model on your evaluation data, or train `using lora`"))
    if method == "full" and "adapter" in exports and "exports" in document:
        out.append(warning("VT245", "full fine-tuning has no adapter to export: the whole model is saved",
                           at("/exports"), "write `export merged`"))

    # VT250: holdout share.
    holdout = get("holdout")
    if isinstance(holdout, (int, float)) and not 0 < holdout < 50:
        out.append(error("VT250", f"`holdout {_pct(holdout)}%` must be more than 0% and less than 50%",
                         at("/holdout"), "10% to 20% is usual, e.g. `holdout 10%`"))

    # VT251: answer from column needs the column.
    answer = get("answer") or {}
    if answer.get("from") == "column" and not answer.get("column"):
        out.append(error("VT251", "`answer from column` does not say which column", at("/answer"),
                         "write the column's name, e.g. `answer from column caption`"))
    if answer.get("from") in ("captions", "folders") and answer.get("column"):
        out.append(error("VT251", f"`answer from {answer['from']}` takes no column name", at("/answer/column"),
                         "write `answer from column <name>` to read a column"))

    # VT260: what TRL refuses for vision-language models.
    for flag, why in (("packing", "packing several samples into one sequence would split images from their "
                                  "tokens"),
                      ("padding_free", "padding-free batches flatten the batch, which the image features cannot "
                                       "follow")):
        if flags.get(flag):
            out.append(error(
                "VT260", f"`{flag}` is not supported for vision-language models: TRL's SFTTrainer refuses it "
                f"after the model has loaded ({why})", at(f"/flags/{flag}"), f"remove `with {flag}`"))

    # VT261: several GPUs.
    gpus = get("gpus")
    if isinstance(gpus, int) and gpus > 1:
        out.append(warning("VT261", f"`gpus {gpus}`: multi-GPU training is not supported yet; vtc trains on one GPU "
                           "(the first visible one) and the others stay idle", at("/gpus"),
                           "write `gpus 1`; multi-GPU (one process per GPU under torchrun) comes in a later version"))

    # VT262: learning rate.
    lr = get("learning_rate")
    if isinstance(lr, (int, float)) and lr > LR_SUSPICIOUS and not tiny:
        out.append(warning("VT262", f"`learning rate {lr}` is very high for fine-tuning a pretrained model and "
                           "usually makes the loss diverge", at("/learning_rate"),
                           "LoRA typically uses 1e-4 to 2e-4 (the default 2e-4); full fine-tuning 1e-5 to 5e-5"))

    # VT263: remote code.
    if flags.get("trust_remote_code"):
        out.append(warning("VT263", "`trust_remote_code` runs Python code downloaded with the model on this machine",
                           at("/flags/trust_remote_code"),
                           "only use it for a model whose code you have read or whose publisher you trust"))

    # VT264: warmup as long as the training.
    warmup, train_for = get("warmup"), get("train_for")
    if (isinstance(warmup, dict) and isinstance(train_for, dict) and warmup.get("unit") == "steps"
            and train_for.get("unit") == "steps" and isinstance(warmup.get("amount"), (int, float))
            and isinstance(train_for.get("amount"), (int, float)) and warmup["amount"] >= train_for["amount"] > 0):
        out.append(warning("VT264", f"warmup ({_pct(warmup['amount'])} steps) lasts the whole training "
                           f"({_pct(train_for['amount'])} steps), so the learning rate never reaches its peak",
                           at("/warmup"), "use a few steps of warmup, e.g. `warmup 5 steps`"))
    return out


def _span(spans: dict[str, Span], pointer: str) -> Span | None:
    while True:
        if pointer in spans:
            return spans[pointer]
        if not pointer:
            return None
        pointer = pointer.rsplit("/", 1)[0]


def _round_up(n: int) -> int:
    """Up to the next multiple of 256 (a tidy number to suggest)."""
    return -(-n // 256) * 256


def _pct(value) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
