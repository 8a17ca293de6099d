"""Where vtc keeps what it builds and caches, in one place (torch-free: the lock file, `vtc cache` and the runtime
all ask here).

    cache_root()              $VTC_CACHE, else $XDG_CACHE_HOME/vtc, else ~/.cache/vtc
    tiny_model_dir(name)      <cache root>/models/<name>-v<TINY_BUILD_VERSION>: a built tiny model
    image_cache_dir()         <cache root>/images: standardised images (vtc.runtime.cache)
"""

from __future__ import annotations

import os
from pathlib import Path

# The version of what vtc.runtime.tiny_models builds. Bump it when a build would give other bytes: the folder name
# carries it, so an old build is never reused. 2: Mllama's cross-attention gates opened.
TINY_BUILD_VERSION = 2


def cache_root() -> Path:
    """The user's vtc cache folder: $VTC_CACHE, else $XDG_CACHE_HOME/vtc, else ~/.cache/vtc."""
    if os.environ.get("VTC_CACHE"):
        return Path(os.environ["VTC_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "vtc"
    return Path.home() / ".cache" / "vtc"


def tiny_model_dir(name: str, root: str | Path | None = None) -> Path:
    """The folder a tiny model is built into (under ``root`` instead of the cache root when given)."""
    return (Path(root) if root is not None else cache_root()) / "models" / f"{name}-v{TINY_BUILD_VERSION}"


def image_cache_dir() -> Path:
    return cache_root() / "images"
