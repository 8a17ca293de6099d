"""Training backends: transformers (portable, CPU or GPU) and unsloth (CUDA). See base.choose_backend."""

from vtc.runtime.backends.base import BACKENDS, Backend, choose_backend, load_backend

__all__ = ["BACKENDS", "Backend", "choose_backend", "load_backend"]
