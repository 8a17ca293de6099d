"""plan -> a plain-English paragraph for someone who has never fine-tuned a model (what `vtc explain` prints).

    explain_plan(plan, rows=None) -> str        rows: {"train": n, "eval": n} once the data is scanned (--data)
    training_steps(plan, train_rows) -> (steps per epoch, steps in all)
    time_estimate(plan, steps) -> a sentence: the estimated training time and what it rests on, or why there is none
"""

from __future__ import annotations

import math

from vtc.diagnostics import printable

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


def _pixel_budget_sentence(plan: dict) -> str:
    """`resize between A and B pixels` in words: the budget, then the image tokens (or tiles) it gives, from the
    smallest image to the largest, and that memory is estimated at the largest."""
    from vtc.compiler.estimates import budget_token_range

    r = plan["images"]["resize"]
    sides = f", each side a multiple of {r['multiple']} pixels" if r["multiple"] > 1 else ""
    text = (f"Images keep their own shape and are scaled to between {_amount(r['min_pixels'])} and "
            f"{_amount(r['max_pixels'])} pixels each{sides}")
    spread = budget_token_range(plan["model"]["geometry"], r)
    if spread is None:
        return text
    if spread["unit"] == "tiles":
        text += (f"; each covers {spread['low']} to {_plural(spread['high'], 'tile')} of "
                 f"{plan['model']['geometry']['tile_size']} pixels, which reach the text through cross-attention")
    else:
        text += (f", which makes between {spread['low']:,} and {spread['high']:,} image tokens (pieces the model "
                 "reads) each")
    return text + "; the memory estimate is for the largest"


def _amount(pixels: int) -> str:
    """A number of pixels said aloud: 200 thousand, 1 million, 1.2 million, 3,136."""
    if pixels >= 1_000_000 and pixels % 100_000 == 0:
        return f"{pixels / 1_000_000:g} million"
    if pixels >= 10_000 and pixels % 1000 == 0:
        return f"{pixels // 1000:,} thousand"
    return f"{pixels:,}"


def _plural(n, word: str, plural: str | None = None) -> str:
    """`1 tile`, `4 tiles`, `1,200 rows`."""
    shown = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{shown} {word if n == 1 else plural or word + 's'}"


_PART_NAMES = {"vision": "the image encoder", "projector": "the projector (the bridge from image features to the "
               "language model)", "language": "the language model"}


def _video_sentences(plan: dict) -> list[str]:
    """Clips (docs/language.md, video): how they are sampled and sized, the tokens formula, the largest clip."""
    v, est = plan["video"], plan["estimates"]
    if v is None:
        return []
    if v["multi_frame_files"] == "images":  # no `video` clause: the defaults apply to clips the data may hold
        return [f"Clips in the data, if any, are read at {v['fps']:g} frames a second, at most {v['max_frames']:,} "
                "frames each (Qwen-VL's defaults; a `video` line sets them)."]
    w = v["window"]
    part = "each whole clip" if w is None else (
        f"each clip from {w['start']:g} s" + (" to its end" if w["end"] is None else f" to {w['end']:g} s"))
    r = v["resize"]
    size = (f"with its longest side {r['size']} pixels" if r["mode"] == "longest" else
            f"to between {r['min_pixels']:,} and {r['max_pixels']:,} pixels, aspect kept")
    out = [f"Clips (video files, frame folders, and every DICOM and TIFF file, read as a cine loop or a stack) are "
           f"sampled at {v['fps']:g} frames a second over {part}, at least {v['min_frames']} and at most "
           f"{v['max_frames']:,} frames, each frame resized {size}."]
    tokens = est["video_tokens_per_clip_max"]
    if tokens is not None:
        unit, patch = r["multiple"], v["temporal_patch"]
        fw, fh = est["video_frame_size"]
        frames = est["video_frames_per_clip_max"]
        worst = plan["provenance"].get("/video/max_frames") == "default" and (w is None or w["end"] is None)
        out.append(f"The model merges {patch} frames in time, so a clip is ceil(frames / {patch}) x (height / "
                   f"{unit}) x (width / {unit}) tokens: one second is about {est['video_tokens_per_second']:,} "
                   f"tokens, and the largest clip ({frames:,} frames of {fw}x{fh} px) {tokens:,} tokens"
                   + (", a worst case at the default cap" if worst else "")
                   + (f", needing roughly {est['gpu_memory_video_gib']} GiB of GPU memory for one row"
                      if est["gpu_memory_video_gib"] is not None else "") + ".")
    return out


