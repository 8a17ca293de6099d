"""The Unsloth backend on a CUDA GPU: both tiny families train, evaluate and save; the adapter reloads with
FastVisionModel and with plain transformers + PEFT; `vtc ask` answers; and the same plan trains the same parameters
with the same first losses on the transformers backend.

Every run is a separate process (`python -m vtc run ...`), as users run it, and because Unsloth patches
transformers for the whole process once imported, so the transformers backend must run in a process of its own.
Unsloth spends about 35 s importing and a minute compiling on the first step of each process, so the processes of
one wave run at the same time (the tiny models need almost no GPU memory; compiling uses the CPU cores), each in its
own working folder so that their unsloth_compiled_cache folders do not collide. Set VTC_GPU_LOGS=DIR to keep every
process's output there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ROOT / "recipes" / "data" / "shapes"
# A process's limit: import (~35 s) + first-step compile (~60-75 s) + training + evaluation + saving, with several
# processes compiling at once. VTC_GPU_TIMEOUT overrides it (seconds).
TIMEOUT = float(os.environ.get("VTC_GPU_TIMEOUT", 480))

COMMON = f"""
from {SHAPES / "train"}
ask "What colour is the shape?"
answer from column text
batch 4
micro batch 4
warmup 0 steps
schedule constant
optimizer adamw_torch
"""

RECIPES = {
    # The CPU demo's settings (recipes/demo-shapes.vt), which learn the colours: 80 steps at 2e-3.
    "qwen": f"""finetune all on tiny-qwen2.5-vl
using lora
evaluate on {SHAPES / "test"}
resize 112
train for 80 steps
learning rate 2e-3
export adapter, merged
{COMMON}""",
    # The other family, with the loss on the answers only (Unsloth's collator with Llama's markers).
    "llama": f"""finetune all on tiny-llama-3.2-vision
using lora
with responses_only
evaluate on {SHAPES / "test"}
train for 30 steps
learning rate 2e-3
export adapter, merged
{COMMON}""",
    # Resume: stopped by SIGTERM once a checkpoint is complete, then `vtc run --resume` on Unsloth again.
    # 150 steps of 0.05-0.25 s (measured on the H100, more while other processes compile) leave the test seconds
    # to send the signal mid-training.
    "resume": f"""finetune all on tiny-qwen2.5-vl
using lora
resize 112
train for 150 steps
checkpoint every 2 steps
learning rate 1e-3
{COMMON}""",
    # Parity: no evaluation, a few steps; the test sets the precision in the compiled plan.
    "parity": f"""finetune all on tiny-qwen2.5-vl
