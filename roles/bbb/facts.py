"""Facts the BBB role reads. Read-only."""

from __future__ import annotations

from pyinfra.api import FactBase


class MemTotalKb(FactBase):
    """MemTotal of /proc/meminfo in kB (what bbb-install tests), None when unreadable."""

    def command(self) -> str:
        return "awk '$1 == \"MemTotal:\" {print $2}' /proc/meminfo"

    def process(self, output):
        try:
            return int(list(output)[0])
        except (IndexError, ValueError):
            return None