def _projector_sentence(plan: dict) -> list[str]:
    """The projector in words: only when it trains (a frozen projector is the usual case and needs no sentence)."""
    how = plan["parts"]["projector"]
    if how == "frozen":
        return []
    if how == "lora":
        return ["The projector, the small network that turns the image encoder's output into words the language "
                "model reads, learns LoRA add-on weights too."]
    if plan["method"] == "full" and plan["trainable_regex"] == ".*":
        return []  # every weight trains: the sentence above says so
    return ["The projector, the small network that turns the image encoder's output into words the language model "
            "reads, trains in full (all its weights change" + (", and are saved beside the adapter)."
                                                              if plan["lora"] else ").")]


def explain_plan(plan: dict, rows: dict | None = None) -> str:
    """A paragraph: what trains (in words), on which data, for how long, where results go, GPU memory.

    ``rows`` ({"train": n, "eval": n}: the rows a run would train and evaluate on, counted by the data check) adds
    the number of steps and an estimate of the training time."""
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
    s.extend(_projector_sentence(plan))
    t = est["trainable_parameters"]
    if t and est["total_parameters"]:
        s.append(f"That is {_count(t['total'])} trainable numbers, {100 * t['total'] / est['total_parameters']:.2f}% "
                 f"of the model's {_count(est['total_parameters'])}.")
    src = data["train"]
    where = (f"the Hugging Face dataset {src['source']}" if src["kind"] == "hub" else f"the data in {src['source']}")
    if src["split"]:
        where += f" (split {src['split']})"
    tool = {"sharegpt": "ShareGPT conversations (LLaMA-Factory, ms-swift, Axolotl)", "llava": "LLaVA's conversations",
            "prompt_completion": "TRL's prompt/completion rows", "messages": "conversations with image parts"}
    if src["format"] in tool:  # `format ...` written: the rows' own turns are trained, not the `ask` question
        s.append(f"It trains on {where}, read as {tool[src['format']]}: each row's own turns are the conversation, "
                 "with its `<image>` placeholders as the images.")
        where = ""
    answer = {"auto": "the answers vtc finds beside the images (captions, a metadata column or folder names)",
              "captions": "the caption file beside each image", "folders": "the name of each image's folder",
              "column": f"the `{data['answer']['column']}` column"}[data["answer"]["from"]]
    if where:
        s.append(f"It trains on {where}: each image is shown with the question \"{data['instruction']}\" and the "
                 f"model learns to reply with {answer}.")
    if data["system"]:
        s.append(f"Every conversation starts with the instruction \"{data['system']}\".")
    r = plan["images"]["resize"]
    if r["mode"] == "longest":
        img = f"Images are resized so that their longest side is {r['size']} pixels"
    elif r["mode"] == "exact":
        img = f"Images are resized to exactly {r['size'][0]}x{r['size'][1]} pixels"
    elif r["mode"] == "pixels":
        img = _pixel_budget_sentence(plan)
    else:
        img = "Images are used at their own size"
    if est["image_tokens_per_image"] and r["mode"] != "pixels":
        if est["tiles_per_image"]:
            img += (f"; each becomes {_plural(est['tiles_per_image'], 'tile')}, {est['image_tokens_per_image']} "
                    "image tokens (pieces the model reads), which reach the text through cross-attention")
        else:
            img += f", which makes about {est['image_tokens_per_image']} image tokens (pieces the model reads) each"
    s.append(img + ".")
    s.extend(_video_sentences(plan))
    if training["responses_only"]:
        s.append("Only the answers count towards learning; the question and the image are context.")
    eff = training["batch"]
    if training["steps"] is not None:
        length = f"{training['steps']} update steps"
    else:
        n = training["epochs"]
        length = f"{n} pass{'es' * (n != 1)} over the training data (epoch{'s' * (n != 1)})"
    s.append(f"Training runs for {length}, each step learning from {_plural(eff, 'example')} (the batch), at a "
             f"learning rate (step size) of {training['learning_rate']:g}.")
    if training["part_learning_rates"]:
        own = [f"{_PART_NAMES[x['part']]} at {x['learning_rate']:g}" for x in training["part_learning_rates"]]
        s.append("Some parts take steps of their own size: " + _join(own) + "; the rest at the base rate.")
    s.append(_split_sentence(training))
    if rows is not None:
        s.extend(_with_the_data(plan, rows))
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
    tested = bool(data["eval"]) or data["holdout"] is not None
    s.append(f"Results go to a new numbered folder in {plan['outputs']['dir']}: "
             + _join([saved[e] for e in exports] + ["the plan", "the loss curve"]
                     + (["the model's answers to the test data with their scores"] if tested else [])) + ".")
    gib = est["gpu_memory_gib"]
    split = plan["hardware"]["distributed"]["strategy"] == "fsdp2" and est["gpu_memory_sharded_gib"]
    if gib is not None and split:  # the memory per GPU is the sharded estimate (_processes_sentences)
        s.append(f"Whole, on one GPU, it would need roughly {gib} GiB of GPU memory with one example at a time (an "
                 "estimate).")
    elif gib is not None and training["micro_batch"] == "auto":
        s.append(f"It needs at least roughly {gib} GiB of GPU memory, with one example at a time (an estimate; a "
                 "smaller resize needs less).")
    elif gib is not None:
        s.append(f"It needs roughly {gib} GiB of GPU memory (an estimate; a smaller resize or `micro batch` needs "
                 "less).")
    else:
        s.append("vtc does not know this model's size, so it cannot estimate the GPU memory it needs.")
    if gib is not None and not split:
        s.append(_cards_sentence(training))
    s.extend(_processes_sentences(plan))
    every = plan["checkpoint"]["every_steps"]
    if every:
        s.append(f"It saves a checkpoint every {every} steps, so an interrupted run can continue where it stopped "
                 "(`vtc run --resume`).")
    if m["trust_remote_code"]:
        s.append("Warning: it runs Python code that comes with the model (trust_remote_code).")
    # Recipe values (a path, a column name, the model's name) are shown with control characters escaped: the
    # paragraph goes to a terminal (vtc.diagnostics.printable).
    return printable(" ".join(s))


