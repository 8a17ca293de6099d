"""GPU tests: marked @pytest.mark.gpu and skipped unless torch sees a CUDA GPU and unsloth is installed.

CI has no GPU, so there they are collected and skipped in well under a second (torch is imported only when a gpu
test was collected). On the GPU machine docs/gpu.md gives the one command that runs them.
"""

from __future__ import annotations

import importlib.util

import pytest


def gpu_unavailable_reason() -> str | None:
    """Why the GPU tests cannot run here, or None when they can."""
    for package in ("torch", "unsloth", "trl"):
        if importlib.util.find_spec(package) is None:
            return f"{package} is not installed (GPU tests need CUDA + unsloth: see docs/gpu.md)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU (GPU tests run on the GPU machine: see docs/gpu.md)"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = gpu_unavailable_reason()
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in gpu_items:
            item.add_marker(skip)
        return
    import torch

    if torch.cuda.device_count() < 2:  # multigpu: two processes on two cards
        skip = pytest.mark.skip(reason=f"{torch.cuda.device_count()} GPU visible; the multigpu tests need 2")
        for item in gpu_items:
            if item.get_closest_marker("multigpu"):
                item.add_marker(skip)
