"""`vtc diff` (src/vtc/diff.py, docs/diff.md): two recipes, git revisions, plans and run folders; the three output
forms; the exit codes; git's diff driver (`vtc diff --textconv`) in a real repository."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from vtc import diff as D
from vtc.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = (ROOT / "recipes" / "demo-shapes.vt").read_text(encoding="utf-8")
BASE = "batch 8\nlearning rate 1e-4\n"
MAIN = 'include "base.vt"\nfinetune all on tiny-qwen2.5-vl\nfrom ./data\nask "What colour?"\n'


def vtc(*args, cwd=None):
    """`vtc ARGS` in this process (codes raised here count for tests/test_zz_every_code_raised.py)."""
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)
    return result


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env, check=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path):
    """A git repository with r/main.vt including r/base.vt, committed once."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root, "r/base.vt", BASE)
    write(root, "r/main.vt", MAIN)
    git(root, "add", ".")
    git(root, "commit", "-qm", "one")
    return root


# ---- two files ---------------------------------------------------------------------------------------------------

def test_a_changed_value_its_sources_and_what_it_means(tmp_path):
    write(tmp_path, "a.vt", DEMO)
    write(tmp_path, "b.vt", DEMO.replace("train for 80 steps", "train for 120 steps")
          .replace("resize 112 ", "resize 224 ").replace("finetune all", "finetune vision"))
    out = vtc("diff", "a.vt", "b.vt", "--format", "json", cwd=tmp_path)
    assert out.exit_code == 1
    result = json.loads(out.stdout)
    changes = {c["pointer"]: c for c in result["changes"]}
    assert changes["/training/steps"] == {"pointer": "/training/steps", "old": 80, "new": 120,
                                          "old_source": "a.vt:12", "new_source": "b.vt:12"}
    assert changes["/images/resize/size"]["old"] == 112 and changes["/images/resize/size"]["new"] == 224
    assert changes["/parts/language"]["old"] is True and changes["/parts/language"]["new"] is False
    assert not any(p.startswith("/estimates") for p in changes)  # estimates are the impact's
    assert result["moved"] == []  # a.vt and b.vt are the same recipe, changed: nothing moved
    impact = {i["what"]: i for i in result["impact"]}
    assert impact["image tokens per image"] == {"what": "image tokens per image", "old": 16, "new": 64, "ratio": 4.0}
    assert impact["trainable parameters"]["new"] < impact["trainable parameters"]["old"]
    assert impact["training length"]["new"] == "120 steps of 4 examples"
    assert "GPU memory (GiB)" not in impact or impact["GPU memory (GiB)"]["old"] != impact["GPU memory (GiB)"]["new"]
    assert result["diff_version"] == D.DIFF_VERSION and result["old"] == {"label": "a.vt", "kind": "recipe"}

    text = vtc("diff", "a.vt", "b.vt", cwd=tmp_path).stdout
    assert "training/steps" in text and "80 -> 120" in text and "(a.vt:12 -> b.vt:12)" in text
    assert "image tokens per image           16 -> 64 (x4)" in text
    md = vtc("diff", "a.vt", "b.vt", "--format", "markdown", cwd=tmp_path).stdout
    assert md.startswith("### vtc diff: `a.vt` → `b.vt`")
    assert "| `training/steps` | 80 | 120 | a.vt:12 → b.vt:12 |" in md and "**Impact**" in md


def test_only_comments_and_layout_changed_is_no_change(tmp_path):
    write(tmp_path, "a.vt", DEMO)
    # A comment line more (every clause one line lower), other spacing, a comment edited.
    write(tmp_path, "b.vt", "# a new first line\n" + DEMO.replace("batch 4 ", "batch   4 ").replace("tiny CPU", "CPU"))
    out = vtc("diff", "a.vt", "b.vt", cwd=tmp_path)
    assert out.exit_code == 0 and "no change for the run" in out.stdout
    assert "changes" not in out.stdout and "impact" not in out.stdout
    result = json.loads(vtc("diff", "a.vt", "b.vt", "--format", "json", cwd=tmp_path).stdout)
    assert result["changes"] == [] and result["moved"] == [] and result["impact"] == []
    assert "No change for the run." in vtc("diff", "a.vt", "b.vt", "--format", "markdown", cwd=tmp_path).stdout


