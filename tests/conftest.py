"""A session-wide record of the diagnostic codes the tests make vtc report (tests/test_zz_every_code_raised.py).

Diagnostic.__init__ is wrapped for the whole session. While a test runs (its setup, call and teardown), every
Diagnostic created in this process adds its code and severity to the record, with the first test that made it.
Diagnostics made at import or collection time are not counted, nor those made in another process (a test that runs
`vtc` through subprocess): a code reported only there needs an in-process test. Property-based tests (hypothesis)
are not counted either: their inputs are random, so a code they happen to produce is not reliably tested.

The record means something only when the session ran the whole suite, so the session also notes why it did not
(`-k`, `-m`, a test id, deselected tests, a test file with nothing collected); the check then skips.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from vtc.diagnostics import Diagnostic

TESTS = Path(__file__).resolve().parent
# The test that reads the record runs after every other test, whatever its place in the collection.
LAST = "test_zz_every_code_raised.py"


class CodeRecord:
    """code -> severity -> node id of the first test that made vtc report it; and why the run is partial, if it is."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, str]] = {}
        self.current: str | None = None  # the node id of the running test; None outside tests
        self.deselected = 0
        self.partial: str | None = None

    def add(self, diagnostic: Diagnostic) -> None:
        if self.current is not None:
            by_severity = self.seen.setdefault(diagnostic.code, {})
            by_severity.setdefault(diagnostic.severity.value, self.current)


RECORD = CodeRecord()
_create = Diagnostic.__init__


@functools.wraps(_create)
def _recording_init(self, *args, **kwargs) -> None:
    _create(self, *args, **kwargs)
    RECORD.add(self)


def pytest_configure(config) -> None:
    Diagnostic.__init__ = _recording_init


def pytest_unconfigure(config) -> None:
    Diagnostic.__init__ = _create


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    random_inputs = getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
    RECORD.current = None if random_inputs else item.nodeid
    try:
        return (yield)
    finally:
        RECORD.current = None


def pytest_deselected(items) -> None:
    RECORD.deselected += len(items)


def pytest_collection_modifyitems(session, config, items) -> None:
    last = [item for item in items if item.path.name == LAST]
    items[:] = [item for item in items if item.path.name != LAST] + last


def pytest_collection_finish(session) -> None:
    RECORD.partial = _partial_reason(session)


def _partial_reason(session) -> str | None:
    """Why this session did not run the whole suite, or None when it did."""
    option = session.config.option
    if getattr(option, "keyword", ""):
        return f"-k {option.keyword!r} selects part of the suite"
    if getattr(option, "markexpr", ""):
        return f"-m {option.markexpr!r} selects part of the suite"
    picked = [arg for arg in session.config.args if "::" in arg]
    if picked:
        return f"only some tests of a file were asked for ({picked[0]})"
    if RECORD.deselected:
        return f"{RECORD.deselected} tests were deselected"
    collected = {item.path for item in session.items}
    missing = sorted(str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py") if p not in collected)
    if missing:
        return f"{len(missing)} test files were not collected (e.g. {missing[0]})"
    return None


@pytest.fixture
def code_record() -> CodeRecord:
    """The session's record of reported codes (see the module docstring)."""
    return RECORD
