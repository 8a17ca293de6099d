"""The confinement rule, in one place, for every file vtc opens because a recipe, a plan or a data set names it.

Recipes and data sets come from shared repositories: a stranger's input. A file they name is opened only if

1. its real path (every symbolic link followed) stays inside the allowed root: for an include, the main recipe's
   repository (the nearest folder above it holding `.git`) or, outside a repository, the main recipe's folder; for a
   data file, the data folder; for a local model, the model folder;
2. it is a regular file: never a FIFO (which would block for ever), a device (`/dev/zero` reads until memory runs
   out), a socket, or a file of the kernel's virtual file systems (`/proc/self/environ` holds the environment, tokens
   included);
3. it is no larger than the reader's limit (checked on the open file, so a file that grows is still cut off).

A hard link to a file outside the root cannot be told from a normal file (it *is* a normal file of the folder); the
rule cannot see it, docs/security.md says so.

    real_root(path) -> str                       the resolved folder a rule compares against
    repository_root(recipe) -> Path              the include root of a main recipe
    confine(path, root) -> str | None            None when allowed, else why not (nothing is opened)
    outside(path, root) -> bool                  the first rule alone
    read_confined(path, root, limit) -> bytes    the bytes, or Refused(reason)
    open_regular(path) -> file                   opened only if a regular file (no wait on a FIFO); NotRegular
    read_regular(path, limit) -> bytes           rules 2 and 3 for a file whose place is checked already

Only the standard library: the compiler uses this without loading anything else.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# The kernel's virtual file systems: their files report size 0 and generate content when read.
VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")


class Refused(Exception):
    """A file the confinement rule does not open; ``reason`` completes "cannot read X: ..."."""

    def __init__(self, reason: str, kind: str = "refused"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # refused (outside, not a regular file) | too_large | missing | unreadable


def real_root(folder: str | Path) -> str:
    """The folder with every link resolved, the form the rule compares against."""
    try:
        return os.path.realpath(os.path.expanduser(str(folder)))
    except (OSError, ValueError):  # a name no file can have (a NUL byte, a lone surrogate): taken as written
        return os.path.abspath(str(folder))


def repository_root(recipe: str | Path) -> Path:
    """Where a main recipe's includes may come from: its git repository's top folder, else its own folder."""
    start = Path(real_root(Path(recipe).parent if str(recipe) else "."))
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def outside(path: str | Path, root: str | Path) -> bool:
    """True when ``path``, every link followed, is not inside ``root`` (a name no file can have counts as outside)."""
    try:
        return not _is_inside(os.path.realpath(os.path.expanduser(str(path))), real_root(root))
    except (OSError, ValueError):
        return True


def _is_inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _virtual(real: str) -> bool:
    return any(_is_inside(real, top) for top in VIRTUAL_ROOTS)


def confine(path: str | Path, root: str | Path | None) -> str | None:
    """None when ``path`` may be opened, else the reason it may not (nothing is opened).

    ``root`` None allows any place (a file the user named on the command line) but keeps rules 2 and 3."""
    try:
        real = os.path.realpath(os.path.expanduser(str(path)))
    except (OSError, ValueError):  # a NUL byte or a lone surrogate: no file can have that name
        return "it is not a name a file can have on this system"
    if root is not None and not _is_inside(real, real_root(root)):
        return f"it is outside {root} (after following links), and vtc opens nothing outside it"
    if _virtual(real):
        return "it is a file of the system's virtual file systems (/proc, /sys, /dev), not an ordinary file"
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return None  # the reader reports a missing file in its own words
    except OSError as exc:
        return f"it cannot be looked at ({exc.strerror or type(exc).__name__})"
    except ValueError:  # pragma: no cover - realpath above already refused such a name
        return "it is not a name a file can have on this system"
    if not stat.S_ISREG(mode):
        return f"it is {_kind(mode)}, not a regular file"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


class NotRegular(OSError):
    """open_regular's refusal of a file that is not a regular file (a FIFO, a device, a folder)."""


def open_regular(path: str | Path):
    """``path`` opened for binary reading, only if it is a regular file: opened without waiting (O_NONBLOCK: a file
    swapped for a FIFO since a check does not block the open) and checked once open (fstat). Raises what os.open
    raises (FileNotFoundError, PermissionError, ...) or NotRegular. The one way vtc opens a file a stranger named."""
    fd = os.open(os.path.expanduser(os.fspath(path)), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(errno.EINVAL, f"it is {_kind(mode)}, not a regular file", os.fspath(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path`` (a regular file, opened as open_regular does), at most ``limit`` of them; rules 2 and 3
    only, for a file whose place was checked already. Raises Refused."""
    try:
        with open_regular(path) as f:
            data = _read_upto(f, os.fstat(f.fileno()).st_size, limit)
    except FileNotFoundError:
        raise Refused("it does not exist", "missing") from None
    except NotRegular as exc:
        raise Refused(exc.strerror) from None
    except OSError as exc:
        raise Refused(f"it cannot be read ({exc.strerror or type(exc).__name__})", "unreadable") from None
    except ValueError:  # a NUL in the name: confine refuses such names before
        raise Refused("it is not a name a file can have on this system") from None
    if len(data) > limit:
        raise Refused(f"it is larger than {_size(limit)}, the limit for this kind of file", "too_large")
    return data


def read_confined(path: str | Path, root: str | Path | None, limit: int) -> bytes:
    """The bytes of ``path`` under the rule, at most ``limit`` of them. Raises Refused."""
    reason = confine(path, root)
    if reason:
        raise Refused(reason)
    return read_regular(path, limit)


def _read_upto(f, size: int, limit: int) -> bytes:
    """At most limit + 1 bytes of an open regular file whose size was ``size`` when it was opened. read(limit + 1)
    would allocate limit + 1 bytes up front (512 MB for a 1 KB table); the file's size is read instead, and more
    only if the file grew since (still cut at the limit)."""
    want = min(limit, size) + 1
    data = f.read(want)
    if len(data) == want and want <= limit:  # it grew: read on, up to the limit
        data += f.read(limit + 1 - want)
    return data


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:g} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover
