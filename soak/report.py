"""Named pass/fail checks, figures printed as they come, and the closing `N passed, N failed` line."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SHOWN_PROBLEMS = 8  # problems printed per failed check (all are counted)
_print_lock = threading.Lock()


def say(line: str = "") -> None:
    with _print_lock:
        print(line, flush=True)


@dataclass
class Check:
    key: str
    title: str
    problems: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    done: bool = False

    @property
    def passed(self) -> bool:
        return self.done and not self.problems

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def expect(self, condition: bool, problem: str) -> bool:
        if not condition:
            self.fail(problem)
        return condition

    def figure(self, text: str) -> None:
        self.figures.append(text)
        say(f"  [{self.key}] {text}")

    def finish(self) -> None:
        self.done = True


class Report:
    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.phases: list[tuple[str, float]] = []

    def check(self, key: str, title: str) -> Check:
        return self.checks.setdefault(key, Check(key, title))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        say(f"== {name}")
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.phases.append((name, elapsed))
            say(f"== {name}: {elapsed:.1f} s")

    def summary(self, out=sys.stdout) -> tuple[int, int]:
        """Prints every check (unfinished ones count as failed) and the closing line."""
        lines = ["", "Phases:"] + [f"  {name:<44} {seconds:7.1f} s" for name, seconds in self.phases]
        lines += ["", "Checks:"]
        passed = failed = 0
        for check in self.checks.values():
            if check.passed:
                passed += 1
                lines.append(f"  PASS {check.key}: {check.title}")
                continue
            failed += 1
            lines.append(f"  FAIL {check.key}: {check.title}" + ("" if check.done else " (not finished)"))
            shown = check.problems[:SHOWN_PROBLEMS]
            lines += [f"       - {problem}" for problem in shown]
            if len(check.problems) > len(shown):
                lines.append(f"       ... and {len(check.problems) - len(shown)} more")
        lines.append("")
        lines.append(f"{passed} passed, {failed} failed")
        with _print_lock:
            print("\n".join(lines), file=out, flush=True)
        return passed, failed
