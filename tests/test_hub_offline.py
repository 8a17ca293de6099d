"""The Hugging Face Hub out of reach: one diagnostic within seconds, no retry lines, and the cache used when it can be.

Nothing is mocked: `vtc` runs in a subprocess with HF_ENDPOINT pointing at a local port that refuses connections
(what a machine without a network sees, minus the DNS failure), with an empty or a prepared Hugging Face cache
(HF_HOME), and with HF_HUB_OFFLINE unset (CI sets it for the rest of the suite). The probe itself is tried against
local servers that answer, answer 503, refuse, or never answer. huggingface_hub's download bars stay on under
quiet_libraries, transformers' own bars go off.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from runtime_helpers import make_shapes

VTC = str(Path(sys.executable).with_name("vtc"))
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RECIPE = """finetune all on {model}
using lora
from {data}
ask "What colour is the shape?"
answer from column text
resize 112
train for 2 steps
batch 2
save to ./runs
"""


def closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_vtc(args: list[str], cwd: Path, hf_home: Path, endpoint: str, **extra) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE",
                        "HF_DATASETS_CACHE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=endpoint, **extra)
    res = subprocess.run([VTC, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return res.returncode, res.stdout + res.stderr


def assert_one_clean_error(out: str, code: str) -> None:
    assert out.count(f"error[{code}]") == 1, out[-4000:]
    assert out.count("error[") == 1, out[-4000:]
    assert "Retry" not in out and "Retrying" not in out, out[-4000:]
    assert "thrown while requesting" not in out and "Traceback" not in out, out[-4000:]


@pytest.fixture
def project(tmp_path):
    make_shapes(tmp_path / "shapes", n=4)
    return tmp_path


def test_unreachable_hub_and_a_model_not_cached_is_one_vt503(project):
    (project / "r.vt").write_text(RECIPE.format(model="vtctest/not-cached-vl", data="./shapes"))
    port = closed_port()
    rc, out = run_vtc(["run", "r.vt"], project, project / "hf", f"http://127.0.0.1:{port}")
    assert rc == 1, out[-4000:]
    assert_one_clean_error(out, "VT503")
    assert "model vtctest/not-cached-vl is not in the local Hugging Face cache and the Hugging Face Hub cannot be " \
           f"reached: http://127.0.0.1:{port} refused the connection" in out
    # What to do: download elsewhere and point the recipe at the folder, or the cache.
    assert "hf download vtctest/not-cached-vl --local-dir not-cached-vl" in out
    assert "`finetune ... on ./not-cached-vl`" in out and "HF_HOME" in out
    assert not (project / "runs").exists()


def test_unreachable_hub_and_a_dataset_not_cached_is_one_vt416(project):
    (project / "r.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl", data="vtctest/not-cached"))
    port = closed_port()
    for command in (["check", "--data", "r.vt"], ["run", "r.vt"]):
        rc, out = run_vtc(command, project, project / "hf", f"http://127.0.0.1:{port}")
        assert rc == 1, out[-4000:]
        assert_one_clean_error(out, "VT416")
        assert "cannot download dataset vtctest/not-cached: it is not in the local cache and the Hugging Face Hub " \
               "cannot be reached" in out
        assert "hf download vtctest/not-cached --repo-type dataset --local-dir not-cached" in out
        assert "`from ./not-cached`" in out


def test_offline_by_the_user_and_nothing_cached(project):
    """HF_HUB_OFFLINE=1 (no probe at all): the same single diagnostics, saying that the network is off."""
    (project / "m.vt").write_text(RECIPE.format(model="vtctest/not-cached-vl", data="./shapes"))
    (project / "d.vt").write_text(RECIPE.format(model="tiny-qwen2.5-vl", data="vtctest/not-cached"))
    port = closed_port()
    rc, out = run_vtc(["run", "m.vt"], project, project / "hf", f"http://127.0.0.1:{port}", HF_HUB_OFFLINE="1")
    assert rc == 1
    assert_one_clean_error(out, "VT503")
    assert "there is no network (HF_HUB_OFFLINE is set)" in out and "unset HF_HUB_OFFLINE" in out
    rc, out = run_vtc(["check", "--data", "d.vt"], project, project / "hf", f"http://127.0.0.1:{port}",
                      HF_HUB_OFFLINE="1")
    assert rc == 1
    assert_one_clean_error(out, "VT416")
    assert "the network is off (HF_HUB_OFFLINE is set)" in out


def _cache_model(hf_home: Path, repo: str) -> None:
    """A Hub model in the Hugging Face cache, laid out as a download leaves it (refs/main -> snapshots/<commit>)."""
    from vtc.runtime.tiny_models import ensure_tiny_model

    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    shutil.copytree(ensure_tiny_model("tiny-qwen2.5-vl"), folder / "snapshots" / COMMIT)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(COMMIT)


def _cache_dataset(hf_home: Path, repo: str, images: Path) -> None:
    """A Hub dataset in `datasets`' cache, as a first load_dataset(repo) leaves it (<org>___<name>/default/...)."""
    import json

    import datasets
    from datasets.packaged_modules.parquet.parquet import Parquet

    rows = [json.loads(line) for line in (images / "metadata.jsonl").read_text().splitlines()]
    # The images' bytes inside the dataset, as in a dataset downloaded from the Hub.
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": (images / r["file_name"]).read_bytes(), "path": None} for r in rows],
         "text": [r["text"] for r in rows]}, features=datasets.Features({"image": datasets.Image(),
                                                                         "text": datasets.Value("string")}))
    parquet = hf_home / "train.parquet"
    ds.to_parquet(str(parquet))
    org, name = repo.split("/")
    builder = Parquet(cache_dir=str(hf_home / "datasets"), dataset_name=name, repo_id=repo, hash=COMMIT,
                      config_name="default", data_files={"train": str(parquet)})
    builder.download_and_prepare()
    root = hf_home / "datasets" / f"{org}___{name}"
    [built] = list(root.iterdir())
    built.rename(root / "default")  # the config's name, as a Hub download records it
    parquet.unlink()