def test_a_value_moved_into_an_include_is_the_same_value_set_elsewhere(tmp_path):
    write(tmp_path, "base.vt", BASE)
    write(tmp_path, "old.vt", MAIN.replace('include "base.vt"\n', "") + "batch 8\nlearning rate 2e-4\n")
    write(tmp_path, "new.vt", MAIN)
    result = json.loads(vtc("diff", "old.vt", "new.vt", "--format", "json", cwd=tmp_path).stdout)
    moved = {m["pointer"]: m for m in result["moved"]}
    assert moved["/training/batch"] == {"pointer": "/training/batch", "value": 8, "old_source": "old.vt:4",
                                        "new_source": "base.vt:1"}
    lr = next(c for c in result["changes"] if c["pointer"] == "/training/learning_rate")
    assert (lr["old"], lr["new"], lr["old_source"], lr["new_source"]) == (2e-4, 1e-4, "old.vt:5", "base.vt:2")
    text = vtc("diff", "old.vt", "new.vt", cwd=tmp_path).stdout
    assert "now from base.vt:1 (was old.vt:4)" in text


def test_a_default_written_out_changes_nothing_for_the_run(tmp_path):
    write(tmp_path, "a.vt", DEMO)
    write(tmp_path, "b.vt", DEMO + "seed 3407\n")  # the default seed, now written
    out = vtc("diff", "a.vt", "b.vt", "--format", "json", cwd=tmp_path)
    result = json.loads(out.stdout)
    assert out.exit_code == 0 and result["changes"] == []
    assert result["moved"] == [{"pointer": "/training/seed", "value": 3407, "old_source": "default",
                                "new_source": "b.vt:20"}]


def test_output_is_deterministic(tmp_path):
    write(tmp_path, "a.vt", DEMO)
    write(tmp_path, "b.vt", DEMO.replace("batch 4", "batch 2"))
    for form in ("text", "markdown", "json"):
        first = vtc("diff", "a.vt", "b.vt", "--format", form, cwd=tmp_path).stdout
        assert first == vtc("diff", "a.vt", "b.vt", "--format", form, cwd=tmp_path).stdout


def test_a_saved_plan_against_its_recipe(tmp_path):
    write(tmp_path, "a.vt", DEMO)
    assert vtc("plan", "a.vt", "-o", "a.json", cwd=tmp_path).exit_code == 0
    out = vtc("diff", "a.json", "a.vt", cwd=tmp_path)  # its inputs fingerprints are not a change
    assert out.exit_code == 0 and "no change for the run" in out.stdout
    write(tmp_path, "b.vt", DEMO.replace("learning rate 2e-3", "learning rate 1e-3"))
    out = vtc("diff", "a.json", "b.vt", "--format", "json", cwd=tmp_path)
    assert out.exit_code == 1
    assert json.loads(out.stdout)["old"] == {"label": "a.json", "kind": "plan"}


# ---- errors: exit 2 and the diagnostics ----------------------------------------------------------------------------

def test_a_side_that_does_not_compile_gives_its_diagnostics_and_exit_2(tmp_path):
    write(tmp_path, "a.vt", DEMO)
    write(tmp_path, "b.vt", DEMO.replace("learning rate 2e-3", "lerning rate 2e-3"))
    out = vtc("diff", "a.vt", "b.vt", cwd=tmp_path)
    assert out.exit_code == 2 and out.stdout == ""
    assert "--> b.vt:14:1" in out.stderr and "error[VT0" in out.stderr
    out = vtc("diff", "a.vt", "b.vt", "--format", "json", cwd=tmp_path)
    assert out.exit_code == 2
    found = json.loads(out.stdout)
    assert {d["span"]["file"] for d in found} == {"b.vt"}
    assert any(d["severity"] == "error" and d["span"]["line"] == 14 for d in found)


def test_missing_files_and_bad_plans(tmp_path):
    write(tmp_path, "a.vt", DEMO)
    out = vtc("diff", "a.vt", "nothere.vt", cwd=tmp_path)
    assert out.exit_code == 2 and "error[VT301]: no such file: nothere.vt" in out.stderr
    write(tmp_path, "p.json", "{not json")
    out = vtc("diff", "p.json", "a.vt", cwd=tmp_path)
    assert out.exit_code == 2 and "error[VT510]" in out.stderr
    write(tmp_path, "q.json", '{"a": 1}')
    assert "is not a vtc plan" in vtc("diff", "q.json", "a.vt", cwd=tmp_path).stderr
    (tmp_path / "folder").mkdir()
    out = vtc("diff", "folder", "a.vt", cwd=tmp_path)
    assert out.exit_code == 2 and "error[VT561]" in out.stderr
    out = vtc("diff", "a.vt", cwd=tmp_path)
    assert out.exit_code == 2 and "give two sides" in out.stderr