def _split_sentence(training: dict) -> str:
    """How the batch goes through the GPU: pinned (`micro batch`, or the old `accumulate`), or vtc's choice with the
    estimates it chooses from."""
    from vtc.compiler.plan import memory_table_text

    eff, micro = training["batch"], training["micro_batch"]
    if micro != "auto":
        passes = eff // micro
        if passes == 1:
            return f"All {eff} go through the GPU at once (the recipe pins it)."
        return (f"They go through the GPU {micro} at a time, {passes} times before each update (the recipe pins "
                "it; the result is the same as all at once).")
    table = memory_table_text(training)
    if table is None:
        fallback = training["batching"]["fallback"]
        return (f"vtc chooses how many go through the GPU at once; with no memory estimate for this model it starts "
                f"with {fallback} and halves that once if the first steps run out of memory (the result is the same "
                "whichever it chooses).")
    return (f"vtc chooses how many go through the GPU at once from its free memory (estimates with Unsloth: "
            f"{table}), keeping {training['batching']['safety_margin']:.0%} of it free; the result is the same "
            "whichever it chooses.")


# --- steps and time, once the data is scanned -------------------------------------------------------------------------

# What the time estimate rests on: vtc's own measurements, and nothing else.
# GPU (docs/gpu.md, "Benchmark"; bench/README.md): NVIDIA H100 80GB, Qwen2.5-VL with the 3B shape (3.75 billion
# parameters), 16-bit LoRA r=16 on every layer, batch 4, 375 tokens a row (324 image tokens + 51 text tokens):
# 1,189 tokens/s through Unsloth, 670 through transformers (steady state, run 2); 118 s (Unsloth, cold: import and
# compile) and 36 s (transformers) to the first step.
_GPU_PARAMETERS = 3.75e9
_GPU_TOKENS_PER_S = {"unsloth": 1189, "transformers": 670}
_GPU_START_S = (36, 118)
_TEXT_TOKENS = 51  # the text of a row in that benchmark: the chat template, the question, a 12-word answer
# CPU (docs/running.md): the demo (tiny-qwen2.5-vl, 16 image tokens an image, batch 4, 80 steps) trained in 5.6 s on
# the two cores of the development machine.
_CPU_SECONDS_PER_TOKEN = 5.6 / (80 * 4 * (16 + _TEXT_TOKENS))


