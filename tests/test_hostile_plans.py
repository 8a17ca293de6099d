"""Issue 11, plans and run folders from a shared repository: a plan file is input from a stranger.

* nothing in a plan reaches a library call unless the plan schema names it (push_to_hub, unknown keys, the old
  `sft`/`peft` sections: VT514, before any library is imported or called);
* a plan file that lets the model run its own code needs --trust-remote-code as well (VT508), for `vtc run`,
  `vtc run --resume` and `vtc ask`; when allowed, the run's first lines say so and from where; the model's own code
  failing is a diagnostic (VT509);
* a saved plan without its `inputs` is refused (VT530) unless --allow-changed;
* `save to` / --runs-dir the file system's root, a system folder, the home folder or a folder of other files is
  refused at compile time (VT265) and at run time (VT537); a runs folder that cannot be written is VT538;
* a full disk while torch.save writes a checkpoint (its real error, "unexpected pos") is VT522 with the folder
  marked failed; a damaged checkpoint on --resume is VT539;
* every command printed for pasting is shell-quoted; what a run prints is escaped (no terminal escape gets through).
"""

import errno
import io
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_plan, make_shapes, write_plan
from vtc.cli import cli
from vtc.diagnostics import VtcError
from vtc.plans import plan_schema, plan_to_json


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result, result.output + (getattr(result, "stderr", "") or "")


def refused(result, text, code, *words):
    assert result.exit_code == 1, text
    assert "Traceback" not in text and (result.exception is None or isinstance(result.exception, SystemExit)), text
    assert f"error[{code}]" in text, text
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"


def saved_plan(tmp_path, **kw) -> tuple[dict, Path]:
    data = make_shapes(tmp_path / "shapes", n=6)
    plan = make_plan(data, outputs_dir=tmp_path / "runs", steps=1, batch=2, **kw)
    return plan, tmp_path / "plan.json"


# ---- nothing in a plan reaches a library unless the schema names it -------------------------------------------

def test_every_object_of_the_plan_schema_is_closed():
    """additionalProperties false everywhere; the one open map is provenance (JSON pointer -> text, read for
    messages only)."""
    schema = plan_schema()
    open_objects = []

    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" or "properties" in node:
                if node.get("additionalProperties") is not False:
                    open_objects.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "")
    assert open_objects == ["/properties/provenance"], open_objects
    assert schema["properties"]["provenance"]["additionalProperties"] == {"type": "string", "minLength": 1}


EDITS = {
    "push_to_hub in training": (lambda p: p["training"].update(push_to_hub=True, hub_model_id="someone/x"),
                                "/training/push_to_hub"),
    "an sft section": (lambda p: p.update(sft={"push_to_hub": True, "hub_token": "x"}), "/sft"),
    "a peft section": (lambda p: p.update(peft={"r": 8}), "/peft"),
    "an unknown key in the model": (lambda p: p["model"].update(revision="main", code_revision="evil"),
                                    "/model/code_revision"),
    # (modules_to_save is a plan field now: the projector's modules under `projector full`)
    "an unknown key in lora": (lambda p: p["lora"].update(layers_to_transform=[0]), "/lora/layers_to_transform"),
    "an unknown key in the architecture": (lambda p: p["model"]["architecture"]["language"].update(push_to_hub=True),
                                           "/model/architecture/language/push_to_hub"),
    "an unknown key in the inputs": (lambda p: p.update(inputs={"fingerprint": "quick", "recipe": {
        "sha256": "x", "files": [], "missing": []}, "data": {}, "model": {"kind": "tiny", "push_to_hub": True}}),
        "/inputs/model/push_to_hub"),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_a_plan_with_keys_the_schema_does_not_name_reaches_no_library(tmp_path, monkeypatch, name):
    import trl

    from vtc.runtime.backends import base

    calls = []
    monkeypatch.setattr(trl, "SFTConfig", lambda **kw: calls.append(kw))
    monkeypatch.setattr(base, "choose_backend", lambda *a, **k: calls.append("backend"))
    plan, target = saved_plan(tmp_path)
    edit, pointer = EDITS[name]
    edit(plan)
    target.write_text(plan_to_json(plan))
    for flags in ([], ["--allow-changed", "--trust-remote-code"]):
        result, text = run_cli("run", target, *flags)
        refused(result, text, "VT514", pointer, "is not a field of a plan")
    assert calls == [] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text,words", [
    ('{"plan_version": 2, "batch": ' + "9" * 5000 + "}", "digits"),
    ('{"plan_version": 2, "x": NaN}', "NaN is not a number JSON allows"),
    ('{"plan_version": 2, "x": 1e999}', "too large"),
    ('{"plan_version": 2, "x": ' + "[" * 100000 + "]" * 100000 + "}", "cannot read plan.json as JSON"),
])
def test_numbers_and_nesting_out_of_range_are_refused_before_conversion(tmp_path, text, words):
    target = tmp_path / "plan.json"
    target.write_text(text)
    result, out = run_cli("run", target)
    refused(result, out, "VT510", words)


