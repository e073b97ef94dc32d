"""roles/accounts: each app instance's Unix account (a system user and group, no login) and
its folders under /srv/assotic.

Every role that runs something as an instance (PHP, Redis, timers, the app roles) relies
on them, so deploy.py calls `instance_accounts(instances)` before any backend. See
docs/backends.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import files, server

from assotic.needs import SRV_ROOT, AppInstance
from roles.prepared import SystemAccount, system_accounts
from roles.remote_files import PathStats

__all__ = ["NOLOGIN", "instance_accounts", "instance_directories"]

# Owner and mode of each instance directory: home is root's (the instance cannot
# change its own layout), what it writes is its own. Nothing is world-readable.
INSTANCE_DIRS = (
    # (attribute of AppInstance, owner, mode)
    ("data_dir", "user", "0750"),
    ("config_dir", "user", "0750"),
    ("log_dir", "user", "0750"),
    ("tmp_dir", "user", "0700"),
    ("session_dir", "user", "0700"),
)
# /srv/assotic and /srv/assotic/<slug>: traversable, not listable, by anyone.
TRAVERSE_ONLY = "0711"
NOLOGIN = "/usr/sbin/nologin"


class WorldAccessibleFiles(FactBase):
    """Files and folders under a path that anybody on the host may read or write.

    Entering (o+x) is allowed: /srv/assotic and each association's folder are traverse-only.
    """

    def command(self, path: str) -> str:
        return f"find {path} ! -type l -perm /o=rw -print 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]


def instance_directories(instance: AppInstance) -> list[tuple[str, str, str, str]]:
    """(path, owner, group, mode) of every directory of an instance, parents first."""
    user = instance.user
    dirs = [
        (SRV_ROOT, "root", "root", TRAVERSE_ONLY),
        (str(Path(instance.home).parent), "root", "root", TRAVERSE_ONLY),
        (instance.home, "root", user, "0750"),
    ]
    for attribute, owner, mode in INSTANCE_DIRS:
        dirs.append((getattr(instance, attribute), user if owner == "user" else owner, user, mode))
    return dirs


def unique_instances(instances: Iterable[AppInstance]) -> list[AppInstance]:
    return list(dict.fromkeys(instances))


@deploy("Instance accounts")
def instance_accounts(instances: list[AppInstance]) -> None:
    """A system user and group per instance (no shell, no login), and its home folders.

    www-data is never added to these groups: nginx reaches PHP through the pool's
    socket, not through the files.
    """
    # One command reads every account; operations only for those missing or different.
    # The home is root's, made below.
    system_accounts(SystemAccount(user=i.user, home=i.home, shell=NOLOGIN,
                                  comment=f"assotic {i.app} of {i.slug}")
                    for i in unique_instances(instances))
    folders: dict[str, tuple[str, str, str]] = {}  # path -> (owner, group, mode), parents first
    for instance in unique_instances(instances):
        for path, owner, group, mode in instance_directories(instance):
            folders.setdefault(path, (owner, group, mode))
    # One stat for every folder of every instance; an operation only where one differs.
    found = host.get_fact(PathStats, paths=tuple(folders)) if folders else {}
    for path, (owner, group, mode) in folders.items():
        if found.get(path) != f"directory {owner} {group} {int(mode, 8):o}":
            files.directory(name=f"Create {path}", path=path, user=owner, group=group, mode=mode)
    # Files made before the services' umask was 0027 (or by hand): none may be world-readable.
    exposed = host.get_fact(WorldAccessibleFiles, path=SRV_ROOT)
    if exposed:
        server.shell(name=f"Remove world access from {len(exposed)} file(s) under {SRV_ROOT}",
                     commands=[f"find {SRV_ROOT} ! -type l -perm /o=rw -exec chmod o-rw {{}} +"])
