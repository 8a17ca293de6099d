"""The Hugging Face Hub: asked once, in a few seconds, whether it can be reached, before the libraries' retry loops.

    unreachable() -> str | None      why the Hub cannot be reached, in words; None when it answers (one probe a
                                     process; "HF_HUB_OFFLINE is set" when the user switched the network off)
    offline_by_user() -> str | None  the variable by which the user switched the network off, if they did
    go_offline()                     the rest of this process reads the Hugging Face cache only (huggingface_hub,
                                     transformers and datasets read one flag), with no request and no retry
    note_cached(why, what)           says once on stderr that something came from the cache for that reason
    endpoint()                       the Hub's address (HF_ENDPOINT, else https://huggingface.co)
    what_to_do(name, dataset=...)    the advice every "cannot reach the Hub" diagnostic ends with

Why: huggingface_hub (1.x) retries a failed request five times with back-off (1, 2, 4, 8, 8 s) and logs each try
("'[Errno -2] Name or service not known' thrown while requesting HEAD ... Retrying in 8s [Retry 5/5]");
transformers asks for several files in turn and `datasets` for a few more, so without a network a recipe naming a
Hub model took 75 s and printed ten such lines before vtc's own diagnostic. One HEAD request to the endpoint with a
short timeout tells the same in a fraction of a second (no DNS, connection refused) or PROBE_TIMEOUT seconds at most.

The probe uses huggingface_hub's own HTTP client (get_session()), so it goes where the downloads would go: the same
HF_ENDPOINT, the same proxies (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, read by httpx) and certificates.
Any HTTP answer means reachable, except 502/503/504 (a proxy that cannot get through, or the Hub down: the libraries
would retry those too).
"""

from __future__ import annotations

import os
import re
import shlex
import sys

# Seconds the probe waits for a connection and an answer. The Hub answers a HEAD of its front page in well under a
# second from anywhere it can be reached at all; a name that does not resolve or a refused connection fail at once.
PROBE_TIMEOUT = 5.0

WHAT_TO_DO = ("on a machine with a network, download it (`hf download {name}{repo_type} --local-dir {shell_folder}`), "
              "copy the folder here and write `{clause} ./{folder}`; or point HF_HOME at a Hugging Face cache that "
              "holds it; behind a proxy, set HTTPS_PROXY")

_probed: dict[str, str | None] = {}  # endpoint -> the problem (None: reachable); one probe a process
_went_offline = False  # go_offline() switched the libraries off the network (the user had not)
_said_offline = False


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def offline_by_user(*, datasets: bool = False) -> str | None:
    """The variable by which the user switched the network off (HF_HUB_OFFLINE, or TRANSFORMERS_OFFLINE, which
    huggingface_hub reads as the same; with ``datasets``, HF_DATASETS_OFFLINE too), or None."""
    from huggingface_hub import constants

    if _went_offline:  # vtc did, not the user
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE"
    if datasets and os.environ.get("HF_DATASETS_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_DATASETS_OFFLINE"
    return None


def unreachable(*, datasets: bool = False) -> str | None:
    """Why the Hub cannot be reached (a short phrase), or None when it answers. Probed once a process; not at all
    when the user switched the network off ("HF_HUB_OFFLINE is set")."""
    variable = offline_by_user(datasets=datasets)
    if variable:
        return f"{variable} is set"
    url = endpoint()
    if url not in _probed:
        _probed[url] = _probe(url)
    return _probed[url]


def _probe(url: str) -> str | None:
    """One HEAD request to ``url``; why it failed, or None. At most PROBE_TIMEOUT (+1 s) in all: the request runs in
    a thread, because the name lookup before the connection is not bounded by httpx's timeout (a DNS server that
    does not answer can hold getaddrinfo for tens of seconds)."""
    import threading

    result: list = []
    thread = threading.Thread(target=lambda: result.append(_request(url)), daemon=True, name="vtc-hub-probe")
    thread.start()
    thread.join(PROBE_TIMEOUT + 1)
    if not result:
        return f"{_shown(url)} did not answer within {PROBE_TIMEOUT:g} s"
    return result[0]


def _request(url: str) -> str | None:
    import httpx
    from huggingface_hub.utils import get_session

    shown = _shown(url)
    try:
        response = get_session().head(url, timeout=PROBE_TIMEOUT, follow_redirects=False)
    except httpx.TimeoutException:
        return f"{shown} did not answer within {PROBE_TIMEOUT:g} s"
    except httpx.ProxyError as exc:
        return f"the proxy refused the connection to {shown} ({_clean(exc)})"
    except httpx.ConnectError as exc:
        text = _clean(exc)
        low = text.lower()
        if any(s in low for s in ("name or service not known", "nodename nor servname", "temporary failure in name",
                                  "getaddrinfo failed", "no address associated", "name resolution")):
            return f"the name {httpx.URL(url).host} does not resolve (no network, or no DNS: {text})"
        if "refused" in low:
            return f"{shown} refused the connection ({text})"
        if "unreachable" in low:
            return f"there is no route to {shown} ({text})"
        return f"cannot connect to {shown} ({text})"
    except Exception as exc:  # any other transport failure (TLS, a broken proxy): the downloads would fail the same
        return f"cannot connect to {shown} ({type(exc).__name__}: {_clean(exc)})"
    if response.status_code in (502, 503, 504):
        return f"{shown} answered HTTP {response.status_code} (the Hub, or a proxy on the way, is unavailable)"
    return None


def _shown(url: str) -> str:
    """The endpoint without any user:password@ it may carry."""
    return re.sub(r"//[^/@]*@", "//", url)


def _clean(exc: Exception) -> str:
    from vtc.runtime.failures import redact

    text = (str(exc) or type(exc).__name__).splitlines()[0][:200]
    return redact(re.sub(r"//[^/@\s]*@", "//", text))


def go_offline() -> None:
    """From now on this process reads the Hugging Face cache only, with no request (so no retry loop)."""
    global _went_offline
    from huggingface_hub import constants

    _went_offline = True
    constants.HF_HUB_OFFLINE = True  # huggingface_hub's requests and transformers' is_offline_mode() read this
    os.environ["HF_HUB_OFFLINE"] = "1"  # libraries imported later, and worker processes
    cfg = sys.modules.get("datasets.config")
    if cfg is not None:
        cfg.HF_HUB_OFFLINE = True
        cfg.HF_DATASETS_OFFLINE = True


def note_cached(why: str, what: str) -> None:
    """Say once on stderr that ``what`` comes from the cache because the Hub cannot be reached."""
    global _said_offline
    if not _said_offline:
        _said_offline = True
        print(f"note: the Hugging Face Hub cannot be reached ({why}): {what} comes from the local Hugging Face "
              "cache, not checked for a newer version", file=sys.stderr, flush=True)


def what_to_do(name: str, *, dataset: bool) -> str:
    folder = name.rstrip("/").rsplit("/", 1)[-1] or "model"
    # Quoted for a shell: the name comes from a recipe, and the command is printed for the user to paste.
    name, shell_folder = shlex.quote(name), shlex.quote(folder)
    return WHAT_TO_DO.format(name=name, shell_folder=shell_folder, repo_type=" --repo-type dataset" if dataset else "", folder=folder,
                             clause="from" if dataset else "finetune ... on")