@pytest.mark.slow
def test_unreachable_hub_with_model_and_dataset_cached_trains_from_the_cache(project):
    hf_home = project / "hf"
    _cache_model(hf_home, "vtctest/tiny-qwen2.5-vl")
    _cache_dataset(hf_home, "vtctest/shapes", project / "shapes")
    shutil.rmtree(project / "shapes")
    (project / "r.vt").write_text(RECIPE.format(model="vtctest/tiny-qwen2.5-vl", data="vtctest/shapes"))
    port = closed_port()
    rc, out = run_vtc(["check", "--data", "r.vt"], project, hf_home, f"http://127.0.0.1:{port}")
    assert rc == 0, out[-4000:]
    # The images of a Hub dataset are decoded by the scan, and counted.
    assert "data check: 4 rows in 1 source, 4 images" in out, out
    rc, out = run_vtc(["run", "r.vt"], project, hf_home, f"http://127.0.0.1:{port}")
    assert rc == 0, out[-4000:]
    assert "error[" not in out and "Retry" not in out and "thrown while requesting" not in out, out[-4000:]
    # Said once, for the first thing read from the cache (the dataset: the data is read before the model).
    assert out.count("note: the Hugging Face Hub cannot be reached") == 1, out[-4000:]
    assert f"http://127.0.0.1:{port} refused the connection" in out
    assert "dataset vtctest/shapes comes from the local Hugging Face cache" in out
    assert "Using the latest cached version" not in out  # datasets' own warning: the note says it
    assert "finished:" in out


class _Hub(http.server.BaseHTTPRequestHandler):
    """A Hub that answers: its front page, and "no such repository" (as the real Hub says it) for the rest."""

    status = 200

    def do_HEAD(self):
        if self.path == "/":
            self.send_response(self.status)
        else:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


@pytest.fixture
def local_hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_reachable_hub_is_asked_and_an_unknown_model_is_not_found(project, local_hub):
    (project / "r.vt").write_text(RECIPE.format(model="vtctest/no-such-vl", data="./shapes"))
    rc, out = run_vtc(["run", "r.vt"], project, project / "hf", local_hub)
    assert rc == 1, out[-4000:]
    assert_one_clean_error(out, "VT503")
    assert "cannot be reached" not in out
    assert "model vtctest/no-such-vl was not found on the Hugging Face Hub" in out


