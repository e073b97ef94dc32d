"""Read what `pyinfra ... deploy.py` printed: how many operations changed something, per host.

pyinfra prints one status line per operation and host: `[web-1] Success` when the
operation ran commands (it changed something), `[web-1] No changes` otherwise.
The lab tests count the first kind: a second deploy must print none
(tests/lab/test_lab.py test_second_deploy_changes_nothing, run by `make test-lab`; the
drift, killed-deploy, backup and real-Paheko lab tests too), and `make bench` reports
the count of its no-op deploy.
"""

from __future__ import annotations

import re
from collections import Counter

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
STATUS_LINE = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s+(?P<status>Success|No changes)\b")


def changed_operations_per_host(output: str) -> dict[str, int]:
    """{host: number of operations that changed something}; hosts with none are listed with 0."""
    changed: Counter[str] = Counter()
    for line in ANSI_ESCAPE.sub("", output).splitlines():
        match = STATUS_LINE.match(line)
        if match:
            changed[match["host"]] += match["status"] == "Success"
    return dict(changed)


def changed_operation_names(output: str, host: str) -> list[str]:
    """The operations that changed something on a host, to say what was not idempotent."""
    names, current = [], None
    for line in ANSI_ESCAPE.sub("", output).splitlines():
        if line.startswith("--> Starting operation:"):
            current = line.split(":", 1)[1].strip()
        match = STATUS_LINE.match(line)
        if match and match["host"] == host and match["status"] == "Success":
            names.append(current or "?")
    return names
