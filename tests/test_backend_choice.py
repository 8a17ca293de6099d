"""Backend choice: auto, forced, and the refusals, without importing unsloth."""

import subprocess
import sys

import pytest

from vtc.diagnostics import VtcError
from vtc.runtime.backends import base


@pytest.fixture
def machine(monkeypatch):
    def set_machine(cuda: bool, unsloth: bool):
        monkeypatch.setattr(base, "cuda_available", lambda: cuda)
        monkeypatch.setattr(base, "unsloth_installed", lambda: unsloth)
        loaded = []
        monkeypatch.setattr(base, "load_backend", lambda name: loaded.append(name) or name)
        return loaded

    return set_machine


def test_auto_without_cuda_takes_transformers(machine):
    machine(cuda=False, unsloth=True)
    backend, reason = base.choose_backend("auto")
    assert backend == "transformers"
    assert reason == "backend: transformers (no CUDA GPU found; unsloth needs one)"


def test_auto_with_cuda_and_unsloth_takes_unsloth(machine):
    machine(cuda=True, unsloth=True)
    backend, reason = base.choose_backend("auto")
    assert backend == "unsloth"
    assert "CUDA GPU found" in reason


def test_auto_with_cuda_without_unsloth_says_how_to_get_it(machine):
    machine(cuda=True, unsloth=False)
    backend, reason = base.choose_backend("auto")
    assert backend == "transformers"
    assert "vtc[unsloth]" in reason


def test_forced_transformers_even_with_unsloth(machine):
    machine(cuda=True, unsloth=True)
    assert base.choose_backend("transformers")[0] == "transformers"


@pytest.mark.parametrize("cuda,unsloth,words", [(False, True, "needs a CUDA GPU"), (True, False, "not installed")])
def test_forced_unsloth_refused_with_a_reason(machine, cuda, unsloth, words):
    machine(cuda=cuda, unsloth=unsloth)
    with pytest.raises(VtcError) as info:
        base.choose_backend("unsloth")
    d = info.value.diagnostics[0]
    assert d.code == "VT505" and words in d.message and d.help


def test_unknown_backend(machine):
    machine(cuda=False, unsloth=False)
    with pytest.raises(VtcError):
        base.choose_backend("jax")


def test_missing_backend_module_is_a_diagnostic(monkeypatch):
    monkeypatch.setitem(base._MODULES, "unsloth", ("vtc.runtime.backends.no_such_module", "X"))
    with pytest.raises(VtcError) as info:
        base.load_backend("unsloth")
    assert "no unsloth backend" in info.value.diagnostics[0].message


def test_real_choice_on_this_machine_and_no_heavy_imports():
    # Importing base and choosing must not import unsloth (it patches transformers on import), and importing
    # base alone must not import torch.
    code = (
        "import sys; from vtc.runtime.backends import base; assert 'torch' not in sys.modules; "
        "b, r = base.choose_backend('auto'); print(b.name, '|', r); assert 'unsloth' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import torch

    if not torch.cuda.is_available():
        assert out.stdout.strip() == "transformers | backend: transformers (no CUDA GPU found; unsloth needs one)"
