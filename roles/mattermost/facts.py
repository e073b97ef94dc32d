"""Facts read through `mmctl --local`, as an instance's user. Read-only: they change nothing.

Each answers [] when mmctl cannot reach the server (a first deploy, before the unit runs):
the role then schedules every step, which run in order after the unit started.
"""

from __future__ import annotations

import json

from pyinfra.api import FactBase


class MmctlJson(FactBase):
    """The JSON list an mmctl command prints with --json ([] when it cannot answer)."""

    def command(self, mmctl: str, args: str) -> str:
        # `mmctl` is the prefix built by roles.mattermost.mmctl_prefix (runuser, env, --local).
        return f"{mmctl} {args} --json 2>/dev/null || true"

    def process(self, output: list[str]):
        text = "\n".join(output).strip()
        start = text.find("[")
        try:
            value = json.loads(text[start:]) if start >= 0 else []
        except ValueError:
            return []
        return value if isinstance(value, list) else []