using lora
resize 112
train for 6 steps
learning rate 1e-3
{COMMON}""",
}


def _env(tmp: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    src = str(ROOT / "src")
    if src not in env.get("PYTHONPATH", "").split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), src) if p)
    return env


class Proc:
    """A vtc (or helper) process with its own working folder and log."""

    def __init__(self, name: str, args: list[str], work: Path, env: dict) -> None:
        self.name, self.work = name, work
        work.mkdir(parents=True, exist_ok=True)
        self.log = work / f"{name}.log"
        self.start = time.time()
        self._fh = open(self.log, "w")
        self.popen = subprocess.Popen(args, cwd=work, env=env, stdout=self._fh, stderr=subprocess.STDOUT)
        self.rc: int | None = None
        self.seconds = 0.0

    def wait(self) -> "Proc":
        try:
            self.rc = self.popen.wait(timeout=max(1.0, TIMEOUT - (time.time() - self.start)))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.rc = self.popen.wait()
        self.seconds = time.time() - self.start
        self._fh.close()
        keep = os.environ.get("VTC_GPU_LOGS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.log, Path(keep) / self.log.name)
        return self

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check(self) -> str:
        out = self.output
        assert self.rc == 0, f"{self.name} exited {self.rc} after {self.seconds:.0f} s:\n{out[-4000:]}"
        assert "Traceback" not in out, out[-4000:]
        return out


def _vtc(*args: str) -> list[str]:
    return [sys.executable, "-m", "vtc", *args]


def _run_dir(runs: Path) -> Path:
    found = sorted(runs.glob("run-*"))
    assert found, f"no run folder in {runs}"
    return found[-1]


@pytest.fixture(scope="session")
def wave1(tmp_path_factory):
    """All training runs, at the same time: qwen and llama (unsloth), the parity plan on both backends in fp32."""
    from vtc.compiler.pipeline import compile_file
    from vtc.runtime.tiny_models import ensure_tiny_model

    tmp = tmp_path_factory.mktemp("gpu")
    env = _env(tmp)
    env["VTC_CACHE"] = str(tmp / "cache")
    os.environ["VTC_CACHE"] = env["VTC_CACHE"]
    for name in ("tiny-qwen2.5-vl", "tiny-llama-3.2-vision"):  # built once here, not raced by four processes
        ensure_tiny_model(name)
    paths = {}
    for name, text in RECIPES.items():
        paths[name] = tmp / f"{name}.vt"
        paths[name].write_text(text)
    result = compile_file(str(paths["parity"]))
    assert result.plan is not None, [d.message for d in result.diagnostics]
    plan = result.plan
    # float32 on both backends: Unsloth's kernels and transformers' then differ only in the order of float32
    # operations, so equal losses mean the same model, data, masking and LoRA (bf16 would hide differences in
    # rounding of about 0.4% per operation).
    plan["precision"] = "fp32"
    plan_file = tmp / "parity-plan.json"
    plan_file.write_text(json.dumps(plan, indent=2, sort_keys=True))
    # An edited plan with no `inputs` fingerprints: vtc refuses it (VT530) unless told to run it anyway.

    procs = {
        "qwen": Proc("qwen", _vtc("run", str(paths["qwen"]), "--backend", "unsloth", "--runs-dir",
                                  str(tmp / "runs-qwen")), tmp / "w-qwen", env),
        "llama": Proc("llama", _vtc("run", str(paths["llama"]), "--backend", "unsloth", "--runs-dir",
                                    str(tmp / "runs-llama")), tmp / "w-llama", env),
        "parity_unsloth": Proc("parity_unsloth", _vtc("run", str(plan_file), "--backend", "unsloth", "--runs-dir",
                                                      str(tmp / "runs-pu"), "--allow-changed"), tmp / "w-pu", env),
        "parity_transformers": Proc("parity_transformers", _vtc("run", str(plan_file), "--backend", "transformers",
                                                                "--runs-dir", str(tmp / "runs-pt"),
                                                                "--allow-changed"), tmp / "w-pt", env),
    }
    procs["resume_first"] = Proc("resume_first", _vtc("run", str(paths["resume"]), "--backend", "unsloth",
                                                      "--runs-dir", str(tmp / "runs-resume")), tmp / "w-rs", env)
    stopper = threading.Thread(target=_stop_at_first_checkpoint, args=(procs["resume_first"], tmp / "runs-resume"))
    stopper.start()
    for p in procs.values():
        p.wait()
    stopper.join()
    return {"tmp": tmp, "env": env, "procs": procs,
            "runs": {"qwen": tmp / "runs-qwen", "llama": tmp / "runs-llama", "parity_unsloth": tmp / "runs-pu",
                     "parity_transformers": tmp / "runs-pt", "resume": tmp / "runs-resume"}}


def _stop_at_first_checkpoint(proc: Proc, runs: Path) -> None:
    """SIGTERM the process as soon as a checkpoint of its run is complete (as a cluster's scheduler would)."""
    while proc.popen.poll() is None and time.time() - proc.start < TIMEOUT:
        if list(runs.glob("run-*/checkpoints/checkpoint-*/vtc-complete.json")):
            proc.popen.send_signal(signal.SIGTERM)
            return
        time.sleep(0.05)


# Answer the qwen run's evaluation rows as the run did (batches of 2 x the micro-batch, left padding, greedy, the
# plan's max_new_tokens). The reload scripts print their answers as JSON on their last line.
_ANSWER = '''
def answer(model, processor, run):
    import json
    import torch
    from PIL import Image
    plan = json.loads((run / "plan.json").read_text())
    records = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    tok = processor.tokenizer
    tok.padding_side = "left"
    answers, batch = [], 2 * plan["training"]["micro_batch"]
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        # The shapes are 112 x 112 px, the plan's `resize 112`: vtc's standardisation leaves them as they are.
        images = [Image.open(r["images"][0]).convert("RGB") for r in chunk]
        convs = [[{"role": "user", "content": [{"type": "text", "text": r["question"]}, {"type": "image"}]}]
                 for r in chunk]
        texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
        inputs = processor(text=texts, images=[[im] for im in images], padding=True, return_tensors="pt")
        inputs = inputs.to(next(model.parameters()).device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=plan["evaluation"]["max_new_tokens"], do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        answers += [t.strip() for t in tok.batch_decode(out[:, inputs["input_ids"].shape[1]:],
                                                        skip_special_tokens=True)]
    return answers
'''

RELOAD_UNSLOTH = _ANSWER + textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import unsloth  # first, as in any Unsloth program
    from unsloth import FastVisionModel
    run = Path(sys.argv[1])
    model, processor = FastVisionModel.from_pretrained(str(run / "adapter"), load_in_4bit=False)
    assert hasattr(model, "peft_config"), type(model)
    FastVisionModel.for_inference(model)
    print(json.dumps({"type": type(model).__name__, "answers": answer(model, processor, run)}))
''')

# No vtc and no unsloth: transformers + PEFT for the adapter, transformers alone for the merged model.
RELOAD_PLAIN = _ANSWER + textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor
    run = Path(sys.argv[1])
    adapter = run / "adapter"
    base_id = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    # bfloat16, as Unsloth trained and evaluated (precision auto on an H100)
    base = AutoModelForImageTextToText.from_pretrained(base_id, dtype=torch.bfloat16).cuda()
    model = PeftModel.from_pretrained(base, adapter).eval()
    processor = AutoProcessor.from_pretrained(adapter)
    adapter_answers = answer(model, processor, run)
    merged = AutoModelForImageTextToText.from_pretrained(run / "merged", dtype=torch.bfloat16).cuda().eval()
    merged_answers = answer(merged, AutoProcessor.from_pretrained(run / "merged"), run)
    assert not any(n == "vtc" or n.startswith("vtc.") or n.startswith("unsloth") for n in sys.modules)
    print(json.dumps({"answers": adapter_answers, "merged": merged_answers}))
''')


