"""Shared by the runtime tests: plans compiled from small recipes (make_plan) and a tiny shapes dataset.

The module names in MODULES are written independently of the compiler, from Unsloth's selection rules
(shared/reference/unsloth-vision.md), so that the tests check what the compiler's target regex selects at run time
against Unsloth, not against itself.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 60, 220), "yellow": (240, 210, 20)}
SHAPES = ("circle", "square", "triangle")


# The families' chat markers (instruction, response) and end-of-turn tokens, written from the reference
# (shared/reference/unsloth-vision.md), not read from the registry: tests compare the two.
MARKERS = {
    "tiny-qwen2.5-vl": ("<|im_start|>user\n", "<|im_start|>assistant\n"),
    "tiny-llama-3.2-vision": ("<|start_header_id|>user<|end_header_id|>\n\n",
                              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
}
END_OF_TURN = {"tiny-qwen2.5-vl": "<|im_end|>", "tiny-llama-3.2-vision": "<|eot_id|>"}


def compile_text(tmp_path, text: str):
    """A recipe's compile result, compiled from text as if written to tmp_path/r.vt (with a ./data folder there)."""
    from vtc.compiler.pipeline import compile_source

    (Path(tmp_path) / "data").mkdir(exist_ok=True)
    return compile_source(text, str(Path(tmp_path) / "r.vt"), base_dir=str(tmp_path))


def text_plan(tmp_path, text: str) -> dict:
    """compile_text's plan; the test fails with the diagnostics when there is none."""
    result = compile_text(tmp_path, text)
    assert result.plan is not None, [d.render(result.sources) for d in result.diagnostics]
    return result.plan

# Module names (transformers 5.17) by tower and kind, per family; projector and lm_head are never listed.
MODULES = {
    "qwen2_5_vl": {
        ("vision", "attention"): r"model\.visual\.blocks\.\d+\.attn\.(qkv|proj)",
        ("vision", "mlp"): r"model\.visual\.blocks\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
        ("language", "attention"): r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
        ("language", "mlp"): r"model\.language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
    },
    "mllama": {
        ("vision", "attention"):
            r"model\.vision_model\.(transformer|global_transformer)\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
        ("vision", "mlp"): r"model\.vision_model\.(transformer|global_transformer)\.layers\.\d+\.mlp\.(fc1|fc2)",
        ("language", "attention"):
            r"model\.language_model\.layers\.\d+\.(self_attn|cross_attn)\.(q_proj|k_proj|v_proj|o_proj)",
        ("language", "mlp"): r"model\.language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
    },
}

def make_plan(data_dir, *, model="tiny-qwen2.5-vl", parts=None, method="lora", steps=8, lr=2e-3, batch=4,
              holdout=None, eval_dir=None, metrics=("exact_match",), max_new_tokens=4, outputs_dir=None,
              exports=("adapter",), responses_only=True, r=16, micro="batch", finetune=None, clauses=()) -> dict:
    """The plan the compiler makes for a small LoRA run on ``data_dir`` (the recipe is written here and compiled):
    constant learning rate ``lr``, no warmup, ``steps`` steps of ``batch`` rows, 112 px images. ``model`` is a
    registry name, a Hub id or a local folder; ``holdout`` a fraction; ``parts`` the four flags (towers x kinds).
    ``max_new_tokens`` has no clause (the compiler's default is 128): it is the one value set after compiling.
    ``micro``: the `micro batch` clause's value ("batch": the whole batch at once, pinned, so that a run's split does
    not depend on this machine's free memory), or None for none (vtc chooses). ``finetune``: the parts words as
    written (`language, projector`), instead of ``parts``; ``clauses``: more statements (`projector full`,
    `learning rate 1e-3, vision 1e-4`: a later `learning rate` replaces ``lr``'s)."""
    from vtc.compiler.pipeline import compile_source

    data_dir = Path(data_dir)
    lines = [f"finetune {finetune or _parts_words(parts)} on {_word(str(model))}", f"using {method}",
             f"from {data_dir.name}",
             'ask "What colour is the shape?"', "resize 112", f"train for {steps} steps", f"batch {batch}",
             *([f"micro batch {batch if micro == 'batch' else micro}"] if micro is not None else []),
             f"learning rate {lr}", "warmup 0 steps", "schedule constant", "weight decay 0",
             "max length 512", f"metric {', '.join(metrics)}", f"export {', '.join(exports)}",
             f"save to {_word(str(outputs_dir or data_dir.parent / 'runs'))}",
             f"{'with' if responses_only else 'without'} responses_only"]
    if method != "full":
        lines.append(f"lora rank {r} alpha {r}")
    if any(c.startswith("learning rate") for c in clauses):
        lines = [line for line in lines if not line.startswith("learning rate")]
    lines.extend(clauses)
    if holdout is not None:
        lines.append(f"holdout {round(holdout * 100, 6):g}%")
    if eval_dir is not None:
        lines.append(f"evaluate on {_word(str(eval_dir))}")
    result = compile_source("\n".join(lines) + "\n", str(data_dir.parent / "test.vt"), base_dir=str(data_dir.parent))
    errors = [d.message for d in result.diagnostics if d.is_error]
    assert result.plan is not None and not errors, errors
    plan = result.plan
    plan["evaluation"]["max_new_tokens"] = max_new_tokens
    return plan


