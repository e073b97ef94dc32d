"""Facts roles/backup reads before a run."""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra.api import FactBase

UNIT_DIR = "/etc/systemd/system"
MARKER = "# assotic-backup: managed by roles/backup"


class ManagedBackupUnits(FactBase[list]):
    """Unit names (without suffix) whose files carry roles/backup's marker."""

    def command(self) -> str:
        return (f"grep -l -x -F '{MARKER}' {UNIT_DIR}/assotic-backup-*.timer "
                f"{UNIT_DIR}/assotic-backup-*.service 2>/dev/null || true")

    def process(self, output: list[str]) -> list[str]:
        return sorted({Path(line.strip()).name.rsplit(".", 1)[0] for line in output if line.strip()})


class ResticRepositoryReady(FactBase[bool]):
    """True when the host's restic repository answers with its config (password included)."""

    def command(self, lib: str) -> str:
        # lib.sh is bash (arrays) and exits on a missing env file: its own bash process.
        probe = shlex.quote(f'. {lib} && timeout 60 "${{RESTIC[@]}}" cat config')
        return (f"if [ -r {lib} ] && bash -c {probe} >/dev/null 2>&1; "
                "then echo yes; else echo no; fi")

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "yes"