@pytest.fixture(scope="session")
def wave2(wave1):
    """After training: the qwen adapter reloaded three ways, at the same time."""
    run = _run_dir(wave1["runs"]["qwen"])
    wave1["procs"]["qwen"].check()
    tmp, env = wave1["tmp"], wave1["env"]
    image = str(sorted((SHAPES / "test").glob("*.png"))[0])
    procs = {
        "reload_unsloth": Proc("reload_unsloth", [sys.executable, "-c", RELOAD_UNSLOTH, str(run)],
                               tmp / "w-ru", env),
        "reload_plain": Proc("reload_plain", [sys.executable, "-c", RELOAD_PLAIN, str(run)], tmp / "w-rp", env),
        "ask": Proc("ask", _vtc("ask", str(run), image, "--backend", "unsloth"), tmp / "w-ask", env),
    }
    stopped = sorted(wave1["runs"]["resume"].glob("run-*"))
    if stopped:
        procs["resume_again"] = Proc("resume_again", _vtc("run", "--resume", str(stopped[-1]), "--backend",
                                                          "unsloth"), tmp / "w-rs2", env)
    for p in procs.values():
        p.wait()
    return {"run": run, "image": image, "procs": procs}


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


def _agreement(a: list[str], b: list[str]) -> float:
    assert len(a) == len(b) and a
    return sum(x == y for x, y in zip(a, b)) / len(a)


@pytest.mark.parametrize("family,steps", [("qwen", 80), ("llama", 30)])
def test_trains_evaluates_and_saves(wave1, family, steps):
    out = wave1["procs"][family].check()
    run = _run_dir(wave1["runs"][family])
    assert run.name == "run-001", run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["state"] == "finished"
    assert manifest["backend"]["name"] == "unsloth", manifest["backend"]
    assert manifest["libraries"].get("unsloth"), manifest["libraries"]
    assert not any("imported before unsloth" in n for n in manifest.get("notes", [])), manifest["notes"]
    # The line that keeps the first (compiling) step from looking hung, printed before the first progress line.
    # (Matched as text: importing the backend here would import unsloth into the test process.)
    note = out.find("first step: Unsloth compiles the model")
    assert note != -1, out[-3000:]
    assert note < out.find("  [", out.find("train ...")), out[-3000:]
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "merged/config.json",
                 "eval.json", "predictions.jsonl", "metrics.jsonl", "loss.png"):
        assert (run / name).is_file(), name
    assert list((run / "merged").glob("*.safetensors")), "merged weights missing"
    logged = _metrics(run)
    assert [m["step"] for m in logged] == list(range(1, steps + 1))
    first, last = sum(m["loss"] for m in logged[:3]) / 3, sum(m["loss"] for m in logged[-3:]) / 3
    assert last < 0.7 * first, f"{family}: loss {first:.3f} -> {last:.3f}"
    ev = json.loads((run / "eval.json").read_text())
    assert ev["n"] == 20 and "exact_match" in ev["after"]
    if family == "qwen":
        # The CPU demo's recipe learns the colours (four colours: chance is 25%).
        assert ev["after"]["exact_match"] >= 0.9, ev


def test_adapter_reloads_with_fastvisionmodel(wave2):
    out = wave2["procs"]["reload_unsloth"].check()
    result = json.loads(out.strip().splitlines()[-1])
    preds = [json.loads(line) for line in (wave2["run"] / "predictions.jsonl").open()]
    # Same library, same dtype, same batches as the run's own evaluation: the same greedy answers.
    assert _agreement(result["answers"], [p["after"] for p in preds]) >= 0.95, (result, preds)