# ---- git revisions -----------------------------------------------------------------------------------------------

def test_a_revision_is_compiled_with_its_own_includes(repo):
    # The include changed in the working tree only: HEAD's recipe must read HEAD's base.vt.
    write(repo, "r/base.vt", BASE.replace("1e-4", "3e-4"))
    for args, cwd in ((("HEAD", "r/main.vt"), repo), (("HEAD", "main.vt"), repo / "r"),
                      (("HEAD:r/main.vt", "r/main.vt"), repo), (("HEAD:./main.vt", "main.vt"), repo / "r")):
        out = vtc("diff", *args, "--format", "json", cwd=cwd)
        assert out.exit_code == 1, (args, out.stderr)
        result = json.loads(out.stdout)
        assert [(c["pointer"], c["old"], c["new"], c["old_source"], c["new_source"]) for c in result["changes"]] == [
            ("/training/learning_rate", 1e-4, 3e-4, "base.vt:2", "base.vt:2")], args
        assert result["old"]["kind"] == "revision"
    # Two revisions: committed, then compared with REV:path on both sides.
    git(repo, "commit", "-qam", "two")
    out = vtc("diff", "HEAD~1:r/main.vt", "HEAD:r/main.vt", cwd=repo)
    assert out.exit_code == 1 and "0.0001 -> 0.0003" in out.stdout
    assert vtc("diff", "HEAD", "r/main.vt", cwd=repo).exit_code == 0  # nothing changed since HEAD


def test_revision_errors(repo, tmp_path):
    out = vtc("diff", "mian:r/main.vt", "r/main.vt", cwd=repo)
    assert out.exit_code == 2 and "error[VT575]: unknown git revision `mian`" in out.stderr
    out = vtc("diff", "HEAD~4", "r/main.vt", cwd=repo)
    assert "error[VT575]: unknown git revision `HEAD~4`" in out.stderr
    assert "error[VT575]" in vtc("diff", "--", "-p:r/main.vt", "r/main.vt", cwd=repo).stderr  # never an option of git's
    out = vtc("diff", "HEAD:main.vt", "r/main.vt", cwd=repo)
    assert "error[VT576]: HEAD:main.vt: there is no file main.vt in HEAD" in out.stderr
    assert "error[VT576]" in vtc("diff", "HEAD:../x.vt", "r/main.vt", cwd=repo).stderr
    assert "error[VT576]" in vtc("diff", "HEAD:r", "r/main.vt", cwd=repo).stderr  # a folder there
    out = vtc("diff", "HEAD", "HEAD", cwd=repo)
    assert out.exit_code == 2 and "error[VT577]" in out.stderr
    outside = tmp_path / "plain"
    write(outside, "a.vt", DEMO)
    out = vtc("diff", "HEAD:a.vt", "a.vt", cwd=outside)
    assert out.exit_code == 2 and "error[VT574]" in out.stderr and "is not inside a git repository" in out.stderr


def test_a_revision_that_does_not_compile_names_the_revision(repo):
    write(repo, "r/main.vt", MAIN.replace("ask", "aks"))
    git(repo, "commit", "-qam", "broken")
    out = vtc("diff", "HEAD:r/main.vt", "HEAD~1:r/main.vt", cwd=repo)
    assert out.exit_code == 2 and "--> HEAD:r/main.vt:4:1" in out.stderr
    (repo / "r" / "bin.vt").write_bytes(b"finetune all on tiny\xff\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "not UTF-8")
    out = vtc("diff", "HEAD:r/bin.vt", "HEAD~1:r/main.vt", cwd=repo)
    assert out.exit_code == 2 and "--> HEAD:r/bin.vt:1:21" in out.stderr and "not valid UTF-8" in out.stderr


def test_includes_from_a_revision_keep_the_confinement_rule(repo):
    write(repo, "r/main.vt", 'include "../../outside.vt"\n' + MAIN)
    write(repo, "r/other.vt", 'include "notes.txt"\n' + MAIN)
    write(repo, "r/notes.txt", "batch 2\n")
    os.symlink("base.vt", repo / "r" / "link.vt")
    write(repo, "r/linked.vt", 'include "link.vt"\n' + MAIN.replace('include "base.vt"\n', ""))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "hostile")
    out = vtc("diff", "HEAD:r/main.vt", "r/main.vt", cwd=repo)
    assert out.exit_code == 2 and "error[VT306]" in out.stderr and "leads outside" in out.stderr
    assert "error[VT306]" in vtc("diff", "HEAD:r/other.vt", "r/main.vt", cwd=repo).stderr
    out = vtc("diff", "HEAD:r/linked.vt", "r/main.vt", cwd=repo)
    assert "error[VT303]" in out.stderr and "not a regular file" in out.stderr


