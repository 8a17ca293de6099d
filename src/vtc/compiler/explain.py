"""plan -> a plain-English paragraph for someone who has never fine-tuned a model (what `vtc explain` prints)."""

from __future__ import annotations

_PARTS = {
    ("vision", "attention"): "how the image encoder relates parts of the picture (its attention layers)",
    ("vision", "mlp"): "how the image encoder transforms what it sees (its feed-forward layers)",
    ("language", "attention"): "how the text model relates words and image to each other (its attention layers)",
    ("language", "mlp"): "how the text model turns that into words (its feed-forward layers)",
}


def _count(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.1f} billion"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} million"
    if n >= 10_000:
        return f"{n / 1e3:.0f} thousand"
    return f"{n:,}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def explain_plan(plan: dict) -> str:
    """A paragraph: what trains (in words), on which data, for how long, where results go, GPU memory."""
    m, parts, training, data, est = plan["model"], plan["parts"], plan["training"], plan["data"], plan["estimates"]
    s: list[str] = []
    from vtc.registry import load_registry

    family = load_registry().families[m["family"]]["display"] if m["family"] else None
    what = f"`{m['name']}`" + (f" (a {family} model" + (", a tiny test model built on this machine)" if
                                                        m["source"] == "tiny" else ")") if family else "")
    s.append(f"This recipe teaches the vision-language model {what} to answer from your images.")
    areas = [_PARTS[(t, k)] for t in ("vision", "language") for k in ("attention", "mlp") if parts[t] and parts[k]]
    if plan["method"] == "full":
        s.append("It changes the model's own weights directly (full fine-tuning), in " + _join(areas) + ".")
    else:
        bits = "4-bit compressed" if plan["method"] == "qlora" else "16-bit"
        s.append(f"The original model stays frozen (loaded {bits}); it learns small add-on weights called a LoRA "
                 f"adapter (rank {plan['lora']['rank']}, a measure of its capacity) for " + _join(areas) + ".")
    t = est["trainable_parameters"]
    if t and est["total_parameters"]:
        s.append(f"That is {_count(t['total'])} trainable numbers, {100 * t['total'] / est['total_parameters']:.2f}% "
                 f"of the model's {_count(est['total_parameters'])}.")
    src = data["train"]
    where = (f"the Hugging Face dataset {src['source']}" if src["kind"] == "hub" else f"the data in {src['source']}")
    if src["split"]:
        where += f" (split {src['split']})"
    answer = {"auto": "the answers vtc finds beside the images (captions, a metadata column or folder names)",
              "captions": "the caption file beside each image", "folders": "the name of each image's folder",
              "column": f"the `{data['answer']['column']}` column"}[data["answer"]["from"]]
    s.append(f"It trains on {where}: each image is shown with the question \"{data['instruction']}\" and the model "
             f"learns to reply with {answer}.")
    if data["system"]:
        s.append(f"Every conversation starts with the instruction \"{data['system']}\".")
    r = plan["images"]["resize"]
    if r["mode"] == "longest":
        img = f"Images are resized so that their longest side is {r['size']} pixels"
    elif r["mode"] == "exact":
        img = f"Images are resized to exactly {r['size'][0]}x{r['size'][1]} pixels"
    else:
        img = "Images are used at their own size"
    if est["image_tokens_per_image"]:
        if est["tiles_per_image"]:
            img += (f"; each becomes {est['tiles_per_image']} tile(s), {est['image_tokens_per_image']} image "
                    "tokens (pieces the model reads), which reach the text through cross-attention")
        else:
            img += f", which makes about {est['image_tokens_per_image']} image tokens (pieces the model reads) each"
    s.append(img + ".")
    if training["responses_only"]:
        s.append("Only the answers count towards learning; the question and the image are context.")
    eff = est["effective_batch"]
    if training["steps"] is not None:
        length = f"{training['steps']} update steps"
    else:
        n = training["epochs"]
        length = f"{n} pass{'es' * (n != 1)} over the training data (epoch{'s' * (n != 1)})"
    batch, accumulate = training["batch"], training["accumulate"]
    how = (f"{batch} at a time, {accumulate} times before each update" if accumulate != 1 else
           f"all {batch} at once")
    s.append(f"Training runs for {length}, each step learning from {eff} example{'s' * (eff != 1)} ({how}), "
             f"at a learning rate (step size) of {training['learning_rate']:g}.")
    if data["eval"]:
        s.append(f"It is tested on the separate data in {data['eval']['source']}")
    elif data["holdout"] is not None:
        s.append(f"It sets aside {data['holdout']:.0%} of the training data, never trained on, to test the model")
    else:
        s.append("No test data is set aside, so there is no before/after score")
    metric_words = {"exact_match": "exact matches", "cer": "character error rate", "wer": "word error rate",
                    "field_accuracy": "per-field accuracy", "bleu": "BLEU overlap"}
    metrics = [metric_words.get(x, x) for x in plan["evaluation"]["metrics"]]
    s[-1] += (f", before and after training, scoring {_join(metrics)}." if data["eval"] or data["holdout"]
              is not None else ".")
    exports = plan["outputs"]["exports"]
    saved = {"adapter": "the adapter (a small file that goes with the original model)",
             "merged": "a full copy of the model with the adapter built in (16-bit)"}
    s.append(f"Results go to a new numbered folder in {plan['outputs']['dir']}: " + _join([saved[e] for e in exports])
             + ", the plan, the loss curve and the test answers.")
    gib = est["gpu_memory_gib"]
    if gib is not None:
        s.append(f"It needs roughly {gib} GiB of GPU memory (an estimate; a smaller resize or batch needs less).")
    else:
        s.append("vtc does not know this model's size, so it cannot estimate the GPU memory it needs.")
    every = plan["checkpoint"]["every_steps"]
    if every:
        s.append(f"It saves a checkpoint every {every} steps, so an interrupted run can continue where it stopped "
                 "(`vtc run --resume`).")
    if m["trust_remote_code"]:
        s.append("Warning: it runs Python code that comes with the model (trust_remote_code).")
    return " ".join(s)