def recipe_plan(base_dir, *clauses: str, model: str = "tiny-qwen2.5-vl") -> dict:
    """The plan the compiler makes for `finetune all on <model>` followed by ``clauses``, one statement each
    (`from ./data`, `holdout 20%`, `answer from column report`, ...), as a recipe in ``base_dir`` (where relative
    paths start). `from org/name` is a Hub dataset: write a local folder of that shape `from ./org/name`."""
    from vtc.compiler.pipeline import compile_source

    text = f"finetune all on {_word(model)}\n" + "".join(clause + "\n" for clause in clauses)
    result = compile_source(text, str(Path(base_dir) / "test.vt"), base_dir=str(base_dir))
    errors = [d.message for d in result.diagnostics if d.is_error]
    assert result.plan is not None and not errors, errors
    return result.plan


def quoted(text) -> str:
    """A path or text as one recipe value (a quoted string)."""
    return _word(str(text))


def _parts_words(parts: dict | None) -> str:
    """`finetune` words for the four flags: the towers and kinds chosen (an axis with both chosen is left out)."""
    if not parts or all(parts.values()):
        return "all"
    towers = [t for t in ("vision", "language") if parts[t]]
    kinds = [k for k in ("attention", "mlp") if parts[k]]
    words = (towers if len(towers) == 1 else []) + (kinds if len(kinds) == 1 else [])
    return ", ".join(words) or "all"


def _word(text: str) -> str:
    """A model name or path as a recipe value: quoted, so that any path reads as one value."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shape_image(colour: str, shape: str, size: int = 112, seed: int = 0):
    from PIL import Image, ImageDraw

    rnd = random.Random(seed)
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    m = rnd.randint(10, 22)
    box = (m, m, size - m, size - m)
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=fill)
    return im


def make_shapes(folder, n: int = 16, seed: int = 0) -> Path:
    """An imagefolder dataset (metadata.jsonl + PNGs): the answer is the shape's colour."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            colour, shape = rnd.choice(list(COLOURS)), rnd.choice(SHAPES)
            shape_image(colour, shape, seed=seed * 1000 + i).save(folder / f"img-{i:03d}.png")
            f.write(json.dumps({"file_name": f"img-{i:03d}.png", "text": colour}) + "\n")
    return folder


def write_plan(plan: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def unsloth_backend_over_stand_ins(monkeypatch, collator_class: type | None = None):
    """vtc.runtime.backends.unsloth_backend imported over stand-ins for unsloth and unsloth.trainer (its
    UnslothVisionDataCollator is ``collator_class``, or an empty class), for tests of the backend's arguments and
    collator on a machine without unsloth. Remove the module from sys.modules after the test."""
    import importlib
    import sys
    import types

    fake = types.ModuleType("unsloth")
    fake.FastVisionModel = type("FastVisionModel", (), {})
    trainer = types.ModuleType("unsloth.trainer")
    trainer.UnslothVisionDataCollator = collator_class or type("UnslothVisionDataCollator", (), {})
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    monkeypatch.setitem(sys.modules, "unsloth.trainer", trainer)
    monkeypatch.delitem(sys.modules, "vtc.runtime.backends.unsloth_backend", raising=False)
    return importlib.import_module("vtc.runtime.backends.unsloth_backend")


# --- two processes under torchrun ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# The start and end of a script two_processes runs: ``mode`` ("ddp" | "fsdp2"), ``out`` (its folder) and
# ``root`` (the project) are set, accelerate is made to shard on the CPU for "fsdp2"; the end leaves as vtc's own
# launched processes do.
_CHILD_HEAD = r'''
import json, os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
mode, out, root = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "fsdp2":
    # Test only: accelerate 1.15 ignores its FSDP plugin on MULTI_CPU (tests/test_fsdp.py's docstring says why).
    import accelerate.state as S
    from accelerate.utils import DistributedType
    _init = S.AcceleratorState.__init__
    def _cpu_fsdp(self, *a, fsdp_plugin=None, **k):
        _init(self, *a, fsdp_plugin=fsdp_plugin, **k)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, fsdp_plugin
    S.AcceleratorState.__init__ = _cpu_fsdp
'''
_CHILD_END = r'''
# Leave as vtc's own launched processes do (vtc.cli._leave): without the interpreter's finalisation, where gloo's
# threads can abort a process whose DDP model still holds the process group (SIGABRT).
sys.stdout.flush(); sys.stderr.flush(); os._exit(0)
'''


def two_processes(tmp_path, body: str, mode: str, *, fsdp_on_cpu: bool = True,
                  timeout: int = 300) -> tuple[dict, Path]:
    """Run ``body`` (a script that follows _CHILD_HEAD and writes out/result.json from rank 0) in two processes under
    torchrun (over gloo on the CPU; ``fsdp_on_cpu`` False: no CPU stand-in for FSDP, for two GPUs); (the result,
    the output folder tmp_path/mode)."""
    import socket
    import subprocess
    import sys

    head = _CHILD_HEAD if fsdp_on_cpu else _CHILD_HEAD.replace('if mode == "fsdp2":\n', 'if False:\n', 1)
    child = Path(tmp_path) / f"child-{mode}.py"
    child.write_text(head + body + _CHILD_END)
    out = Path(tmp_path) / mode
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(port), str(child), mode, str(out), str(ROOT)],
        capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "result.json").read_text()), out
