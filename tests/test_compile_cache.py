"""The warm start (vtc/runtime/compile_cache.py): the Unsloth backend's compiled code goes into vtc's cache folder,
keyed by the library versions, set before `import unsloth` and again after it (Unsloth removes
TORCHINDUCTOR_CACHE_DIR when imported); a user's own settings win; the manifest says warm or cold; `vtc cache` shows
and clears it. Without a GPU: the backend module is imported over a stand-in `unsloth` package that records the
environment at its import and removes TORCHINDUCTOR_CACHE_DIR as the real one does; torch.compile on the CPU shows
Inductor's cache missed by a first process and hit by a second one started from another folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from vtc.runtime import compile_cache as CC

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = ("UNSLOTH_COMPILE_LOCATION", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "UNSLOTH_MEGA_CACHE_DIR")

# A stand-in for unsloth: records the environment when imported, then removes TORCHINDUCTOR_CACHE_DIR as
# unsloth_zoo.patching_utils.patch_torch_compile does (unsloth 2026.10.9), and offers the two names the backend
# imports.
FAKE_UNSLOTH = textwrap.dedent('''
    import json, os
    VARIABLES = %r
    with open(os.environ["FAKE_UNSLOTH_RECORD"], "w") as f:
        json.dump({v: os.environ.get(v) for v in VARIABLES + ("UNSLOTH_MEGA_CACHE",)}, f)
    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)

    class FastVisionModel:
        pass
''' % (VARIABLES,))

# Imports the real backend module the way `vtc run` does (choose_backend -> load_backend), then prints what it saw.
# With an argument: torch.compile a small function on the CPU afterwards and print Inductor's cache counters.
DRIVER = textwrap.dedent('''
    import json, os, sys
    from vtc.runtime.backends.base import load_backend
    be = load_backend("unsloth")
    from vtc.runtime import compile_cache as CC
    out = {"after": {v: os.environ.get(v) for v in %r}, "notes": be.notes, "record": CC.manifest_record("unsloth"),
           "torch_imported": "torch" in sys.modules}
    if len(sys.argv) > 1:
        import torch
        from torch._dynamo.utils import counters
        def f(x):
            return torch.sin(x) * 2 + x.cos()
        torch.compile(f)(torch.randn(8))
        out["inductor"] = {k: v for k, v in counters["inductor"].items() if k.startswith("fxgraph")}
    print("RESULT " + json.dumps(out))
''' % (VARIABLES,))


@pytest.fixture
def fake_unsloth(tmp_path):
    site = tmp_path / "fake-site"
    (site / "unsloth").mkdir(parents=True)
    (site / "unsloth" / "__init__.py").write_text(FAKE_UNSLOTH)
    (site / "unsloth" / "trainer.py").write_text("class UnslothVisionDataCollator:\n    pass\n")
    return site


def drive(site: Path, cwd: Path, cache: Path, *args: str, **env_extra) -> tuple[dict, dict]:
    """Run DRIVER in a fresh process from ``cwd`` with VTC_CACHE=``cache``: (what the stand-in saw at import, what
    the driver printed)."""
    cwd.mkdir(parents=True, exist_ok=True)
    record = cwd / "at-import.json"
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES + ("TRITON_HOME", "UNSLOTH_MEGA_CACHE")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT / "src")]), VTC_CACHE=str(cache),
               FAKE_UNSLOTH_RECORD=str(record), HF_HUB_OFFLINE="1", **env_extra)
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(record.read_text()), json.loads(line[len("RESULT "):])


# ---- the key -----------------------------------------------------------------------------------------------------

MATERIAL = {"layout": 1, "python": "CPython 3.12.3",
            "torch_build": {"__version__": "2.11.0+cu130", "cuda": "13.0", "hip": "None", "git_version": "abc"},
            "packages": {"torch": "2.11.0", "triton": "3.5.0", "transformers": "5.17.0", "trl": "1.15.0",
                         "peft": "0.21.2", "unsloth": "2026.10.9", "unsloth_zoo": "2026.10.9"}}


def _changed(material: dict, path: tuple, value) -> dict:
    out = json.loads(json.dumps(material))
    where = out
    for step in path[:-1]:
        where = where[step]
    where[path[-1]] = value
    return out


def test_the_key_changes_with_every_version_it_is_made_of_and_only_then():
    key = CC.key_of(MATERIAL)
    assert key == CC.key_of(json.loads(json.dumps(MATERIAL))) and len(key) == 16
    changes = [(("packages", name), "0.0.1") for name in CC.KEY_PACKAGES] + [
        (("python",), "CPython 3.13.1"), (("layout",), 2),
        (("torch_build", "cuda"), "12.8"), (("torch_build", "__version__"), "2.11.0+cu128"),
        (("torch_build", "git_version"), "def")]
    keys = {CC.key_of(_changed(MATERIAL, path, value)) for path, value in changes}
    assert key not in keys and len(keys) == len(changes)
    assert CC.key_of(_changed(MATERIAL, ("packages", "unsloth"), None)) != key  # uninstalled is a version too


def test_key_material_reads_the_installed_versions(monkeypatch):
    from importlib import metadata

    material = CC.key_material()
    assert material["packages"]["torch"] == metadata.version("torch")
    assert material["packages"]["transformers"] == metadata.version("transformers")
    assert material["python"].endswith(".".join(map(str, sys.version_info[:3])))
    # A package outside the key (datasets, pillow, vtc itself) changing version leaves the key alone; one inside
    # changes it.
    real = metadata.version

    def fake(name, bump=None):
        return "99.0" if name == bump else real(name)

    monkeypatch.setattr(CC.metadata, "version", lambda name: fake(name, "datasets"))
    assert CC.key_of(CC.key_material()) == CC.key_of(material)
    monkeypatch.setattr(CC.metadata, "version", lambda name: fake(name, "trl"))
    assert CC.key_of(CC.key_material()) != CC.key_of(material)


def test_torch_build_is_read_without_importing_torch():
    import torch

    text = (Path(torch.__file__).parent / "version.py").read_text()
    assert CC.parse_torch_version(text) == {"__version__": torch.version.__version__, "cuda": str(torch.version.cuda),
                                            "hip": str(torch.version.hip), "git_version": torch.version.git_version}
    assert CC.parse_torch_version("cuda: Optional[str] = None\n")["cuda"] == "None"
    proc = subprocess.run([sys.executable, "-c", "import sys; from vtc.runtime import compile_cache as CC; "
                           "m = CC.key_material(); assert m['torch_build']['cuda'] not in ('?', None), m; "
                           "assert 'torch' not in sys.modules and 'unsloth' not in sys.modules; print('ok')"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout.strip() == "ok", proc.stderr


# ---- prepare and after_import, in this process (an environment of their own) -----------------------------------

def test_prepare_points_every_variable_into_the_key_folder_and_finds_it_cold_then_warm(tmp_path):
    env: dict = {}
    cc = CC.prepare(environ=env, root=tmp_path / "compile")
    key = CC.key_of(CC.key_material())
    folder = tmp_path / "compile" / key
    assert cc.folder == folder and cc.key == key and cc.managed
    assert env["UNSLOTH_COMPILE_LOCATION"] == str(folder / "unsloth_compiled_cache")
    assert env["UNSLOTH_MEGA_CACHE_DIR"] == str(folder / "unsloth_mega_cache")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(folder / "inductor")  # its GPU's sub-folder comes after import
    assert env["TRITON_CACHE_DIR"] == str(folder / "triton")
    env.pop("TORCHINDUCTOR_CACHE_DIR")  # as `import unsloth` does
    CC.after_import(cc)
    gpu = cc.gpu
    assert gpu in ("no-gpu", "unknown-gpu") or gpu.endswith(tuple(f"sm{n}" for n in range(10, 130)))
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(folder / "inductor" / gpu)
    assert env["TRITON_CACHE_DIR"] == str(folder / "triton" / gpu)
    assert cc.state == "cold" and cc.record()["state"] == "cold"
    assert any("none yet" in n for n in cc.notes)
    assert json.loads((folder / "key.json").read_text())["made_of"] == cc.made_of
    for path in (tmp_path / "compile", folder, folder / "inductor" / gpu):
        assert (path.stat().st_mode & 0o777) == 0o700, path

    # What a run leaves; the lock folder and the helper Unsloth copies in at import do not count as compiled code.
    (folder / "unsloth_compiled_cache" / ".locks").mkdir()
    (folder / "unsloth_compiled_cache" / "moe_utils.py").write_text("#")
    assert CC.prepare(environ={}, root=tmp_path / "compile").parts["unsloth"]["warm"] is False
    (folder / "unsloth_compiled_cache" / "unsloth_compiled_module_qwen2_5_vl.py").write_text("#")
    (folder / "inductor" / gpu / "fxgraph").mkdir()
    (folder / "inductor" / gpu / "fxgraph" / "entry").write_bytes(b"x")
    again = CC.prepare(environ={}, root=tmp_path / "compile")
    CC.after_import(again)
    assert again.folder == folder
    assert {n: p["warm"] for n, p in again.parts.items()} == {"unsloth": True, "inductor": True, "triton": False,
                                                              "mega": False}
    assert again.state == "partly warm" and any("partly there" in n for n in again.notes)
    (folder / "triton" / gpu / "k").write_bytes(b"x")
    (folder / "unsloth_mega_cache" / "b").mkdir()
    (folder / "unsloth_mega_cache" / "b" / "manifest.json").write_text("{}")
    warm = CC.prepare(environ={}, root=tmp_path / "compile")
    CC.after_import(warm)
    assert warm.state == "warm" and any("reused from earlier runs" in n for n in warm.notes)


def test_a_users_own_settings_win_and_are_set_again_after_unsloth_removes_them(tmp_path):
    mine = str(tmp_path / "my-inductor")
    env = {"TORCHINDUCTOR_CACHE_DIR": mine, "TRITON_HOME": str(tmp_path / "th")}
    cc = CC.prepare(environ=env, root=tmp_path / "compile")
    assert cc.parts["inductor"]["set_by"] == "you" and cc.parts["inductor"]["path"] == mine
    assert cc.parts["triton"]["set_by"] == "you" and "TRITON_CACHE_DIR" not in env  # TRITON_HOME is a choice too
    assert cc.parts["unsloth"]["set_by"] == "vtc" and cc.parts["mega"]["set_by"] == "vtc"
    assert any(f"your TORCHINDUCTOR_CACHE_DIR={mine} is kept" in n for n in cc.notes)
    assert any("your TRITON_HOME=" in n for n in cc.notes)
    env.pop("TORCHINDUCTOR_CACHE_DIR")  # `import unsloth` removes it, the user's value too
    CC.after_import(cc)
    assert env["TORCHINDUCTOR_CACHE_DIR"] == mine and "TRITON_CACHE_DIR" not in env
    assert cc.parts["inductor"]["warm"] is None and cc.state == "cold"  # judged on vtc's parts only

    # All four the user's: vtc keeps no folder, but still sets their value again after the import.
    env = {v: str(tmp_path / v) for v in VARIABLES}
    cc = CC.prepare(environ=env, root=tmp_path / "compile2")
    assert not cc.managed and cc.folder is None and not (tmp_path / "compile2").exists()
    env.pop("TORCHINDUCTOR_CACHE_DIR")
    CC.after_import(cc)
    assert env == {v: str(tmp_path / v) for v in VARIABLES}
    assert cc.record()["state"] == "not managed"


def test_torchs_own_default_is_not_taken_for_a_users_setting(tmp_path):
    # `import torch._dynamo` writes torch's default into the environment when nobody set the variable.
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    env = {"TORCHINDUCTOR_CACHE_DIR": default_cache_dir()}
    cc = CC.prepare(environ=env, root=tmp_path / "compile")
    assert cc.parts["inductor"]["set_by"] == "vtc" and env["TORCHINDUCTOR_CACHE_DIR"].startswith(str(tmp_path))


def test_unsloth_imported_before_vtc_leaves_everything_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))
    env: dict = {}
    cc = CC.prepare(environ=env, root=tmp_path / "compile")
    CC.after_import(cc)
    assert env == {} and not cc.managed and not (tmp_path / "compile").exists()
    assert "imported before vtc" in cc.reason and cc.record()["state"] == "not managed"


def test_a_folder_that_cannot_be_made_is_VT544_and_the_run_compiles_in_a_temporary_folder(tmp_path, capsys):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    env: dict = {}
    cc = CC.prepare(environ=env, root=blocker / "compile")
    CC.after_import(cc)
    assert [d.code for d in cc.problems] == ["VT544"] and cc.problems[0].severity.value == "warning"
    assert "goes to a temporary folder this run" in cc.problems[0].message
    assert "VTC_CACHE" in cc.problems[0].help
    assert cc.state == "temporary" and cc.temporary is not None and cc.temporary.is_dir()
    for v in VARIABLES:
        assert env[v].startswith(str(cc.temporary)), v  # never the working folder
    assert env["UNSLOTH_MEGA_CACHE"] == "0"  # no bundle saved at exit into a folder removed at exit
    assert "warning[VT544]" in capsys.readouterr().err
    assert cc.record()["problems"][0]["code"] == "VT544"
    assert any("temporary folder this run (VT544)" in n for n in cc.notes)


def test_a_folder_others_can_write_into_is_VT545_and_not_used(tmp_path, capsys):
    root = tmp_path / "compile"
    root.mkdir()
    os.chmod(root, 0o777)
    planted = root / CC.key_of(CC.key_material()) / "unsloth_compiled_cache"
    planted.mkdir(parents=True)
    env: dict = {}
    cc = CC.prepare(environ=env, root=root)
    assert [d.code for d in cc.problems] == ["VT545"] and "not private" in cc.problems[0].message
    assert "others can write into it" in cc.problems[0].message and "delete" in cc.problems[0].help
    assert env["UNSLOTH_COMPILE_LOCATION"] != str(planted) and cc.state == "temporary"
    assert "warning[VT545]" in capsys.readouterr().err
    # A key folder of its own that others can write into: the same.
    os.chmod(root, 0o700)
    os.chmod(root / cc.key, 0o777)
    again = CC.prepare(environ={}, root=root)
    assert [d.code for d in again.problems] == ["VT545"] and "vtc cache clear compiled" in again.problems[0].help


def test_runs_at_once_with_the_same_key_share_the_folder(tmp_path):
    code = ("import sys, json; from pathlib import Path; from vtc.runtime import compile_cache as CC; "
            "cc = CC.prepare(environ={}, root=Path(sys.argv[1])); print(json.dumps([str(cc.folder), cc.state, "
            "[d.code for d in cc.problems]]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "compile")], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert len({r[0] for r in results}) == 1 and all(r[2] == [] for r in results)
    folder = Path(results[0][0])
    assert json.loads((folder / "key.json").read_text())["key"] == folder.name
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---- through the real backend module, in a process of its own -------------------------------------------------

def test_the_backend_sets_the_variables_before_import_unsloth_and_again_after(tmp_path, fake_unsloth):
    cache = tmp_path / "cache"
    at_import, out = drive(fake_unsloth, tmp_path / "work", cache)
    key = out["record"]["key"]
    folder = cache / "compile" / key
    assert at_import == {"UNSLOTH_COMPILE_LOCATION": str(folder / "unsloth_compiled_cache"),
                         "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
                         "TRITON_CACHE_DIR": str(folder / "triton"),
                         "UNSLOTH_MEGA_CACHE_DIR": str(folder / "unsloth_mega_cache"),
                         "UNSLOTH_MEGA_CACHE": None}
    gpu = out["record"]["gpu"]
    assert out["after"]["TORCHINDUCTOR_CACHE_DIR"] == str(folder / "inductor" / gpu)  # set again after the pop
    assert out["after"]["TRITON_CACHE_DIR"] == str(folder / "triton" / gpu)
    assert out["record"]["state"] == "cold" and out["record"]["folder"] == str(folder)
    assert any(n.startswith("compiled code: none yet") for n in out["notes"])
    assert not any("imported before unsloth" in n for n in out["notes"])
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["at-import.json"]  # nothing in the work folder


def test_the_backend_keeps_a_users_own_inductor_folder(tmp_path, fake_unsloth):
    mine = str(tmp_path / "my-inductor")
    at_import, out = drive(fake_unsloth, tmp_path / "work", tmp_path / "cache", TORCHINDUCTOR_CACHE_DIR=mine)
    assert at_import["TORCHINDUCTOR_CACHE_DIR"] == mine and out["after"]["TORCHINDUCTOR_CACHE_DIR"] == mine
    assert at_import["UNSLOTH_COMPILE_LOCATION"].startswith(str(tmp_path / "cache"))
    assert out["record"]["parts"]["inductor"]["set_by"] == "you"
    assert any(f"your TORCHINDUCTOR_CACHE_DIR={mine} is kept" in n for n in out["notes"])


def test_the_transformers_backend_leaves_the_variables_alone(tmp_path):
    code = ("import json, os; from vtc.runtime.backends.base import load_backend; load_backend('transformers'); "
            "from vtc.runtime import compile_cache as CC; "
            "print(json.dumps([{v: os.environ.get(v) for v in %r}, CC.current() is None, "
            "CC.manifest_record('transformers')]))" % (VARIABLES,))
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(PYTHONPATH=str(ROOT / "src"), VTC_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    seen, no_record, record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {v: None for v in VARIABLES} and no_record and not (tmp_path / "cache" / "compile").exists()
    assert record["state"] == "not used" and "does not compile" in record["reason"]


@pytest.mark.slow
def test_a_second_run_from_another_folder_hits_inductors_cache(tmp_path, fake_unsloth):
    """torch.compile on the CPU (Inductor's C++ backend) through the backend's import path: the first process
    compiles (an FX graph cache miss), the second, started from another folder, finds the graph in vtc's folder."""
    pytest.importorskip("torch")
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("Inductor's CPU backend needs a C++ compiler")
    cache = tmp_path / "cache"
    _, first = drive(fake_unsloth, tmp_path / "one", cache, "compile")
    _, second = drive(fake_unsloth, tmp_path / "two", cache, "compile")
    assert first["inductor"].get("fxgraph_cache_miss", 0) >= 1 and not first["inductor"].get("fxgraph_cache_hit")
    assert second["inductor"].get("fxgraph_cache_hit", 0) >= 1 and not second["inductor"].get("fxgraph_cache_miss")
    assert first["record"]["parts"]["inductor"]["warm"] is False
    assert second["record"]["parts"]["inductor"]["warm"] is True
    inductor = Path(second["record"]["parts"]["inductor"]["path"])
    assert inductor.parent.parent == cache / "compile" / second["record"]["key"]
    assert (inductor / "fxgraph").is_dir()


# ---- the manifest ------------------------------------------------------------------------------------------------

def _start_run(tmp_path, backend: str, monkeypatch):
    from runtime_helpers import make_plan, make_shapes

    from vtc.runtime import lifecycle as L
    from vtc.runtime.progress import Reporter
    from vtc.runtime.validate import validate_for_run

    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "images"))
    plan = make_plan(make_shapes(tmp_path / "train", n=4), steps=1, outputs_dir=tmp_path / "runs")
    be = types.SimpleNamespace(name=backend, notes=[])
    run_dir, manifest = L.start(plan, str(tmp_path / "test.vt"), None, be, f"backend: {backend}", time.time(),
                                "tiny", validate_for_run(plan), Reporter(io.StringIO()))
    return json.loads((run_dir / "manifest.json").read_text())


