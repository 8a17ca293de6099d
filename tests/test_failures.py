"""Failures a user can act on: out of GPU memory, a full disk, a model that needs its own code, a model that is not
cached while offline. Each: one clear diagnostic, exit code 1, the run folder (when there is one) marked failed,
no traceback, and nothing that looks like a finished adapter."""

import errno
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_plan, make_shapes, write_plan
from vtc.cli import cli


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args))
    return result, result.output + (getattr(result, "stderr", "") or "")


def refused(result, text, code, *words):
    assert result.exit_code == 1, text
    assert "Traceback" not in text and (result.exception is None or isinstance(result.exception, SystemExit))
    assert f"error[{code}]" in text, text
    for w in words:
        assert w in text, f"{w!r} not in:\n{text}"


def plan_file(tmp_path, **kw):
    data = make_shapes(tmp_path / "shapes", n=6)
    plan = make_plan(data, outputs_dir=tmp_path / "runs", batch=4, **kw)
    plan["estimates"].update(image_size=[112, 112], image_tokens_per_image=16, gpu_memory_gib=9.5)
    plan["checkpoint"]["every_steps"] = 1
    return write_plan(plan, tmp_path / "plan.json"), tmp_path / "runs"


def failed_folder(runs: Path) -> Path:
    [folder] = list(runs.iterdir())
    assert folder.name == "run-001.failed"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["state"] == "failed" and manifest["error"]
    assert not (folder / "adapter").exists()
    return folder


@pytest.mark.slow
def test_out_of_gpu_memory_while_training(tmp_path, monkeypatch):
    import torch

    from vtc.runtime.backends.transformers_backend import TransformersBackend

    real = TransformersBackend.trainer

    def trainer(self, *a, **kw):
        t = real(self, *a, **kw)

        def train(**_):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        t.train = train
        return t

    monkeypatch.setattr(TransformersBackend, "trainer", trainer)
    target, runs = plan_file(tmp_path, steps=2)
    result, text = run_cli("run", str(target), "--allow-changed")
    refused(result, text, "VT520", "out of GPU memory while training", "16 image tokens (112x112)",
            "4 rows at a time (batch 4)", "`resize", "the same batch of 4 (`micro batch 2`)", "`using qlora`")
    failed_folder(runs)


def test_oom_advice_fits_the_plan():
    from vtc.runtime.failures import oom_error

    plan = make_plan(Path("/x/shapes"), method="qlora", batch=1)
    plan["images"]["resize"] = {"mode": "longest", "size": 1024}
    plan["estimates"].update(image_size=[1022, 1022], image_tokens_per_image=1369, gpu_memory_gib=None)
    d = oom_error(plan, "evaluating the base model", None)
    assert "while evaluating the base model: each image is 1369 image tokens" in d.message
    assert "`resize 756`" in d.help  # a quarter smaller, a multiple of 28
    assert "qlora" not in d.help and "micro batch" not in d.help  # already 4-bit; 1 at a time cannot shrink


@pytest.mark.slow
def test_disk_full_while_saving_then_resume(tmp_path, monkeypatch):
    from vtc.runtime.backends.transformers_backend import TransformersBackend

    def save_adapter(self, model, processor, out_dir):
        Path(out_dir, "adapter_config.json").write_text("{}")  # half written when the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out_dir, "adapter_model.safetensors")))

    monkeypatch.setattr(TransformersBackend, "save_adapter", save_adapter)
    target, runs = plan_file(tmp_path, steps=2)
    result, text = run_cli("run", str(target), "--allow-changed")
    refused(result, text, "VT522", "the disk is full", "while saving the results", "GiB free",
            "vtc run --resume", "checkpoint at step 2")
    folder = failed_folder(runs)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".adapter")]  # no temporary left-overs

    monkeypatch.undo()  # space freed: the run continues from its last checkpoint, without training again
    result, text = run_cli("run", "--resume", str(folder))
    assert result.exit_code == 0, text
    final = runs / "run-001"
    assert (final / "adapter" / "adapter_model.safetensors").is_file()
    # The resumed run's report has `vtc explain`'s paragraph too (vtc.commands.resume), from the run's own plan.
    assert '<p class="explain">' in (final / "report.html").read_text(encoding="utf-8")
    assert [json.loads(x)["step"] for x in (final / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_disk_full_is_recognised_through_torch_save(tmp_path):
    from vtc.runtime.failures import is_disk_full as _is_disk_full

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos") from inner
    except RuntimeError as outer:
        assert _is_disk_full(outer)
    assert _is_disk_full(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"))
    assert not _is_disk_full(RuntimeError("simulated crash"))


def remote_code_model(tmp_path) -> Path:
    folder = tmp_path / "custom-vlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "my_custom_vlm", "architectures": ["MyCustomVLM"],
        "auto_map": {"AutoConfig": "configuration_my.MyConfig",
                     "AutoModelForImageTextToText": "modeling_my.MyCustomVLM"}}))
    (folder / "modeling_my.py").write_text("raise SystemExit('this code must never run')\n")
    return folder


def test_a_model_that_needs_its_own_code(tmp_path):
    folder = remote_code_model(tmp_path)
    target, runs = plan_file(tmp_path, model=str(folder), responses_only=False)
    result, text = run_cli("run", str(target), "--allow-changed")
    refused(result, text, "VT507", "needs to run its own Python code", "with trust_remote_code")
    assert not runs.exists()  # found before any run folder exists


def test_a_hub_model_that_needs_its_own_code(tmp_path, monkeypatch):
    """A cached Hub snapshot whose config asks for remote code, loaded offline."""
    hub = tmp_path / "hf"
    snap = hub / "models--someone--custom-vlm" / "snapshots" / ("a" * 40)
    snap.parent.mkdir(parents=True)
    remote_code_model(tmp_path).rename(snap)
    (hub / "models--someone--custom-vlm" / "refs").mkdir()
    (hub / "models--someone--custom-vlm" / "refs" / "main").write_text("a" * 40)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    from vtc.runtime.model_path import resolve_model_path
    from vtc.diagnostics import VtcError

    plan = make_plan(make_shapes(tmp_path / "shapes", n=2), model="someone/custom-vlm", responses_only=False)
    with pytest.raises(VtcError) as info:
        resolve_model_path(plan)
    assert info.value.diagnostics[0].code == "VT507"
    plan["model"]["trust_remote_code"] = True  # the recipe said `with trust_remote_code`: allowed through
    assert resolve_model_path(plan) == "someone/custom-vlm"


def test_a_hub_model_not_cached_while_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    target, runs = plan_file(tmp_path, model="someone/not-downloaded-vlm", responses_only=False)
    result, text = run_cli("run", str(target), "--allow-changed")
    refused(result, text, "VT503", "someone/not-downloaded-vlm", "not in the local Hugging Face cache")
    assert not runs.exists()


@pytest.mark.slow
def test_a_crash_mid_save_leaves_no_adapter_folder(tmp_path, monkeypatch):
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.commands import run_target

    def save_adapter(self, model, processor, out_dir):
        Path(out_dir, "adapter_config.json").write_text("{}")
        raise RuntimeError("killed mid-save")

    monkeypatch.setattr(TransformersBackend, "save_adapter", save_adapter)
    target, runs = plan_file(tmp_path, steps=1)
    with pytest.raises(RuntimeError, match="killed mid-save"):
        run_target(str(target), allow_changed=True)
    folder = failed_folder(runs)
    assert sorted(p.name for p in folder.iterdir() if "adapter" in p.name) == []
