"""Regenerate docs/diagnostics.md from the registry of diagnostic codes, src/vtc/codes.py.

The document is the registry's entries, in code order, between the prose below (the introduction of the whole and of
each range of codes). tests/test_diagnostic_codes.py fails while the document differs from what this script writes:

    .venv/bin/python tools/gen_diagnostics_doc.py
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from vtc.codes import CODES, RANGES

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "diagnostics.md"
COMMAND = ".venv/bin/python tools/gen_diagnostics_doc.py"
WIDTH = 118

INTRODUCTION = """\
# Diagnostics: every problem vtc reports

<!-- Generated from src/vtc/codes.py by tools/gen_diagnostics_doc.py: edit those two, then run
     .venv/bin/python tools/gen_diagnostics_doc.py -->

When something in a recipe is wrong, vtc says what, where and what to write instead. Each report has a **code**
(`VT010`), a **severity** (error, warning or note), a one-sentence **message**, the **place** (file, line and
column, with the line shown and a caret under the problem) and a **help** line:

```text
error[VT010]: unknown clause `resise`
 --> xray.vt:1:68
  |
1 | finetune vision,mlp on qwen2.5-vl with responses_only from ./xrays resise 512
  |                                                                    ^^^^^^
  = help: did you mean `resize`? (like `resize 512`)
```

`vtc check` reports every problem of every file at once and exits with 1 when there is an error (warnings alone
exit 0). `--format json` prints the same reports as JSON for editors and CI. A code, once shipped, keeps its meaning.

Code ranges: VT0xx syntax, VT1xx values (schema), VT2xx semantic checks, VT3xx includes and files, VT4xx data,
VT5xx model and runtime. Each code below has its title, its severity, what it means and what to do, and an example
with what vtc prints for it (paths shortened)."""

RANGE_INTRODUCTIONS = {
    "0": """\
The parser reads a recipe one line at a time (a clause never spans lines). After a problem it carries on at the
next clause keyword on the same line, so one run shows everything. A recipe with a syntax error produces no plan.
Misspelled *values* (parts such as `visoin`, options such as `respones_only`, metric, schedule and optimizer names)
are not syntax errors: the grammar accepts any word there and the schema stage (VT1xx) says "did you mean ...?".""",
    "1": """\
The recipe document is checked against vtc's JSON Schema (`vtc schema` prints it). Every schema error is reported
at the value that caused it.""",
    "2": """\
Checks of what a schema-valid recipe means for its model: clauses that conflict, what trains, image sizes against
the max length, combinations of method and options, and what TRL refuses for vision-language models only after the
model has loaded. After a syntax or schema error the checks still look at the values that are valid.""",
    "3": """\
Paths in `include` are relative to the including file. Files that are not UTF-8 or are binary are reported by the
parser's decoder (VT002, VT003), at the included file. `vtc fmt` reports a file it cannot open with the same codes:
VT301 (the file does not exist) and VT303 (it exists but cannot be read, e.g. a folder or no permission).""",
    "4": """\
Found by `vtc check --data` and at the start of `vtc run` (vtc.runtime.validate, [data.md](data.md)), before any
model loads. Each names the data file and its row or line (`metadata.jsonl:7`), or the image or caption file. Text
output shows the first 10 of each code and a VT400 line for the rest; the summary table after them counts every one,
and `--format json` lists every one. Errors are bad rows: `bad rows stop` (the default) stops the run, `bad rows skip`
leaves them out and lists them in the run folder (`skipped_rows.jsonl`). VT430-VT434 come from the collator, which
turns rows into batches.""",
    "5": """\
Reported by `vtc run`, `vtc ask` and `vtc lock`, before or during a run. Each stops the run with exit code 1 (no
traceback); a run folder that already exists is renamed `run-NNN.failed` and its manifest says why.
[running.md](running.md) and [reproducibility.md](reproducibility.md) tell more.""",
}


def _wrap(text: str) -> str:
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def _block(text: str) -> list[str]:
    return ["```text", *text.rstrip("\n").split("\n"), "```"]


def _entry(entry) -> list[str]:
    out = [f"### {entry.code}", "", f"**{entry.title}** ({' or '.join(entry.severity)})", "", _wrap(entry.explanation),
           ""]
    if entry.example_is_recipe:
        out += ["Example:", "", *_block(entry.example), "", "vtc says:", ""]
    else:
        out += [_wrap(f"Example: {entry.example}."), ""]
    return out + _block(entry.reported) + [""]


def generate() -> str:
    """The text of docs/diagnostics.md for the registry as it is."""
    out = [INTRODUCTION, ""]
    for digit, heading in RANGES:
        entries = [e for code, e in sorted(CODES.items()) if code[2] == digit]
        out += [f"## {heading} (VT{digit}xx)", "", RANGE_INTRODUCTIONS[digit], "",
                "| code | severity | title |", "|---|---|---|"]
        out += [f"| [{e.code}](#{e.code.lower()}) | {' or '.join(e.severity)} | {e.title} |" for e in entries]
        out.append("")
        for entry in entries:
            out += _entry(entry)
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    OUT.write_text(generate(), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