# ---- git's diff driver ---------------------------------------------------------------------------------------------

def test_textconv_prints_every_value_and_its_origin_without_line_numbers(tmp_path):
    write(tmp_path, "base.vt", BASE)
    path = write(tmp_path, "main.vt", MAIN)
    text = D.textconv(str(path))
    assert "training/batch = 8    # base.vt\n" in text and "data/instruction = What colour?    # main.vt\n" in text
    assert "training/seed = 3,407    # default\n" in text
    assert ":" not in text.split("# ")[-1]  # no line numbers
    lines = text.splitlines()[1:]
    assert lines == sorted(lines)
    write(tmp_path, "main.vt", "# a comment\n" + MAIN)
    assert D.textconv(str(path)) == text


def test_textconv_of_a_broken_recipe_prints_its_problems_and_text_and_exits_0(tmp_path):
    path = write(tmp_path, "bad.vt", "finetune all on tiny-qwen2.5-vl\nlerning rate 2e-4\n")
    out = vtc("diff", "--textconv", str(path))
    assert out.exit_code == 0
    assert "# vtc: this recipe does not compile" in out.stdout and "lerning rate 2e-4\n" in out.stdout
    assert "# error[VT0" in out.stdout
    assert vtc("diff", "--textconv", str(tmp_path / "none.vt")).exit_code == 0


def test_git_diff_shows_the_resolved_change(repo):
    """The documented set-up, `*.vt diff=vtc` and diff.vtc.textconv, in a real repository."""
    write(repo, ".gitattributes", "*.vt diff=vtc\n")
    vtc_exe = Path(os.sys.executable).parent / "vtc"
    if not vtc_exe.exists():
        pytest.skip("the vtc script is not installed beside this Python")
    driver = f"diff.vtc.textconv={vtc_exe} diff --textconv"
    write(repo, "r/main.vt", "# a comment only\n" + MAIN)
    assert git(repo, "-c", driver, "diff", "--", "r/main.vt") == ""  # comments: no change in the resolved view
    write(repo, "r/main.vt", MAIN + "batch 16\n")
    shown = git(repo, "-c", driver, "diff", "--", "r/main.vt")
    assert "-training/batch = 8    # base.vt" in shown and "+training/batch = 16    # main.vt" in shown
    assert "+batch 16" not in shown  # the resolved view, not the text


# ---- run folders ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two real tiny runs (CPU, a few seconds each) of the same data with different steps and learning rates."""
    from runtime_helpers import make_plan, make_shapes, write_plan
    from vtc.commands import run_target

    tmp = tmp_path_factory.mktemp("runs")
    train = make_shapes(tmp / "train", n=8, seed=1)
    val = make_shapes(tmp / "val", n=4, seed=2)
    runs = []
    for i, (steps, lr) in enumerate(((2, 2e-3), (4, 1e-3))):
        plan = make_plan(train, eval_dir=val, steps=steps, lr=lr, outputs_dir=tmp / "runs",
                         metrics=("exact_match", "cer"))
        runs.append(run_target(str(write_plan(plan, tmp / f"plan{i}.json")), allow_changed=True))
    return runs


@pytest.mark.slow
def test_two_real_run_folders(two_runs):
    old, new = two_runs
    out = vtc("diff", str(old), str(new), "--format", "json")
    assert out.exit_code == 1
    result = json.loads(out.stdout)
    assert {c["pointer"]: (c["old"], c["new"]) for c in result["changes"]} == {
        "/training/steps": (2, 4), "/training/learning_rate": (2e-3, 1e-3)}
    assert result["old"]["kind"] == "run" and result["lock"] == []  # same libraries, model and data
    evals = [json.loads((run / "eval.json").read_text()) for run in two_runs]
    metrics = {m["metric"]: m for m in result["metrics"]}
    assert set(metrics) == {"exact_match", "cer"}
    for name, m in metrics.items():
        assert m["old"] == {"before": evals[0]["before"][name], "after": evals[0]["after"][name]}
        assert m["new"] == {"before": evals[1]["before"][name], "after": evals[1]["after"][name]}
        assert m["change"] == pytest.approx(evals[1]["after"][name] - evals[0]["after"][name])
    text = vtc("diff", str(old), str(new)).stdout
    assert "metrics" in text and f"{evals[0]['before']['cer']:.3f} -> {evals[0]['after']['cer']:.3f}" in text
    md = vtc("diff", str(old), str(new), "--format", "markdown").stdout
    assert "**Metrics**" in md and "| cer |" in md
    assert vtc("diff", str(old), str(old)).exit_code == 0