class _ServingHub(http.server.BaseHTTPRequestHandler):
    """A Hub that serves one model repository from a folder, as the real one answers huggingface_hub: a file by
    `/<repo>/resolve/<revision>/<file>` (with its ETag and the commit), an empty listing for the tree API, and
    "no such file" (X-Error-Code: EntryNotFound) for the files the repository lacks."""

    repo = "vtctest/served-qwen2.5-vl"
    folder: Path

    def _answer(self, body: bool) -> None:
        import hashlib

        path = self.path.split("?")[0]
        prefix = f"/{self.repo}/resolve/"
        if path.startswith(f"/api/models/{self.repo}/tree/"):
            data = b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        elif path.startswith(prefix) and (self.folder / path[len(prefix):].split("/", 1)[-1]).is_file():
            data = (self.folder / path[len(prefix):].split("/", 1)[-1]).read_bytes()
            self.send_response(200)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", COMMIT)
        else:
            data = b""
            self.send_response(200 if path == "/" else 404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(False)

    def do_GET(self):
        self._answer(True)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_a_first_download_not_on_a_terminal_prints_no_bar(project):
    """A model downloaded from a (local) Hub during `vtc run`, its output not a terminal: the download goes through
    vtc's plain progress lines (progress.hub_download_lines; a line each tenth of a download that lasts over 2 s, see
    test_progress), not through the Hub's bar with its carriage returns, which TQDM_POSITION=-1 would otherwise
    force on; transformers' own bars (weight loading) stay quiet."""
    from vtc.runtime.tiny_models import ensure_tiny_model

    _ServingHub.folder = ensure_tiny_model("tiny-qwen2.5-vl")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ServingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (project / "r.vt").write_text(RECIPE.format(model=_ServingHub.repo, data="./shapes"))
        rc, out = run_vtc(["run", "r.vt"], project, project / "hf", f"http://127.0.0.1:{server.server_address[1]}",
                          TQDM_POSITION="-1")
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 0, out[-4000:]
    assert (project / "hf" / "hub" / "models--vtctest--served-qwen2.5-vl" / "snapshots" / COMMIT).is_dir()
    assert "\r" not in out and "model.safetensors:" not in out, out[-4000:]
    assert "Loading weights" not in out and "note: the Hugging Face Hub cannot be reached" not in out


# ---- the probe, in this process, against local servers ----------------------------------------------------------

def _fresh_probe(monkeypatch):
    """vtc.runtime.hub with nothing probed yet, and this process not offline (the suite sets HF_HUB_OFFLINE)."""
    import huggingface_hub.constants as hc

    from vtc.runtime import hub

    monkeypatch.setattr(hub, "_probed", {})
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    return hub


def test_probe_answers(monkeypatch, local_hub):
    hub = _fresh_probe(monkeypatch)
    assert hub._probe(local_hub) is None
    monkeypatch.setattr(_Hub, "status", 503)
    assert hub._probe(local_hub) == f"{local_hub} answered HTTP 503 (the Hub, or a proxy on the way, is unavailable)"


def test_probe_refused_and_silent(monkeypatch):
    hub = _fresh_probe(monkeypatch)
    port = closed_port()
    assert hub._probe(f"http://127.0.0.1:{port}").startswith(f"http://127.0.0.1:{port} refused the connection")
    # A server that accepts the connection and never answers: the probe gives up after PROBE_TIMEOUT.
    monkeypatch.setattr(hub, "PROBE_TIMEOUT", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert hub._probe(url) == f"{url} did not answer within 0.5 s"


def test_probe_hides_credentials_in_the_endpoint(monkeypatch):
    hub = _fresh_probe(monkeypatch)
    port = closed_port()
    said = hub._probe(f"http://user:secret@127.0.0.1:{port}")
    assert "secret" not in said and f"http://127.0.0.1:{port}" in said


def test_user_offline_is_not_probed(monkeypatch):
    import huggingface_hub.constants as hc

    hub = _fresh_probe(monkeypatch)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "_went_offline", False)
    assert hub.unreachable() == "HF_HUB_OFFLINE is set"
    assert hub._probed == {}


def test_in_process_vt503_with_the_network_off(tmp_path, monkeypatch):
    """resolve_model_path in this process (HF_HUB_OFFLINE=1, an empty cache): VT503 at once, nothing loaded."""
    import huggingface_hub.constants as hc

    from runtime_helpers import make_plan
    from vtc.diagnostics import VtcError
    from vtc.runtime.model_path import resolve_model_path

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    make_shapes(tmp_path / "shapes", n=4)
    plan = make_plan(tmp_path / "shapes", model="vtctest/qwen2.5-vl-not-cached")
    with pytest.raises(VtcError) as caught:
        resolve_model_path(plan)
    [d] = caught.value.diagnostics
    assert d.code == "VT503" and "HF_HUB_OFFLINE is set" in d.message
    assert "hf download vtctest/qwen2.5-vl-not-cached" in d.help


def test_download_bars_stay_on_and_training_bars_go_off(monkeypatch):
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from huggingface_hub.utils import tqdm as hub_tqdm
    from transformers.utils import logging as hf_logging

    from vtc.runtime.progress import quiet_libraries

    monkeypatch.delenv("VTC_DEBUG", raising=False)
    enable_progress_bars()
    hf_logging.enable_progress_bar()
    with quiet_libraries():
        assert not hf_logging.is_progress_bar_enabled()  # weight loading, checkpoint shards: quiet
        assert not are_progress_bars_disabled()  # the Hub's download bars: shown
        bar = hub_tqdm(total=3, disable=False)
        assert not bar.disable
        bar.close()
    assert hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()


def test_the_download_command_in_the_advice_is_quoted_for_a_shell():
    """A dataset name from a stranger's recipe: the `hf download` command printed for pasting runs no substitution."""
    import re
    import shlex

    from vtc.runtime.hub import what_to_do

    advice = what_to_do("a/$(touch PWNED)", dataset=True)
    command = re.search(r"`(hf download [^`]*)`", advice).group(1)
    assert shlex.split(command) == ["hf", "download", "a/$(touch PWNED)", "--repo-type", "dataset", "--local-dir",
                                    "$(touch PWNED)"]
