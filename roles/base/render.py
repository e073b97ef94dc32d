"""Pure rendering of every file the base role writes: no host access, unit-tested.

Each template under templates/base/ gets one context object, `base`, so its names
never collide with pyinfra operation arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from assotic.templating import template_environment

from .model import BaseSettings, Opening

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "base"

# Accepted by OpenSSH 9.2 (Debian 12) and 10.0 (Debian 13), checked with `ssh -Q`.
SSH_CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
SSH_MACS = (
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)
# Best first. mlkem768x25519-sha256 (post-quantum) exists from OpenSSH 9.9 only, so
# the list is filtered by what the host's OpenSSH supports (`ssh -Q kex`).
# curve25519-sha256@libssh.org stays: it is the one paramiko (pyinfra) speaks.
SSH_KEX_PREFERENCE = (
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
)
# Low enough to slow guessing, high enough for an ssh-agent offering a few keys (the
# operator commands and pyinfra offer only the inventory's key: IdentitiesOnly).
SSH_MAX_AUTH_TRIES = 3


@dataclass(frozen=True)
class BaseContext:
    """What the templates see as `base`."""

    settings: BaseSettings
    openings: tuple[Opening, ...] = ()
    kex_algorithms: tuple[str, ...] = ()
    ciphers: tuple[str, ...] = SSH_CIPHERS
    macs: tuple[str, ...] = SSH_MACS
    max_auth_tries: int = SSH_MAX_AUTH_TRIES


_environment = template_environment(TEMPLATES_DIR)


def render(template_name: str, context: BaseContext) -> str:
    return _environment.get_template(template_name).render(base=context)


def firewall_openings(openings: Iterable[Opening], ssh_port: int) -> tuple[Opening, ...]:
    """The openings to render, duplicates dropped; refuses a list that would lock out SSH."""
    unique = tuple(dict.fromkeys(openings))
    if not any(o.covers(ssh_port, "tcp") for o in unique):
        raise ValueError(
            f"firewall openings do not include SSH (tcp/{ssh_port}): the host would lock"
            " every sysadmin out. Pass base.ssh_openings(host.data) along with the others."
        )
    return unique


def nftables_ruleset(openings: Iterable[Opening], ssh_port: int = 22) -> str:
    """/etc/nftables.conf for these openings."""
    settings = BaseSettings(ssh_listen_port=ssh_port)
    context = BaseContext(settings=settings, openings=firewall_openings(openings, ssh_port))
    return render("nftables.conf.j2", context)


def kex_algorithms(supported: Iterable[str]) -> tuple[str, ...]:
    """Our preferred key exchanges that this OpenSSH knows, best first."""
    supported = set(supported)
    chosen = tuple(k for k in SSH_KEX_PREFERENCE if k in supported)
    if "curve25519-sha256@libssh.org" not in chosen:
        raise ValueError("this OpenSSH lacks curve25519-sha256@libssh.org; pyinfra could not connect")
    return chosen


def sshd_config(settings: BaseSettings, supported_kex: Iterable[str]) -> str:
    """/etc/ssh/sshd_config.d/00-assotic.conf."""
    context = BaseContext(settings=settings, kex_algorithms=kex_algorithms(supported_kex))
    return render("sshd-00-assotic.conf.j2", context)


def sysadmin_sudoers(settings: BaseSettings) -> str:
    """/etc/sudoers.d/assotic-sysadmins: NOPASSWD sudo for each present sysadmin."""
    return render("sudoers-assotic-sysadmins.j2", BaseContext(settings=settings))


def journald_config(settings: BaseSettings) -> str:
    return render("journald-assotic.conf.j2", BaseContext(settings=settings))


def auto_upgrades_config(settings: BaseSettings) -> str:
    return render("20auto-upgrades.j2", BaseContext(settings=settings))


def unattended_upgrades_config(settings: BaseSettings) -> str:
    return render("52assotic-unattended-upgrades.j2", BaseContext(settings=settings))


def fail2ban_jail(settings: BaseSettings) -> str:
    return render("fail2ban-jail-assotic.local.j2", BaseContext(settings=settings))
