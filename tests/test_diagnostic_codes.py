"""Every diagnostic code that vtc can report is documented in docs/diagnostics.md, and no code means two things."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = re.compile(r"\bVT\d{3}\b")


def codes_in_source() -> set[str]:
    found = set()
    for path in (ROOT / "src" / "vtc").rglob("*.py"):
        found |= set(re.findall(r"[\"'](VT\d{3})[\"']", path.read_text(encoding="utf-8")))
    return found


def test_every_code_in_the_source_is_documented():
    documented = set(CODE.findall((ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")))
    missing = sorted(codes_in_source() - documented)
    assert not missing, f"codes used in src/ but missing from docs/diagnostics.md: {missing}"


def test_each_code_has_one_table_row():
    rows = re.findall(r"^\| (VT\d{3}) \|", (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8"), re.M)
    repeated = sorted({c for c in rows if rows.count(c) > 1})
    assert not repeated, f"codes with more than one row in docs/diagnostics.md: {repeated}"
