"""One way to report bad input: every problem names the file, the field and what was expected.

All problems are collected first and printed together, so that a volunteer fixes
everything in one pass instead of one error per run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    file: str  # path as the operator would type it, e.g. group_data/tenants/amap.yml
    field: str  # dotted path inside the file, e.g. apps.nextcloud.domain ("" for the whole file)
    expected: str  # what was expected, and what was found when that helps

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.expected}"


class InputError(Exception):
    """Raised with every problem found, never with just the first one."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__(format_problems(self.problems))


def format_problems(problems: list[Problem]) -> str:
    files = {p.file for p in problems}
    # Continuation lines of a long message stay under their bullet.
    lines = [f"  - {p}".replace("\n", "\n    ") for p in problems]
    noun = "problem" if len(problems) == 1 else "problems"
    head = f"assotic: {len(problems)} {noun} in {len(files)} file(s); nothing was deployed."
    return "\n".join([head, *lines])


def exit_with(problems: list[Problem]) -> None:
    """Print the report and stop the process before pyinfra connects to any host."""
    print(format_problems(sorted(set(problems))), file=sys.stderr)
    raise SystemExit(2)