def test_a_plan_file_is_read_as_a_regular_file_of_limited_size(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    result, text = run_cli("run", fifo)  # would block for ever if opened for reading
    refused(result, text, "VT510", "named pipe")
    big = tmp_path / "big.json"
    big.write_text('{"plan_version": 2, "pad": "' + "x" * (17 * 2**20) + '"}')
    result, text = run_cli("run", big)
    refused(result, text, "VT510", "larger than 16 MB")


# ---- a saved plan without its inputs ------------------------------------------------------------------------

def test_a_plan_without_inputs_is_refused_unless_allowed(tmp_path):
    from vtc.runtime.lifecycle import check_saved_plan
    from vtc.runtime.progress import Reporter

    plan, target = saved_plan(tmp_path)
    write_plan(plan, target)
    result, text = run_cli("run", target)
    refused(result, text, "VT530", "records no fingerprints of its inputs", "the section was removed",
            "--allow-changed")
    assert not (tmp_path / "runs").exists()
    out = io.StringIO()
    check_saved_plan(plan, str(target), True, Reporter(out))
    assert out.getvalue().startswith("warning: ") and "running anyway: --allow-changed" in out.getvalue()


# ---- code that comes with the model -------------------------------------------------------------------------

def custom_model(tmp_path, marker: Path) -> Path:
    """A model folder whose own code (auto_map) writes ``marker`` when it runs, then fails."""
    folder = tmp_path / "custom-vlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "my_custom_vlm", "architectures": ["MyCustomVLM"],
        "auto_map": {"AutoConfig": "configuration_my.MyConfig",
                     "AutoModelForImageTextToText": "modeling_my.MyCustomVLM"}}))
    code = (f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
            "raise RuntimeError('custom code broke: flash_attn missing')\n")
    (folder / "configuration_my.py").write_text(code)
    (folder / "modeling_my.py").write_text(code)
    return folder


def test_a_plan_file_that_trusts_remote_code_runs_nothing_without_the_flag(tmp_path):
    marker = tmp_path / "CODE-RAN"
    plan, target = saved_plan(tmp_path, model=str(custom_model(tmp_path, marker)), responses_only=False)
    assert plan["model"]["trust_remote_code"] is False
    plan["model"]["trust_remote_code"] = True  # the edit: a recipe never said `with trust_remote_code`
    write_plan(plan, target)
    result, text = run_cli("run", target, "--allow-changed")
    refused(result, text, "VT508", "lets the model run its own Python code", str(tmp_path / "custom-vlm"),
            "a plan file alone cannot allow that", "--trust-remote-code")
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_allowed_remote_code_is_named_first_and_its_failure_is_a_diagnostic(tmp_path):
    marker = tmp_path / "CODE-RAN"
    plan, target = saved_plan(tmp_path, model=str(custom_model(tmp_path, marker)), responses_only=False)
    plan["model"]["trust_remote_code"] = True
    write_plan(plan, target)
    result, text = run_cli("run", target, "--allow-changed", "--trust-remote-code")
    refused(result, text, "VT509", "the model's own Python code", str(tmp_path / "custom-vlm"),
            "failed while loading the model", "RuntimeError: custom code broke: flash_attn missing",
            "ask the model's authors")
    assert marker.exists()  # allowed: it ran
    lines = text.splitlines()
    warned = [i for i, line in enumerate(lines) if line.startswith("warning: the model's own Python code will run")]
    assert warned and warned[0] <= 3, lines[:6]  # among the first lines: read plan, the inputs warning, this
    assert "allowed by --trust-remote-code" in lines[warned[0]] and str(tmp_path / "custom-vlm") in lines[warned[0]]
    assert not (tmp_path / "runs").exists()  # it failed before the run folder was made