@pytest.mark.slow
def test_run_folders_with_other_inputs_and_a_broken_eval(two_runs, tmp_path):
    old, new = two_runs
    edited = tmp_path / "run-009"
    shutil.copytree(new, edited, ignore=shutil.ignore_patterns("adapter", "tensorboard", "*.png"))
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["libraries"]["transformers"] = "0.0.1"
    manifest["data"]["fingerprint"]["sources"]["train"]["sha256"] = "0" * 64
    manifest["data"]["train_rows"] = 99
    (edited / "manifest.json").write_text(json.dumps(manifest))
    (edited / "eval.json").write_text('{"before": ')  # cut short
    out = vtc("diff", str(old), str(edited), "--format", "json")
    assert out.exit_code == 1
    result = json.loads(out.stdout)
    lock = {i["what"]: i for i in result["lock"]}
    assert lock["library transformers"]["new"] == "0.0.1" and lock["train data"]["new"] == "0" * 64
    assert {"what": "training rows", "old": 8, "new": 99, "ratio": 12.375} in result["impact"]
    assert all(m["new"] == {"before": None, "after": None} and m["change"] is None for m in result["metrics"])
    out = vtc("diff", str(old), str(edited))
    assert "warning[VT578]: cannot read" in out.stderr and "eval.json" in out.stderr
    assert "recorded inputs" in out.stdout and "library transformers" in out.stdout


def test_hand_made_run_folders(tmp_path):
    """Edge cases without training: a run folder with no eval.json (a run without evaluation data) against one
    with it, and a folder that is not a run."""
    write(tmp_path, "a.vt", DEMO)
    plan = vtc("plan", "a.vt", "--json", cwd=tmp_path).stdout
    for name, evaluated in (("run-001", False), ("run-002", True)):
        write(tmp_path, f"{name}/plan.json", plan)
        write(tmp_path, f"{name}/manifest.json", json.dumps({"libraries": {"torch": "2.0"}}))
        if evaluated:
            write(tmp_path, f"{name}/eval.json", json.dumps({"before": {"exact_match": 0.25},
                                                             "after": {"exact_match": 0.75}}))
    out = vtc("diff", "run-001", "run-002", "--format", "json", cwd=tmp_path)
    result = json.loads(out.stdout)
    assert out.exit_code == 0 and result["changes"] == [] and result["lock"] == []
    assert result["metrics"] == [{"metric": "exact_match", "old": {"before": None, "after": None},
                                  "new": {"before": 0.25, "after": 0.75}, "change": None}]
    # A recipe against a run's plan: the plans are compared, no metrics.
    result = json.loads(vtc("diff", "run-002", "a.vt", "--format", "json", cwd=tmp_path).stdout)
    assert result["changes"] == [] and "metrics" not in result
    (tmp_path / "empty").mkdir()
    out = vtc("diff", "empty", "run-001", cwd=tmp_path)
    assert out.exit_code == 2 and "error[VT561]" in out.stderr and "not a run folder" in out.stderr


def test_diff_imports_no_training_library(tmp_path):
    import sys

    write(tmp_path, "a.vt", DEMO)
    code = ("import sys; from click.testing import CliRunner; from vtc.cli import cli; "
            "CliRunner().invoke(cli, ['diff', 'a.vt', 'a.vt']); "
            "print(sorted(m for m in ('torch', 'transformers', 'av') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_driver_finds_the_place_of_gits_temporary_copy(repo, tmp_path, monkeypatch):
    """git gives the driver old versions as temporary copies (git-blob-XXXXXX/main.vt, or XXXXXX_main.vt before git
    2.33): their includes are read from the place of the one file of the repository with that name."""
    write(repo, "r/base.vt", BASE.replace("batch 8", "batch 6"))
    monkeypatch.chdir(repo)  # git runs a textconv in the repository's top folder
    for copy in (tmp_path / "git-blob-Ab12Cd" / "main.vt", tmp_path / "Ab12Cd_main.vt"):
        write(copy.parent, copy.name, MAIN)
        text = D.textconv(str(copy))
        assert "training/batch = 6    # base.vt\n" in text, copy
    write(tmp_path, "Ab12Cd_other.vt", MAIN)  # no file of that name in the repository: compiled where it is
    assert "does not compile" in D.textconv(str(tmp_path / "Ab12Cd_other.vt"))
