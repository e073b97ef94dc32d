"""roles/base: what every assotic host gets before any application.

Debian's apt sources (security suite included), packages, hostname and timezone,
sysadmin accounts, sshd hardening, the nftables firewall (rendered here from the
openings every role declares), automatic security updates, time sync, bounded
journald, an optional swap file, fail2ban for sshd, and the operating system's own
hardening that `make audit` measures (hardening.py).

Knobs (host data, with defaults) are documented in docs/base.md. A second deploy
changes nothing: every file is compared by checksum and every service is reloaded
or restarted only when one of its files changed.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server, systemd

from roles.remote_files import install_validated, put_text, reload_after

from . import hardening, render
from .facts import ActiveSwaps, ContainerType, DpkgInterrupted, SshKexAlgorithms
from .model import DEFAULTS, BaseDataError, BaseSettings, Opening, Sysadmin, ssh_openings
from .render import (
    fail2ban_jail,
    journald_config,
    nftables_ruleset,
    sshd_config,
    sysadmin_sudoers,
    unattended_upgrades_config,
)

__all__ = [
    "BASE_PACKAGES",
    "BaseDataError",
    "BaseSettings",
    "Opening",
    "Sysadmin",
    "base",
    "nftables_ruleset",
    "ssh_openings",
    "sshd_config",
    "sysadmin_sudoers",
]

BASE_PACKAGES = [
    "sudo",
    "openssh-server",
    "nftables",
    "fail2ban",
    "python3-systemd",  # fail2ban's journal backend
    "unattended-upgrades",
    "systemd-timesyncd",
    "ca-certificates",
    "curl",
    "less",
    "vim-tiny",
    "iproute2",  # ss, used by the verify checks
    "rsync",  # copies Nextcloud apps' static files for nginx (roles/nextcloud, ASSETS_ROOT)
]

# "00-": sshd keeps the FIRST value it reads, and drop-ins are read in name order; a
# provider's 50-cloud-init.conf (PasswordAuthentication yes) must not win over ours.
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/00-assotic.conf"
SUDOERS_FILE = "/etc/sudoers.d/assotic-sysadmins"
NFTABLES_CONF = "/etc/nftables.conf"
JOURNALD_DROP_IN = "/etc/systemd/journald.conf.d/assotic.conf"
AUTO_UPGRADES = "/etc/apt/apt.conf.d/20auto-upgrades"
UNATTENDED_UPGRADES_DROP_IN = "/etc/apt/apt.conf.d/52assotic-unattended-upgrades"
# .local, not .conf: read after Debian's jail.d/defaults-debian.conf, so ours wins.
FAIL2BAN_JAIL = "/etc/fail2ban/jail.d/assotic.local"
SWAP_FILE = "/swapfile"


@deploy("Base host", data_defaults=DEFAULTS)
def base(firewall_openings: list[Opening], update_report_mail_to: str | None = None) -> None:
    settings = BaseSettings.from_data(host.data, openings=firewall_openings,
                                      update_report_mail_to=update_report_mail_to)
    in_container = host.get_fact(ContainerType) != "none"

    distribution = host.get_fact(LinuxDistribution)
    configure_apt_sources(settings, distribution)
    install_packages(settings, in_container)
    if distribution["name"] == "Debian":
        hardening.install_pending_security_updates()
    configure_identity(settings, in_container)
    configure_sysadmins(settings)
    configure_sshd(settings)
    configure_firewall(settings)
    configure_unattended_upgrades(settings)
    configure_time_sync(in_container)
    configure_journald(settings)
    configure_swap(settings, in_container)
    configure_fail2ban(settings)
    hardening.harden(in_container)


def configure_apt_sources(settings: BaseSettings, distribution: dict) -> None:
    if distribution["name"] != "Debian":
        # A BigBlueButton host runs Ubuntu, whose own sources carry its -security pocket.
        host.noop(f"apt sources are {distribution['name']}'s own")
        return
    hardening.configure_apt_sources(hardening.AptSources(
        codename=distribution["release_meta"]["VERSION_CODENAME"],
        mirror=settings.apt_mirror,
        security_mirror=settings.apt_security_mirror,
    ))


def install_packages(settings: BaseSettings, in_container: bool) -> None:
    hardening.restrict_assembler()
    if host.get_fact(DpkgInterrupted):
        server.shell(name="Finish the dpkg run a killed deploy left half done", commands=["dpkg --configure -a"])
    # cache_time: apt-get update at most once a day, so a second run is clean.
    apt.packages(
        name="Install base packages",
        packages=BASE_PACKAGES + hardening.packages(in_container) + list(settings.base_extra_packages),
        update=True,
        cache_time=86400,
    )


def configure_identity(settings: BaseSettings, in_container: bool) -> None:
    if in_container:
        # Docker and LXC bind-mount /etc/hostname and /etc/hosts: the runtime owns
        # them (hostnamectl fails with EBUSY). Start the container with --hostname.
        host.noop("hostname is the container runtime's (docker run --hostname)")
    else:
        server.hostname(name=f"Set hostname {host.name}", hostname=host.name)
        # sudo looks its own host name up; Debian maps it to 127.0.1.1.
        files.line(
            name="Map the hostname to 127.0.1.1 in /etc/hosts",
            path="/etc/hosts",
            line=r"^127\.0\.1\.1\s",
            replace=f"127.0.1.1\t{host.name}",
        )
    server.timezone(name=f"Set timezone {settings.timezone}", timezone=settings.timezone)


def configure_sysadmins(settings: BaseSettings) -> None:
    for sysadmin in settings.sysadmins:
        if sysadmin.present:
            server.user(
                name=f"Create sysadmin {sysadmin.name}",
                user=sysadmin.name,
                shell="/bin/bash",
                create_home=True,
                groups=["sudo"],
                append=True,  # keep groups added by hand (adm, ...)
                public_keys=list(sysadmin.ssh_keys),
                delete_keys=True,  # authorized_keys is exactly the keys in data
            )
            # useradd makes it 0755 on Debian 12 (before login.defs' UMASK 027 is set).
            files.directory(name=f"Set mode 0750 on /home/{sysadmin.name}", path=f"/home/{sysadmin.name}",
                            user=sysadmin.name, group=sysadmin.name, mode="0750")
        else:
            server.user(name=f"Remove sysadmin {sysadmin.name}", user=sysadmin.name, present=False)

    install_validated(
        path=SUDOERS_FILE,
        content=sysadmin_sudoers(settings),
        check="visudo -cf {candidate}",
        mode="0440",
    )


def configure_sshd(settings: BaseSettings) -> None:
    changed = install_validated(
        path=SSHD_DROP_IN,
        content=sshd_config(settings, host.get_fact(SshKexAlgorithms)),
        # The drop-in alone is a valid sshd config; ssh.service's ExecReload then
        # checks the whole configuration again (`sshd -t`) before it signals sshd.
        check="sshd -t -f {candidate}",
        mode="0644",
    )
    reload_after("Reload ssh", "systemctl reload ssh", changed, stamp="ssh", covers=[SSHD_DROP_IN])


def configure_firewall(settings: BaseSettings) -> None:
    # Raises before anything is written if SSH is missing from the openings.
    changed = install_validated(
        path=NFTABLES_CONF,
        content=nftables_ruleset(settings.openings, settings.ssh_listen_port),
        check="nft -c -f {candidate}",
        mode="0755",  # Debian ships it executable (#!/usr/sbin/nft -f)
    )
    systemd.service(name="Enable and start nftables", service="nftables", running=True, enabled=True)
    # reload-or-restart: on the first run the service may not be active yet.
    reload_after("Load /etc/nftables.conf", "systemctl reload-or-restart nftables", changed,
                 stamp="nftables", covers=[NFTABLES_CONF])


def configure_unattended_upgrades(settings: BaseSettings) -> None:
    put_text(AUTO_UPGRADES, render.auto_upgrades_config(settings))
    put_text(UNATTENDED_UPGRADES_DROP_IN, unattended_upgrades_config(settings))


def configure_time_sync(in_container: bool) -> None:
    # systemd-timesyncd.service has ConditionVirtualization=!container: systemd skips
    # it in containers, where the clock is the host's (granting CAP_SYS_TIME would let
    # it set the host clock). Enabled everywhere, started where it can run.
    systemd.service(
        name="Enable systemd-timesyncd",
        service="systemd-timesyncd",
        enabled=True,
        running=None if in_container else True,
    )


def configure_journald(settings: BaseSettings) -> None:
    journald = put_text(JOURNALD_DROP_IN, journald_config(settings))
    reload_after("Restart systemd-journald", "systemctl restart systemd-journald", [journald],
                 stamp="systemd-journald", covers=[JOURNALD_DROP_IN])


def configure_swap(settings: BaseSettings, in_container: bool) -> None:
    if settings.swap_file_mb == 0:
        return
    if in_container:
        # Swap is the kernel's, shared with the container host: never from inside.
        host.noop(f"no swap file in a container (swap_file_mb={settings.swap_file_mb})")
        return
    # Guarded by facts: once /swapfile exists it is never rewritten (resizing is a
    # manual step, see docs/base.md).
    if host.get_fact(File, path=SWAP_FILE) is None:
        server.shell(
            name=f"Create {SWAP_FILE} ({settings.swap_file_mb} MiB)",
            commands=[
                # dd, not fallocate: swapon(8) rejects files with holes on some filesystems.
                f"dd if=/dev/zero of={SWAP_FILE} bs=1M count={settings.swap_file_mb} status=none",
                f"chmod 0600 {SWAP_FILE}",
                f"mkswap {SWAP_FILE}",
            ],
        )
    files.line(
        name=f"Add {SWAP_FILE} to /etc/fstab",
        path="/etc/fstab",
        line=rf"^{SWAP_FILE}\s",
        replace=f"{SWAP_FILE} none swap sw 0 0",
    )
    if SWAP_FILE not in host.get_fact(ActiveSwaps):
        server.shell(name=f"Enable swap on {SWAP_FILE}", commands=[f"swapon {SWAP_FILE}"])


def configure_fail2ban(settings: BaseSettings) -> None:
    jail = put_text(FAIL2BAN_JAIL, fail2ban_jail(settings))
    systemd.service(name="Enable and start fail2ban", service="fail2ban", running=True, enabled=True)
    # A shell restart, not systemd.service(restarted=True): that one skips services
    # that were not running when facts were gathered, as on the first run.
    reload_after("Restart fail2ban", "systemctl restart fail2ban", [jail], stamp="fail2ban",
                 covers=[FAIL2BAN_JAIL])