def test_the_manifest_records_the_folder_and_whether_it_was_warm(tmp_path, monkeypatch):
    cold = CC.prepare(environ={}, root=tmp_path / "compile")
    CC.after_import(cold)
    monkeypatch.setattr(CC, "_CURRENT", cold)
    record = _start_run(tmp_path / "a", "unsloth", monkeypatch)["compile_cache"]
    assert record["state"] == "cold" and record["folder"] == str(cold.folder) and record["key"] == cold.key
    assert record["parts"]["inductor"]["path"] == str(cold.folder / "inductor" / cold.gpu)
    assert record["made_of"]["packages"] == cold.made_of["packages"]

    for name in CC.PARTS:
        path = Path(cold.parts[name]["path"])
        (path / "compiled.bin").write_bytes(b"x")
    warm = CC.prepare(environ={}, root=tmp_path / "compile")
    CC.after_import(warm)
    monkeypatch.setattr(CC, "_CURRENT", warm)
    assert _start_run(tmp_path / "b", "unsloth", monkeypatch)["compile_cache"]["state"] == "warm"
    # The transformers backend compiles nothing: its manifest says so, whatever this process prepared before.
    record = _start_run(tmp_path / "c", "transformers", monkeypatch)["compile_cache"]
    assert record == {"state": "not used", "reason": CC.manifest_record("transformers")["reason"]}