def test_a_recipe_with_trust_remote_code_needs_no_flag(tmp_path):
    marker = tmp_path / "CODE-RAN"
    make_shapes(tmp_path / "shapes", n=4)
    custom_model(tmp_path, marker)
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on ./custom-vlm with trust_remote_code\nusing lora\nfrom ./shapes\n"
                      "without responses_only\ntrain for 1 steps\nresize 112\n")
    result, text = run_cli("run", recipe)
    refused(result, text, "VT509", "custom code broke")
    assert "allowed by the recipe's `with trust_remote_code`" in text and marker.exists()


def fake_run(tmp_path, state="finished", trust=True) -> Path:
    plan, _ = saved_plan(tmp_path)
    plan["model"]["trust_remote_code"] = trust
    folder = tmp_path / "runs" / ("run-001" + {"finished": "", "interrupted": ".interrupted"}[state])
    (folder / "adapter").mkdir(parents=True)
    write_plan(plan, folder / "plan.json")
    (folder / "manifest.json").write_text(json.dumps({"state": state}))
    return folder


def test_ask_and_resume_read_a_plan_file_and_need_the_flag_too(tmp_path):
    from runtime_helpers import shape_image

    image = tmp_path / "x.png"
    shape_image("red", "circle").save(image)
    run = fake_run(tmp_path)
    result, text = run_cli("ask", run, image)
    refused(result, text, "VT508", str(run / "plan.json"), "--trust-remote-code")
    interrupted = fake_run(tmp_path / "other", state="interrupted")
    result, text = run_cli("run", "--resume", interrupted)
    refused(result, text, "VT508", "--trust-remote-code", "vtc run --resume")


# ---- where run folders go -----------------------------------------------------------------------------------

@pytest.mark.parametrize("folder,words", [
    ("/", "the file system's root"),
    ("/etc", "a system folder (/etc)"),
    ("/etc/vtc-runs", "inside a system folder (/etc)"),
    ("/usr", "/usr, a folder of the system"),
    ("~", "your home folder itself"),
    ("C:/Windows", "a system folder of Windows"),
    ("./busy", "already holds other files (notes.txt) and no run folder"),
    ("./link-to-etc", "a system folder (/etc)"),
])
def test_save_to_a_dangerous_folder_is_refused_when_compiled(tmp_path, folder, words):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    (tmp_path / "link-to-etc").symlink_to("/etc")
    recipe = tmp_path / "r.vt"
    recipe.write_text(f'finetune all on tiny-qwen2.5-vl\nfrom ./d\nsave to "{folder}"\n')
    result, text = run_cli("check", recipe)
    refused(result, text, "VT265", "cannot hold run folders", words, "r.vt:3:9")


def test_a_runs_folder_empty_new_or_with_run_folders_is_fine(tmp_path):
    from vtc.plans import runs_folder_problem

    (tmp_path / "empty").mkdir()
    (tmp_path / "runs" / "run-003.failed").mkdir(parents=True)
    (tmp_path / "runs" / "README.md").write_text("our runs")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / ".gitkeep").write_text("")
    for name in ("empty", "new/deeper", "runs", "kept"):
        assert runs_folder_problem(tmp_path / name) is None, name


def test_a_plan_or_runs_dir_aimed_at_a_system_folder_is_refused_when_run(tmp_path):
    plan, target = saved_plan(tmp_path)
    result, text = run_cli("run", write_plan(plan, target), "--allow-changed", "--runs-dir", "/etc")
    refused(result, text, "VT537", "run folders cannot go into /etc (--runs-dir /etc)", "a system folder")
    plan["outputs"]["dir"] = "/"
    result, text = run_cli("run", write_plan(plan, target), "--allow-changed")
    refused(result, text, "VT537", "the plan's outputs.dir, /)", "plan.json", "the file system's root", "save to")


def test_a_runs_folder_that_cannot_be_written_is_found_before_any_work(tmp_path):
    plan, target = saved_plan(tmp_path)
    (tmp_path / "box").write_text("a file where a folder should be")
    plan["outputs"]["dir"] = str(tmp_path / "box" / "runs")
    result, text = run_cli("run", write_plan(plan, target), "--allow-changed")
    refused(result, text, "VT538", f"cannot create run folders in {tmp_path / 'box' / 'runs'}", "is a file")
    assert "scan data" not in text


