"""roles/backup_target: the off-site host that keeps the restic repositories (group backup).

One SFTP-only account per backed-up host (`restic-<host>`, group assotic-backup):
chrooted in /srv/assotic-backup/<account> (root-owned, as sshd requires) with its
repository in <chroot>/repo (the account's own, 0700), no shell, no forwarding, and
one authorized key, written by root in /etc/ssh/assotic-backup-keys/<account> with
`restrict`. Which hosts back up here: every inventory host whose data
`backup_target.host` names this host. Their public keys are derived from the secrets
store (roles/backup/sshkey.py), so this role needs nothing from those hosts.

An account whose host left the inventory is kept, with its repository: its backups
may still be needed. Remove it by hand (docs/backup.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roles.backup import knob, target_account

GROUP = "assotic-backup"
CHROOT_ROOT = "/srv/assotic-backup"
KEYS_DIR = "/etc/ssh/assotic-backup-keys"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/50-assotic-backup.conf"
NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True)
class TargetContext:
    """What templates/backup_target/*.j2 see as `target`."""

    group: str = GROUP
    chroot_root: str = CHROOT_ROOT
    keys_dir: str = KEYS_DIR


@dataclass(frozen=True)
class Client:
    """A backed-up host with an account here."""

    host: str
    account: str
    public_key: str

    @property
    def chroot(self) -> str:
        return f"{CHROOT_ROOT}/{self.account}"

    @property
    def repository(self) -> str:
        return f"{self.chroot}/repo"


def clients_of(target_name: str, hosts: list[tuple[str, Any, Any]], secrets: Any) -> list[Client]:
    """The backed-up hosts (name, groups, data) whose backup_target names `target_name`.

    Only hosts of the backed-up groups have a backup key (preflight.platform_secret_names):
    a host of another group that inherits a backup_target from group data is not a client.
    """
    from assotic.layout import BACKED_UP_GROUPS, host_secret
    from roles.backup.sshkey import public_key_line

    found = []
    for name, groups, data in hosts:
        if not set(groups) & set(BACKED_UP_GROUPS):
            continue
        target = knob(data, "backup_target")
        if isinstance(target, dict) and target.get("host") == target_name and name != target_name:
            key = public_key_line(secrets.get(host_secret(name, "backup_ssh_key")), f"assotic-backup@{name}")
            found.append(Client(host=name, account=target_account(name), public_key=key))
    return found


def authorized_keys(client: Client) -> str:
    return f"restrict {client.public_key}\n"


def sshd_drop_in() -> str:
    import jinja2
    from pathlib import Path

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parents[2] / "templates" / "backup_target"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return environment.get_template("sshd-50-assotic-backup.conf.j2").render(target=TargetContext())


def backup_target(secrets: Any) -> None:
    """Accounts, folders, keys and the sshd rules for every host that backs up here.

    Its clients are the other hosts of the inventory, so it reads the inventory, not a plan.
    `secrets`: the store (HostPlan.secrets)."""
    from pyinfra import host, inventory
    from pyinfra.operations import files, server

    from roles.remote_files import install_validated, put_text, reload_after

    clients = clients_of(host.name, [(h.name, h.groups, h.data) for h in inventory], secrets)
    if not clients:
        host.noop(f"{host.name}: no inventory host names it as backup_target.host: no account")
    server.group(name=f"Create group {GROUP}", group=GROUP, system=True)
    for path in (CHROOT_ROOT, KEYS_DIR):
        files.directory(name=f"Create {path}", path=path, user="root", group="root", mode="0755",
                        present=True)
    for client in clients:
        server.user(name=f"Create SFTP-only account {client.account} for {client.host}",
                    user=client.account, group=GROUP, home=client.chroot, shell=NOLOGIN,
                    create_home=False, ensure_home=False, system=True)
        files.directory(name=f"Create chroot {client.chroot} (root-owned)", path=client.chroot,
                        user="root", group="root", mode="0755", present=True)
        files.directory(name=f"Create repository folder {client.repository}",
                        path=client.repository, user=client.account, group=GROUP, mode="0700",
                        present=True)
        put_text(f"{KEYS_DIR}/{client.account}", authorized_keys(client), mode="0644")
    changed = install_validated(path=SSHD_DROP_IN, content=sshd_drop_in(),
                                check="sshd -t -f {candidate}", mode="0644")
    reload_after("Reload ssh (backup accounts)", "systemctl reload ssh", changed,
                 stamp="ssh-backup-accounts", covers=[SSHD_DROP_IN])
