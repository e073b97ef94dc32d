"""pyinfra steps every role uses to put a file on a host: rendered text, optionally checked first,
and the reloads that must follow it even when a deploy was killed in between.

Why the facts here are per folder: a no-op deploy costs one SSH round trip per fact, and
pyinfra's own files.put reads two facts per file. With many associations on a host that
grows with every file of every association; reading each folder once keeps a no-op
deploy cheap (see `make bench`).
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from collections.abc import Iterable
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Sha1File
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from roles.prepared import prepared_fact


class FolderFiles(FactBase):
    """{path: (sha1, owner, group, mode)} of every regular file directly in a folder, in one command."""

    def command(self, folder: str) -> str:
        quoted = shlex.quote(folder)
        return (f"find {quoted} -maxdepth 1 -type f -exec sh -c "
                "'for f; do printf \"%s|%s\\n\" \"$(stat -c %n\\|%U\\|%G\\|%a \"$f\")\" "
                "\"$(sha1sum < \"$f\" | cut -c1-40)\"; done' sh {} + 2>/dev/null || true")

    @staticmethod
    def default() -> dict:
        return {}  # what pyinfra gives when the command printed nothing (an empty folder)

    def process(self, output: list[str]) -> dict[str, tuple[str, str, str, int]]:
        states = {}
        for line in output:
            parts = line.rsplit("|", 4)
            if len(parts) == 5:
                path, owner, group, mode, sha1 = parts
                states[path] = (sha1, owner, group, int(mode, 8))
        return states


class PathStats(FactBase):
    """{path: "<type> <owner> <group> <mode>"} for many paths in one command (absent: missing)."""

    def command(self, paths: tuple[str, ...]) -> str:
        return "stat -c '%n|%F %U %G %a' " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null || true"

    @staticmethod
    def default() -> dict:
        return {}  # none of the paths exists

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split("|", 1) for line in output if "|" in line)


class Unchanged:
    """Stands for an operation that was not needed: the file is already as rendered."""

    @staticmethod
    def did_change() -> bool:
        return False


def put_text(path: str, content: str, mode: str = "0644", user: str = "root",
             group: str = "root") -> OperationMeta | Unchanged:
    """Upload rendered text to `path` (parent folders created); changes only when it differs."""
    wanted = (hashlib.sha1(content.encode()).hexdigest(), user, group, int(mode, 8))
    if prepared_fact(FolderFiles, folder=posixpath.dirname(path)).get(path) == wanted:
        return Unchanged()
    return files.put(
        name=f"Render {path}",
        src=StringIO(content),
        dest=path,
        user=user,
        group=group,
        mode=mode,
        create_remote_dir=True,
    )


def install_validated(path: str, content: str, check: str, mode: str) -> list[OperationMeta]:
    """Install `content` at `path` only once `check` accepts it.

    `check` is a command where {candidate} is the new file, uploaded next to the real
    one (`<path>.assotic-new`, a name sudo, sshd and nft do not read). A rejected file
    never replaces the working one. Returns the operations that changed `path`, for
    reload decisions; none when the host already has this content.
    """
    user_group = {"user": "root", "group": "root"}
    if host.get_fact(Sha1File, path=path) == hashlib.sha1(content.encode()).hexdigest():
        files.file(name=f"Set mode {mode} on {path}", path=path, mode=mode, **user_group)
        return []
    candidate = f"{path}.assotic-new"
    files.put(
        name=f"Upload {candidate}",
        src=StringIO(content),
        dest=candidate,
        mode=mode,
        **user_group,
    )
    installed = server.shell(
        name=f"Check and install {path}",
        commands=[f"{check.format(candidate=candidate)} && mv -f {candidate} {path}"],
    )
    return [installed]


# A reload that follows file changes runs when they happen in the same deploy
# (`_if=any_changed(...)`). A deploy killed between the two (SIGKILL, a lost session) leaves
# the new files on the host and the service running the old ones; the next deploy finds the
# files right, changes nothing, and would never reload. So each such reload, once it
# succeeded, writes a stamp here listing the paths it covers, and the next deploy runs it
# again while one of them is newer than its stamp (`make verify` reports such a path too:
# tests/verify/test_reloads.py).
RELOAD_STAMPS = "/var/lib/assotic/reloaded"


class ChangedSinceStamp(FactBase):
    """True when `stamp` is missing or one of `paths` changed after it. A folder counts with
    the files directly in it: removing a file changes its folder's time."""

    def command(self, stamp: str, paths: tuple[str, ...]) -> str:
        quoted, stamp_q = " ".join(shlex.quote(p) for p in paths), shlex.quote(stamp)
        return (f"if [ ! -e {stamp_q} ]; then echo 'no stamp'; "
                f"else find {quoted} -maxdepth 1 -newer {stamp_q} -print 2>/dev/null | head -n 1; fi")

    @staticmethod
    def default() -> bool:
        return False  # printed nothing: nothing changed since the stamp

    def process(self, output: list[str]) -> bool:
        return any(line.strip() for line in output)


def reload_after(name: str, command: str, changed: Iterable, stamp: str, covers: Iterable[str]):
    """`command` (a reload or restart) when one of `changed` changed in this deploy, or when a
    file of `covers` changed after its last successful run (a deploy killed in between)."""
    stamp_path, covers = f"{RELOAD_STAMPS}/{stamp}", tuple(covers)
    pending = prepared_fact(ChangedSinceStamp, stamp=stamp_path, paths=covers)
    changed_now = any_changed(*changed)
    listed = " ".join(shlex.quote(p) for p in covers)
    return server.shell(
        name=name,
        commands=[f"{command} && install -d -m 0755 {RELOAD_STAMPS} && "
                  f"printf '%s\\n' {listed} > {stamp_path}"],
        _if=lambda: pending or changed_now(),
    )
