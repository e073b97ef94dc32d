"""pyinfra steps every role uses to put a file on a host: rendered text, optionally checked first."""

from __future__ import annotations

import hashlib
from io import StringIO

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Sha1File
from pyinfra.operations import files, server


def put_text(path: str, content: str, mode: str = "0644", user: str = "root",
             group: str = "root") -> OperationMeta:
    """Upload rendered text to `path` (parent folders created); changes only when it differs."""
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