# ---- `vtc cache` -------------------------------------------------------------------------------------------------

def test_vtc_cache_shows_the_compiled_code_and_clears_what_no_run_uses(tmp_path, monkeypatch):
    from vtc.cli import cli

    monkeypatch.setenv("VTC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "images"))
    runner = CliRunner()
    assert "none yet" in runner.invoke(cli, ["cache"]).output

    root = CC.compile_root()
    assert root == tmp_path / "cache" / "compile"
    cc = CC.prepare(environ={}, root=root)
    CC.after_import(cc)
    (Path(cc.parts["inductor"]["path"]) / "graph").write_bytes(b"x" * 2048)
    old = root / "0123456789abcdef"  # a folder of other library versions, from no running run
    (old / "unsloth_compiled_cache").mkdir(parents=True)
    (old / "unsloth_compiled_cache" / "m.py").write_bytes(b"y" * 1000)

    shown = runner.invoke(cli, ["cache"])
    assert shown.exit_code == 0, shown.output
    assert f"{cc.key}: 2.0 KiB, 1 file" in shown.output and "these libraries" in shown.output
    assert "in use by a run now" in shown.output  # this process holds it (prepare)
    assert f"torch {cc.made_of['torch_build']['__version__']}" in shown.output and cc.gpu in shown.output
    assert "0123456789abcdef: 1,000 bytes, 1 file" in shown.output and "unknown versions" in shown.output

    # `vtc cache clear` alone clears the images only, as before.
    assert "removed 0 cached images" in runner.invoke(cli, ["cache", "clear"]).output
    assert old.is_dir()
    cleared = runner.invoke(cli, ["cache", "clear", "compiled"])
    assert cleared.exit_code == 0, cleared.output
    assert "removed 1 compiled-code folder (1,000 bytes)" in cleared.output
    assert f"kept {cc.folder}: a running run uses it" in cleared.output
    assert not old.exists() and cc.folder.is_dir()

    # Once no process holds it, it goes too.
    for fd in list(CC._IN_USE_FDS):
        os.close(fd)
        CC._IN_USE_FDS.remove(fd)
    size = 2048 + (cc.folder / "key.json").stat().st_size  # the parts and key.json (.in-use is empty)
    assert CC.clear(root) == (1, size, []) and not cc.folder.exists()
    assert "removed 0 cached images" in runner.invoke(cli, ["cache", "clear", "all"]).output


def test_vtc_cache_imports_no_torch(tmp_path):
    code = ("import sys\nfrom vtc.cli import cli\ntry:\n    cli(['cache'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('no torch')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "VTC_CACHE": str(tmp_path)})
    assert "no torch" in proc.stdout, proc.stderr


REAL = textwrap.dedent('''
    import json, os, sys
    import torch  # as choose_backend does, before the backend module
    from vtc.runtime.backends.base import load_backend
    be = load_backend("unsloth")
    import unsloth_zoo.compiler
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    from vtc.runtime import compile_cache as CC
    print("RESULT " + json.dumps({"zoo_location": unsloth_zoo.compiler.UNSLOTH_COMPILE_LOCATION,
                                  "inductor": cache_dir(), "triton": os.environ.get("TRITON_CACHE_DIR"),
                                  "record": CC.manifest_record("unsloth"), "notes": be.notes}))
''')


def test_with_the_real_unsloth_its_compiled_code_and_torchs_cache_go_to_vtcs_folder(tmp_path):
    """Runs where unsloth is installed (the GPU machine; elsewhere: PYTHONPATH=<its site> and UNSLOTH_ALLOW_CPU=1
    let it import without a GPU): the real `import unsloth` reads vtc's UNSLOTH_COMPILE_LOCATION and, having removed
    TORCHINDUCTOR_CACHE_DIR, gets it back."""
    import importlib.util

    if importlib.util.find_spec("unsloth") is None:
        pytest.skip("unsloth is not installed here")
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES + ("TRITON_HOME", "UNSLOTH_MEGA_CACHE")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT / "src")) if p),
               VTC_CACHE=str(cache), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", REAL], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    record = out["record"]
    folder = cache / "compile" / record["key"]
    assert out["zoo_location"] == str(folder / "unsloth_compiled_cache")
    assert out["inductor"] == str(folder / "inductor" / record["gpu"])
    assert out["triton"] == str(folder / "triton" / record["gpu"])
    assert record["state"] == "cold" and any(n.startswith("compiled code: none yet") for n in out["notes"])
    assert not (work / "unsloth_compiled_cache").exists()  # nothing in the working folder