def _cards_sentence(training: dict) -> str:
    """Which GPUs the run fits, in words: the smallest card that runs it and the smallest that takes the whole
    batch at once (Unsloth's estimates; the memory sizes of registry/cards.json)."""
    from vtc.compiler.estimates import card_fits

    batch = training["batch"]
    fits = [(gib, names, micro) for gib, names, micro in
            card_fits(training["batching"]["memory_gib"], "unsloth", training["batching"]["safety_margin"])
            if micro is not None]
    if not fits:
        return ("That is more than the largest GPU vtc knows: use `using qlora`, train fewer parts, split the model "
                "across several GPUs (`shard model` with `gpus N`), or a smaller resize; `vtc check` gives the "
                "estimate of each.")
    gib, names, micro = fits[0]
    first = f"It fits a GPU with {gib} GiB (such as an NVIDIA {names[0]})" + ("" if micro == batch else f", {micro} at a time")
    whole = next(((g, n) for g, n, m in fits if m == batch), None)
    if whole is None or whole[0] == gib:
        return first + "."
    return first + f"; one with {whole[0]} GiB (such as an NVIDIA {whole[1][0]}) takes all {batch} at once."


def _processes_sentences(plan: dict) -> list[str]:
    """Several GPUs: how many processes, what each holds and trains, the memory per GPU; nothing for one GPU."""
    from vtc.compiler.plan import sharded_gib

    gpus, t = plan["hardware"]["gpus"], plan["training"]
    sharded = plan["hardware"]["distributed"]["strategy"] == "fsdp2"
    if gpus == 1 and not sharded:
        return []
    batch = t["batch"]
    how_many = ("one process per GPU the machine has (`gpus all`)" if gpus == "all" else
                f"{gpus} processes, one per GPU" if gpus > 1 else "one process")
    out = [f"It trains with {how_many}, on each machine it runs on (started by `vtc run` or torchrun; under "
           "torchrun, on torchrun's processes)."]
    share = (f"{batch // gpus} of each update's {batch} examples" if gpus not in ("all", 1) else
             f"an equal share of each update's {batch} examples")
    average = ("and the processes add up their gradients before every update, so the result is the same as one GPU "
               f"taking all {batch}")
    if not sharded:
        out.append(f"Each process holds the whole model on its own GPU and trains {share}, {average}; each GPU needs "
                   "the memory above.")
        return out
    part = f"1/{gpus}" if gpus not in ("all", 1) else "an equal part"
    out.append(f"The model is split across the GPUs (`shard model`, with the transformers backend): each process "
               f"holds {part} of the weights, of their gradients and of the optimizer state, gathers each layer "
               f"whole only while computing it, and trains {share}, {average}.")
    mine, rows = sharded_gib(plan), plan["estimates"]["gpu_memory_sharded_gib"]
    if mine is not None:
        out.append(f"Each GPU needs roughly {mine} GiB (an estimate).")
    elif rows:
        out.append("Each GPU needs roughly " + _join([f"{r['gib']:g} GiB with {r['processes']} GPUs" for r in rows])
                   + " (estimates).")
    return out


