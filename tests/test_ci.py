"""CI: a skipped test fails the run under CI=true (tests/conftest.py), and `make browser` finds
Chromium as the browser tests do (tests/harness.py: $CHROMIUM, else /usr/bin/chromium)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from local_stack.template import ROOT

TESTS = Path(__file__).parent
SKIPPING = """
import pytest


@pytest.fixture
def needs_something():
    pytest.skip("the fixture's reason")


@pytest.mark.skip(reason="the marker's reason")
def test_marked():
    pass


@pytest.mark.skipif(True, reason="the condition's reason")
def test_conditional():
    pass


def test_fixture(needs_something):
    pass


def test_in_the_test():
    pytest.skip("the test's reason")


def test_import():
    pytest.importorskip("no_such_module_anywhere")


def test_passes():
    pass


@pytest.mark.xfail(reason="known", strict=True)
def test_expected_to_fail():
    raise AssertionError
"""
REASONS = [
    "the fixture's reason",
    "the marker's reason",
    "the condition's reason",
    "the test's reason",
    "could not import 'no_such_module_anywhere'",
]


def run_with_the_suites_conftest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None):
    """pytest in a subprocess on the files made in pytester's directory, with tests/conftest.py as a plugin."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(str(path) for path in (TESTS, ROOT / "layers" / "common", ROOT)))
    return pytester.runpytest_subprocess("-p", "conftest", "-ra", "-p", "no:cacheprovider")


def test_under_ci_every_kind_of_skip_fails_the_run_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given tests skipped by a marker, a condition, a fixture, the test itself and importorskip
    pytester.makepyfile(test_skipping=SKIPPING)
    # When pytest runs them with CI=true
    result = run_with_the_suites_conftest(pytester, monkeypatch, "true")
    # Then each skip is a failure naming its reason, and the run fails
    result.assert_outcomes(failed=5, passed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    failures = [line for line in result.outlines if line.startswith("FAILED ")]
    for reason in REASONS:
        assert any(reason in line and "CI=true" in line for line in failures), (reason, failures)


def test_outside_ci_skips_stay_skips(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the same tests
    pytester.makepyfile(test_skipping=SKIPPING)
    for ci in (None, "false"):
        # When pytest runs them without CI=true
        result = run_with_the_suites_conftest(pytester, monkeypatch, ci)
        # Then they are skipped and the run passes
        result.assert_outcomes(skipped=5, passed=1, xfailed=1)
        assert result.ret == pytest.ExitCode.OK
        assert "CI=true" not in result.stdout.str()


def test_under_ci_a_module_skipped_whole_is_an_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a module that needs a module that is not installed
    pytester.makepyfile(
        test_module='import pytest\n\npytest.importorskip("no_such_module_anywhere")\n\n\ndef test_a():\n    pass\n'
    )
    # When pytest collects it under CI, then outside
    under_ci = run_with_the_suites_conftest(pytester, monkeypatch, "true")
    outside = run_with_the_suites_conftest(pytester, monkeypatch, None)
    # Then under CI the module is an error naming what is missing; outside it is skipped
    under_ci.assert_outcomes(errors=1)
    assert under_ci.ret != pytest.ExitCode.OK
    assert "no_such_module_anywhere" in under_ci.stdout.str() and "CI=true" in under_ci.stdout.str()
    outside.assert_outcomes(skipped=1)
    assert outside.ret == pytest.ExitCode.NO_TESTS_COLLECTED


# -- Chromium: one rule for `make browser` and the browser tests ---------------------------------------


def make_browser(chromium: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CHROMIUM": chromium}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "browser"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_browser_accepts_the_chromium_that_the_tests_would_use(tmp_path: Path, monkeypatch) -> None:
    from harness import chromium_missing

    # Given CHROMIUM naming an executable
    chromium = tmp_path / "chrome"
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(chromium.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CHROMIUM", str(chromium))
    # When `make browser` checks it
    result = make_browser(str(chromium))
    # Then it is accepted (nothing installed), as the browser tests accept it
    assert result.returncode == 0, result.stderr
    assert chromium_missing() is None


def test_make_browser_refuses_a_chromium_that_the_tests_would_not_find(tmp_path: Path, monkeypatch) -> None:
    from harness import chromium_missing

    # Given CHROMIUM naming nothing
    chromium = tmp_path / "no-chrome"
    monkeypatch.setenv("CHROMIUM", str(chromium))
    # When `make browser` checks it
    result = make_browser(str(chromium))
    # Then it fails naming the path (and installs nothing in its place), as the browser tests would skip
    assert result.returncode != 0
    assert str(chromium) in result.stderr
    assert chromium_missing() is not None and str(chromium) in str(chromium_missing())