def test_a_runs_folder_that_becomes_unwritable_after_the_model_loaded(tmp_path, monkeypatch):
    """Checked writable at the start; while the model loads its folder becomes a file (ENOTDIR: what root, too,
    cannot write through)."""
    import vtc.runtime.run as R

    plan, target = saved_plan(tmp_path)
    box = tmp_path / "box"
    plan["outputs"]["dir"] = str(box / "runs")
    real = R.load_model

    def load_then_break(*a, **kw):
        loaded = real(*a, **kw)
        shutil.rmtree(box, ignore_errors=True)
        box.write_text("not a folder any more")
        return loaded

    monkeypatch.setattr(R, "load_model", load_then_break)
    result, text = run_cli("run", write_plan(plan, target), "--allow-changed")
    refused(result, text, "VT538", f"cannot write {box / 'runs'} while creating the run folder", "Not a directory",
            "make the folder writable again")
    assert "load model" in text


# ---- failures while the run works ---------------------------------------------------------------------------

def torch_save_on_a_full_disk(obj, f, *a, **kw):
    """What torch.save raises when the disk fills up (torch 2.14, measured by saving to /dev/full): no errno."""
    Path(f).write_bytes(b"PK\x03\x04 cut short")
    try:
        raise RuntimeError("basic_ios::clear: iostream error")
    except RuntimeError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


def test_torch_saves_own_words_for_a_full_disk_are_recognised():
    from vtc.runtime.failures import is_disk_full

    with pytest.raises(RuntimeError) as info:
        torch_save_on_a_full_disk({}, os.devnull)
    assert is_disk_full(info.value)
    import torch

    try:
        torch.save({"a": torch.zeros(1000)}, "/dev/full")  # the real thing, where the machine has /dev/full
    except Exception as exc:  # noqa: BLE001 - whatever torch raises must be recognised
        assert is_disk_full(exc), repr(exc)


@pytest.mark.slow
def test_a_full_disk_while_torch_saves_a_checkpoint(tmp_path, monkeypatch):
    """The checkpoint being written filled the disk: the run removes it, marks its folder failed (the manifest says
    so, though writing it needs the space the checkpoint took) and says VT522."""
    import torch

    from vtc.runtime import checkpoints as C
    from vtc.runtime import outputs as O

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    real_write = O.write_text

    def write_text(path, text):  # no room while a half-written checkpoint holds the space
        for folder in Path(path).parent.glob(f"{C.CHECKPOINTS}/checkpoint-*"):
            if not (folder / C.COMPLETE).exists():
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, text)

    monkeypatch.setattr(O, "write_text", write_text)
    plan, target = saved_plan(tmp_path)
    plan["checkpoint"]["every_steps"] = 1
    result, text = run_cli("run", write_plan(plan, target), "--allow-changed")
    refused(result, text, "VT522", "the disk is full", "while training")
    [folder] = (tmp_path / "runs").iterdir()
    assert folder.name == "run-001.failed"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["state"] == "failed" and "unexpected pos" in manifest["error"]
    assert not list((folder / C.CHECKPOINTS).glob("checkpoint-*"))  # the half-written one is gone


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut short", "a planted pickle"])
def test_a_damaged_checkpoint_on_resume(tmp_path, monkeypatch, damage):
    import pickle

    from vtc.runtime.backends.transformers_backend import TransformersBackend

    def save_adapter(self, model, processor, out_dir):
        raise RuntimeError("simulated crash after training")

    monkeypatch.setattr(TransformersBackend, "save_adapter", save_adapter)
    plan, target = saved_plan(tmp_path)
    plan["checkpoint"]["every_steps"] = 1
    write_plan(plan, target)
    result, _text = run_cli("run", target, "--allow-changed")
    assert result.exit_code != 0
    monkeypatch.undo()
    [folder] = (tmp_path / "runs").iterdir()
    optimizer = folder / "checkpoints" / "checkpoint-1" / "optimizer.pt"
    assert optimizer.is_file()
    if damage == "cut short":
        optimizer.write_bytes(optimizer.read_bytes()[:100])
    else:
        optimizer.write_bytes(pickle.dumps(subprocess.Popen, protocol=2))  # a class: torch's weights_only refuses it
    result, text = run_cli("run", "--resume", folder)
    refused(result, text, "VT539", "checkpoint-1 cannot be read back", "delete the folder",
            "resume again with `vtc run --resume")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert folder.name == "run-001.failed" and manifest["state"] == "failed"


# ---- what is printed ----------------------------------------------------------------------------------------