def training_steps(plan: dict, train_rows: int, processes: int = 1) -> tuple[int, int]:
    """(optimizer steps per epoch, steps in all) for ``train_rows`` rows, as the Trainer counts them: the batch per
    update over the ``processes`` (each has its share of the rows), a last short step counted; at least one step.
    However the batch is split into micro-batches, the count is the same: ceil(ceil(n / m) / a) = ceil(n / (m a))."""
    t = plan["training"]
    per_process = math.ceil(train_rows / processes)
    per_epoch = max(math.ceil(per_process / (t["batch"] // processes)), 1)
    total = t["steps"] if t["steps"] is not None else math.ceil(t["epochs"] * per_epoch)
    return per_epoch, total


def _with_the_data(plan: dict, rows: dict) -> list[str]:
    t = plan["training"]
    n_train, n_eval = rows.get("train", 0), rows.get("eval", 0)
    out = []
    counted = f"The data check counted {_plural(n_train, 'row')} to train on"
    if plan["data"]["eval"] or plan["data"]["holdout"] is not None:
        counted += f" and {_plural(n_eval, 'row')} to test on"
    out.append(counted + ".")
    if n_train == 0:
        return out + ["With no training row, nothing can train."]
    per_epoch, total = training_steps(plan, n_train)
    eff = t["batch"]
    if t["steps"] is not None:
        passes = total / per_epoch
        out.append(f"At {_plural(eff, 'example')} a step, one pass over them takes {_plural(per_epoch, 'step')}, so "
                   f"{_plural(total, 'step')} make {passes:.3g} pass{'es' * (passes != 1)} over the data.")
    else:
        out.append(f"At {_plural(eff, 'example')} a step, one pass over them takes {_plural(per_epoch, 'step')}: "
                   f"{_plural(total, 'step')} in all.")
    out.append(time_estimate(plan, total))
    return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def time_estimate(plan: dict, steps: int) -> str:
    """A sentence: about how long ``steps`` training steps take, and what that rests on; or why vtc cannot say."""
    est, m = plan["estimates"], plan["model"]
    in_text = est["text_tokens_per_image"]
    if not in_text or not est["image_tokens_per_image"]:
        return ("vtc cannot estimate the training time: it does not know how many tokens these images make "
                "(`resize none`, or a model family without image sizes in its registry).")
    rows = steps * plan["training"]["batch"]
    tokens = rows * (in_text + _TEXT_TOKENS)
    if m["source"] == "tiny":
        seconds = tokens * _CPU_SECONDS_PER_TOKEN
        return (f"On a CPU, the training steps should take about {_duration(seconds)}, loading and testing apart: "
                "scaled from the demo, whose 80 steps took 5.6 s on two CPU cores (docs/running.md).")
    if plan["method"] == "full":
        return "vtc cannot estimate the training time of full fine-tuning: it has not measured it."
    if plan["hardware"]["gpus"] != 1:
        return "vtc cannot estimate the training time on several GPUs: it has not measured it."
    if not est["total_parameters"]:
        return "vtc cannot estimate the training time: it does not know this model's size."
    if in_text != est["image_tokens_per_image"]:
        return ("vtc cannot estimate the training time for this model family: its images reach the text through "
                "cross-attention, and vtc has measured only models that read image tokens in the text.")
    scale = est["total_parameters"] / _GPU_PARAMETERS
    # Unsloth trains faster but starts slower (import, compile) than transformers: the range spans both backends.
    unsloth = tokens * scale / _GPU_TOKENS_PER_S["unsloth"] + _GPU_START_S[1]
    transformers = tokens * scale / _GPU_TOKENS_PER_S["transformers"] + _GPU_START_S[0]
    low, high = (_duration(x) for x in sorted((unsloth, transformers)))
    if low == high:
        span = high  # "3 minutes", not "3 to 3 minutes"
    elif low.split()[-1] == high.split()[-1]:
        span = f"{low.split()[0]} to {high}"  # "2 to 3 minutes"
    else:
        span = f"{low} to {high}"
    sentence = (f"On one NVIDIA H100, training should take roughly {span}, start-up included (not the "
                f"model's download, nor the tests before and after): an estimate for about "
                f"{in_text + _TEXT_TOKENS} tokens a row, scaled by model size from vtc's one measurement (Qwen2.5-VL, "
                "3B shape, 16-bit LoRA: 1,189 tokens/s with Unsloth, 670 with transformers; docs/gpu.md)")
    if plan["method"] == "qlora":
        sentence += "; 4-bit loading (qlora) was not timed and is usually slower"
    return sentence + ". Long answers, other GPUs and other model families change it."