def test_adapter_and_merged_model_reload_with_plain_transformers_and_peft(wave2):
    out = wave2["procs"]["reload_plain"].check()
    result = json.loads(out.strip().splitlines()[-1])
    preds = [json.loads(line) for line in (wave2["run"] / "predictions.jsonl").open()]
    # Greedy answers of the same weights through other kernels (transformers' attention and norms instead of
    # Unsloth's): a bf16 near-tie may flip an answer, so at least 90% agree, not all.
    assert _agreement(result["answers"], [p["after"] for p in preds]) >= 0.9, (result, preds)
    # The merged model is the base plus the LoRA product, rounded once to 16 bits.
    assert _agreement(result["merged"], result["answers"]) >= 0.9, result


def test_vtc_ask_uses_the_unsloth_backend(wave2):
    out = wave2["procs"]["ask"].check()
    assert "backend: unsloth" in out
    preds = {Path(p["images"][0]).name: p["after"] for p in
             (json.loads(line) for line in (wave2["run"] / "predictions.jsonl").open())}
    expected = preds.get(Path(wave2["image"]).name)
    assert expected and expected in out, (expected, out[-2000:])


def test_parity_same_trained_parameters(wave1):
    from safetensors import safe_open

    wave1["procs"]["parity_unsloth"].check()
    wave1["procs"]["parity_transformers"].check()
    keys = {}
    for backend in ("parity_unsloth", "parity_transformers"):
        run = _run_dir(wave1["runs"][backend])
        with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as f:
            keys[backend] = set(f.keys())
    assert keys["parity_unsloth"], "empty adapter"
    only_u = keys["parity_unsloth"] - keys["parity_transformers"]
    only_t = keys["parity_transformers"] - keys["parity_unsloth"]
    assert not only_u and not only_t, {"only unsloth": sorted(only_u)[:10], "only transformers": sorted(only_t)[:10]}
    # LoRA on all four parts of both towers: every vision and language block, no projector, no lm_head.
    assert any(".visual.blocks." in k for k in keys["parity_unsloth"])
    assert any(".language_model.layers." in k for k in keys["parity_unsloth"])
    assert not any("merger" in k or "lm_head" in k for k in keys["parity_unsloth"])


def test_parity_first_losses_agree(wave1):
    """The same plan in float32 on both backends, at the plan's seed.

    Step 1's loss is computed before any update: the base model, the same batch (same data order from the seeded
    sampler, the same tokens and labels from two collators that implement one masking rule) and LoRA's B = 0, so
    it differs only by float32 summation order: 5e-4 relative is far above that (~1e-6) and far below what one
    wrongly masked token or a differently resized image would cause (a token of the 56 labelled ones moves the mean
    by ~2%). Steps 2-6 also depend on the LoRA A initialisation (both seeded with 3407, created in the same module
    order) and on AdamW's first updates, which are nearly sign(gradient) per element, so float32 noise in a tiny
    gradient can flip an element's step: they agree within 2%.
    """
    wave1["procs"]["parity_unsloth"].check()
    wave1["procs"]["parity_transformers"].check()
    u = [m["loss"] for m in _metrics(_run_dir(wave1["runs"]["parity_unsloth"]))]
    t = [m["loss"] for m in _metrics(_run_dir(wave1["runs"]["parity_transformers"]))]
    assert len(u) == len(t) == 6, (u, t)
    rel = [abs(a - b) / abs(b) for a, b in zip(u, t)]
    print("parity losses unsloth", u, "transformers", t, "relative", rel)
    assert rel[0] <= 5e-4, (u, t)
    assert max(rel[1:]) <= 2e-2, (u, t)


def test_interrupted_run_resumes_on_unsloth(wave1, wave2):
    """SIGTERM mid-training: the run saves a checkpoint and stops (exit 143); `vtc run --resume` continues it from
    that checkpoint through Unsloth's trainer to the planned last step, in the same folder."""
    first = wave1["procs"]["resume_first"]
    out = first.output
    assert first.rc == 143, f"exit {first.rc}:\n{out[-3000:]}"  # 128 + SIGTERM, after a clean stop
    assert "resume with:" in out and "Traceback" not in out, out[-3000:]
    assert "resume_again" in wave2["procs"], "no interrupted run folder to resume"
    out2 = wave2["procs"]["resume_again"].check()
    assert "resuming from checkpoint-" in out2, out2[-3000:]
    run = _run_dir(wave1["runs"]["resume"])
    assert run.name == "run-001", run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["state"] == "finished"
    assert manifest["resumes"][0]["backend"]["name"] == "unsloth", manifest["resumes"]
    assert manifest["resumes"][0]["from_step"] >= 2
    logged = _metrics(run)
    assert [m["step"] for m in logged] == list(range(1, 151))
    assert logged[-1]["loss"] < logged[0]["loss"]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert not (run / "checkpoints").exists()