def test_printed_commands_are_shell_quoted(tmp_path):
    from vtc.runtime.checkpoints import resume_command
    from vtc.runtime.outputs import command

    odd = "runs-$(touch PWNED)-`id`/run-001"
    line = command("vtc", "ask", odd)
    assert line == "vtc ask 'runs-$(touch PWNED)-`id`/run-001'"
    assert resume_command(Path(odd), odd, "--allow-changed") == f"vtc run --resume '{odd}' --allow-changed"
    # Pasted into a shell, the words come back as they were, and nothing runs.
    out = subprocess.run(["sh", "-c", "printf '%s\\n' " + line], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.splitlines() == ["vtc", "ask", odd] and not (tmp_path / "PWNED").exists()


def test_a_run_prints_escapes_not_control_characters():
    from vtc.runtime.progress import Reporter

    out = io.StringIO()
    Reporter(out).line("load rows  shapes\x1b[2K\x1b[1Aok: 1 recipe checked\x1b]0;title\x07 \u202e")
    assert out.getvalue() == "load rows  shapes\\x1b[2K\\x1b[1Aok: 1 recipe checked\\x1b]0;title\\x07 \\u202e\n"


def test_ask_prints_answers_escaped_and_writes_them_exactly(tmp_path, capsys):
    from vtc.runtime.ask import _Answers

    answer = "red\x1b[2J\x9b31m\u202eder"
    record = {"image": "a\x1b.png", "question": "q", "answer": answer, "error": None}
    _Answers(None, folder=False).write(dict(record))
    _Answers(None, folder=True).write(dict(record))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "red\\x1b[2J\\x9b31m\\u202eder"
    assert "\x1b" not in out[1] and "\x9b" not in out[1] and json.loads(out[1]) == record
    sink = _Answers(tmp_path / "answers.jsonl", folder=True)
    sink.write(dict(record))
    sink.close()
    assert json.loads((tmp_path / "answers.jsonl").read_text()) == record  # the file keeps the exact text


@pytest.mark.slow
def test_a_finished_run_in_an_odd_folder_prints_a_try_it_line_that_pastes_safely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_shapes(tmp_path / "shapes", n=6)
    runs = tmp_path / "runs-$(touch PWNED)"
    plan = make_plan(data, outputs_dir=runs, steps=1, batch=2)
    # A data folder whose name holds an escape sequence (a recipe cannot write one; a plan file can name one).
    data.rename(tmp_path / "shapes\x1b[31m")
    plan["data"]["train"]["source"] = "shapes\x1b[31m"
    result, text = run_cli("run", write_plan(plan, tmp_path / "plan.json"), "--allow-changed")
    assert result.exit_code == 0, text
    [line] = [line for line in text.splitlines() if line.startswith("  try it: ")]
    assert line == "  try it: vtc ask 'runs-$(touch PWNED)/run-001' <image>"
    assert "\x1b" not in text and "shapes\\x1b[31m" in text
    pasted = line.split(": ", 1)[1].replace("<image>", "x.png")
    out = subprocess.run(["sh", "-c", "printf '%s\\n' " + pasted], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.splitlines()[2] == "runs-$(touch PWNED)/run-001" and not (tmp_path / "PWNED").exists()
    assert shlex.split(pasted)[2] == "runs-$(touch PWNED)/run-001"


def test_a_manifest_that_is_not_a_regular_file_is_refused(tmp_path):
    folder = fake_run(tmp_path, state="interrupted", trust=False)
    (folder / "manifest.json").unlink()
    os.mkfifo(folder / "manifest.json")
    result, text = run_cli("run", "--resume", folder)
    refused(result, text, "VT531", "manifest.json")


def test_lock_to_a_file_that_cannot_be_written(tmp_path):
    (tmp_path / "r.vt").write_text("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./d\n")
    (tmp_path / "box").write_text("a file")
    result, text = run_cli("lock", tmp_path / "r.vt", "-o", tmp_path / "box" / "r.vt.lock")
    refused(result, text, "VT538", "cannot write the lock file")


def test_vtc_errors_are_diagnostics(tmp_path):
    """resume_run / ask_command refuse with VtcError (the CLI renders it), never another exception."""
    from vtc.runtime.run import resume_run

    folder = fake_run(tmp_path, state="interrupted")
    with pytest.raises(VtcError) as info:
        resume_run(str(folder))
    assert info.value.diagnostics[0].code == "VT508"
