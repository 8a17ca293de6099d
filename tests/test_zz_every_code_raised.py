"""Every registered diagnostic code is reported by at least one test, with every severity the registry gives it.

tests/conftest.py records each Diagnostic created in this process while a (non-random) test runs; this test runs
after all the others (conftest moves it last) and reads that record. It skips when the session did not run the whole
suite (one file, `-k`, `-m`, a test id), since a partial run raises only some codes.
"""

import pytest

from vtc.codes import CODES

# Codes that no input can make vtc report today, each with the reason. A code belongs here only until its owner
# decides whether it goes; one that a test does report must leave the list.
UNREACHABLE: dict[str, str] = {}


@pytest.fixture
def whole_suite(code_record):
    if code_record.partial:
        pytest.skip(f"not the whole suite ({code_record.partial}): run `pytest` with no selection to check this")
    return code_record


def test_every_registered_code_is_raised_by_a_test(whole_suite, request):
    seen = whole_suite.seen
    missing = sorted(set(CODES) - set(seen) - set(UNREACHABLE))
    failed = request.session.testsfailed
    assert not missing, (
        f"{len(missing)} registered codes were reported by no test in this process: {', '.join(missing)}. "
        "Write a test that makes vtc report each from a real input (a test that runs `vtc` in a subprocess, or a "
        "property-based test, does not count)" + (f"; {failed} tests failed before this one" if failed else ""))
    reached = {code: seen[code] for code in UNREACHABLE if code in seen}
    assert not reached, f"listed as unreachable but reported by a test, take them off the list: {reached}"


def test_every_registered_severity_is_raised_by_a_test(whole_suite):
    seen = whole_suite.seen
    missing = [f"{code} as {severity}" for code, entry in sorted(CODES.items()) if code in seen
               for severity in entry.severity if severity not in seen[code]]
    assert not missing, "registered but reported by no test: " + "; ".join(missing)


def test_codes_are_raised_only_with_registered_severities(whole_suite):
    seen = whole_suite.seen
    unknown = sorted(set(seen) - set(CODES))
    wrong = [f"{code} as {severity} (first in {test})" for code, by_severity in sorted(seen.items()) if code in CODES
             for severity, test in sorted(by_severity.items()) if severity not in CODES[code].severity]
    assert not unknown, f"reported by tests but not registered in src/vtc/codes.py: {', '.join(unknown)}"
    assert not wrong, "reported with a severity src/vtc/codes.py does not give them: " + "; ".join(wrong)
