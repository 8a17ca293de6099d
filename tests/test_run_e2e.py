"""End to end on both tiny families: train a few steps, evaluate, save, and reload the adapter with plain
transformers + PEFT (no vtc) to get the same greedy answers. And the README's demo."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime_helpers import make_plan, make_shapes, write_plan

ROOT = Path(__file__).resolve().parents[1]

# Reloads the run's adapter without vtc and answers the evaluation rows in the same batches (8, left-padded) as the
# run did, then prints the answers as JSON.
RELOAD = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    from PIL import Image
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    run = Path(sys.argv[1])
    adapter = run / "adapter"
    base_id = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base_id), adapter).eval()
    processor = AutoProcessor.from_pretrained(adapter)
    processor.tokenizer.padding_side = "left"
    records = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    answers = []
    for start in range(0, len(records), 8):
        chunk = records[start:start + 8]
        convs = [[{"role": "user", "content": [{"type": "text", "text": r["question"]},
                                               {"type": "image", "image": Image.open(r["images"][0]).convert("RGB")}]}]
                 for r in chunk]
        texts = [processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
        images = [[c[0]["content"][1]["image"]] for c in convs]
        inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False,
                                 pad_token_id=processor.tokenizer.pad_token_id)
        answers += [t.strip() for t in processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:],
                                                                          skip_special_tokens=True)]
    assert not any(name == "vtc" or name.startswith("vtc.") for name in sys.modules)
    print(json.dumps(answers))
''')


@pytest.mark.slow
@pytest.mark.parametrize("model,steps", [("tiny-qwen2.5-vl", 30), ("tiny-llama-3.2-vision", 10)])
def test_run_evaluate_save_and_reload_without_vtc(tmp_path, capsys, model, steps):
    from vtc.commands import run_target

    train = make_shapes(tmp_path / "train", n=24, seed=1)
    val = make_shapes(tmp_path / "val", n=10, seed=2)
    plan = make_plan(train, model=model, eval_dir=val, steps=steps, metrics=("exact_match", "cer", "bleu"),
                     outputs_dir=tmp_path / "runs")
    target = write_plan(plan, tmp_path / "plan.json")
    run = run_target(str(target), allow_changed=True)  # a plan made here has no inputs to compare
    out = capsys.readouterr().out

    # The folder: finished, complete, named run-001, nothing partial left.
    assert run == tmp_path / "runs" / "run-001"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["run-001"]
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json",
                 "plan.json", "manifest.json", "metrics.jsonl", "eval.json", "predictions.jsonl", "loss.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "plan.json").read_text()) == plan
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["state"] == "finished" and manifest["backend"]["name"] == "transformers"
    assert manifest["libraries"]["transformers"] and manifest["data"]["fingerprint"]["files"] == 24 + 1 + 10 + 1
    assert {"load model", "train", "evaluate base", "evaluate fine-tuned", "save"} <= set(manifest["timings"])
    steps_logged = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [s["step"] for s in steps_logged] == list(range(1, steps + 1))
    assert {"step", "loss", "learning_rate", "grad_norm", "epoch", "elapsed"} <= set(steps_logged[0])
    assert steps_logged[-1]["loss"] < steps_logged[0]["loss"]
    if manifest["libraries"]["tensorboard"]:
        assert any((run / "tensorboard").iterdir())

    ev = json.loads((run / "eval.json").read_text())
    assert ev["n"] == 10 and set(ev["before"]) == {"exact_match", "cer", "bleu"}
    preds = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    assert len(preds) == 10 and {"images", "question", "expected", "before", "after"} <= set(preds[0])
    # The printed table and examples.
    assert "metric" in out and "before" in out and "after" in out and "exact_match" in out
    assert "finished: " in out

    # Plain transformers + PEFT, in a fresh process without vtc, gives the same answers.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", RELOAD, str(run)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [p["after"] for p in preds]


def test_run_folders_are_numbered_and_never_reused(tmp_path):
    from vtc.runtime import outputs as O

    (tmp_path / "run-001").mkdir()
    (tmp_path / "run-003.failed").mkdir()
    first = O.next_run_dir(tmp_path)
    assert first.name == "run-004.partial"
    assert O.next_run_dir(tmp_path).name == "run-005.partial"
    assert O.finish_run_dir(first).name == "run-004"
    assert O.move_run_dir(tmp_path / "run-005.partial", "failed").name == "run-005.failed"


def test_data_fingerprint_follows_content_and_names(tmp_path):
    from vtc.runtime.outputs import data_fingerprint

    data = make_shapes(tmp_path / "d", n=3)
    plan = make_plan(data)
    one = data_fingerprint(plan)
    assert one["files"] == 4 and one == data_fingerprint(plan)
    (data / "img-000.png").rename(data / "img-x.png")
    assert data_fingerprint(plan)["sha256"] != one["sha256"]


@pytest.mark.slow
def test_demo_recipe_learns(tmp_path):
    """The README's main command: `vtc run recipes/demo-shapes.vt` on the CPU."""
    recipe = ROOT / "recipes" / "demo-shapes.vt"
    assert recipe.is_file(), "recipes/demo-shapes.vt is missing"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([str(Path(sys.executable).with_name("vtc")), "run", str(recipe), "--runs-dir",
                          str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stdout + res.stderr
    run = tmp_path / "runs" / "run-001"
    ev = json.loads((run / "eval.json").read_text())
    before, after = ev["before"]["exact_match"], ev["after"]["exact_match"]
    # Four colours: chance is 25%; an untrained model does no better than that.
    assert before <= 0.35, before
    assert after >= 0.9, after
    assert "exact_match" in res.stdout and "before" in res.stdout
    # The "before" column is an untrained tiny model's random text: the tables say so.
    assert "before = the untrained tiny model, whose random weights give random text" in res.stdout
