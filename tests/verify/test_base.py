"""What roles/base promises on every host, checked on the host itself.

Expected values come from the host's pyinfra data through the role's own pure
functions (roles/base), so a check fails when the host drifts from its data.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from roles import base
from roles.base import render


@pytest.fixture(scope="module")
def settings(data, declared_openings) -> base.BaseSettings:
    return base.BaseSettings.from_data(data, openings=declared_openings)


# -- packages, identity -----------------------------------------------------------------


def test_base_packages_are_installed(host, settings):
    missing = [p for p in base.BASE_PACKAGES + list(settings.base_extra_packages)
               if not host.package(p).is_installed]
    assert missing == []


def test_hostname_is_the_inventory_name(host, pyinfra_host):
    # In a container the runtime sets it (docker run --hostname): the lab must match the inventory.
    assert host.check_output("uname -n") == pyinfra_host.name


def test_timezone(host, settings):
    assert host.check_output("readlink -f /etc/localtime").endswith(f"/zoneinfo/{settings.timezone}")


# -- sysadmins and sudo -------------------------------------------------------------------


def test_sysadmins_log_in_with_exactly_their_keys(host, settings):
    for sysadmin in settings.present_sysadmins:
        user = host.user(sysadmin.name)
        assert user.exists, sysadmin.name
        assert "sudo" in user.groups, sysadmin.name
        keys = host.file(f"{user.home}/.ssh/authorized_keys")
        assert keys.user == sysadmin.name and keys.mode == 0o600, sysadmin.name
        assert keys.content_string.splitlines() == list(sysadmin.ssh_keys), sysadmin.name


def test_removed_sysadmins_are_gone(host, settings):
    removed = [s.name for s in settings.sysadmins if not s.present]
    if not removed:
        pytest.skip("no sysadmin marked present: false in host data")
    assert [name for name in removed if host.user(name).exists] == []


def test_sudoers_file_grants_the_sysadmins_and_is_valid(host, settings):
    sudoers = host.file(base.SUDOERS_FILE)
    assert (sudoers.user, sudoers.group, sudoers.mode) == ("root", "root", 0o440)
    assert sudoers.content_string == base.sysadmin_sudoers(settings)
    assert host.run("visudo -c").rc == 0


# -- sshd ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd_effective(host) -> dict[str, str]:
    """`sshd -T`: the configuration sshd really uses, after all includes."""
    lines = host.check_output("sshd -T").splitlines()
    return {key: value for key, _, value in (line.partition(" ") for line in lines)}


def test_sshd_accepts_keys_only(sshd_effective, settings):
    assert sshd_effective["passwordauthentication"] == "no"
    assert sshd_effective["kbdinteractiveauthentication"] == "no"
    assert sshd_effective["permitrootlogin"] == "without-password"  # = prohibit-password
    assert sshd_effective["x11forwarding"] == "no"
    assert sshd_effective["maxauthtries"] == str(render.SSH_MAX_AUTH_TRIES)
    assert sshd_effective["port"] == str(settings.ssh_listen_port)


def test_sshd_uses_modern_algorithms_only(sshd_effective):
    assert sshd_effective["ciphers"].split(",") == list(render.SSH_CIPHERS)
    assert sshd_effective["macs"].split(",") == list(render.SSH_MACS)
    kex = sshd_effective["kexalgorithms"].split(",")
    assert set(kex) <= set(render.SSH_KEX_PREFERENCE)
    assert "curve25519-sha256@libssh.org" in kex  # what pyinfra's paramiko speaks


def test_sshd_drop_in_is_the_rendered_one(host, settings):
    supported_kex = host.check_output("ssh -Q kex").split()
    drop_in = host.file(base.SSHD_DROP_IN)
    assert drop_in.content_string == base.sshd_config(settings, supported_kex)


def test_no_world_writable_files_in_security_config(host):
    paths = "/etc/ssh /etc/sudoers /etc/sudoers.d /etc/nftables.conf /etc/fail2ban /etc/apt/apt.conf.d"
    found = host.check_output(f"find {paths} ! -type l -perm -o+w")
    assert found == ""


# -- firewall -----------------------------------------------------------------------------


def test_nftables_is_enabled_and_loaded(host):
    service = host.service("nftables")
    assert service.is_enabled and service.is_running


def test_firewall_drops_by_default_and_accepts_ssh(host, settings):
    ruleset = host.check_output("nft list ruleset")
    input_chain = re.search(r"chain input \{(.*?)\n\t\}", ruleset, re.S)
    assert input_chain, ruleset
    assert "policy drop;" in input_chain.group(1)
    assert re.search(rf"tcp dport {settings.ssh_listen_port} accept", input_chain.group(1))


def test_firewall_has_one_rule_per_declared_opening(host, settings):
    ruleset = host.check_output("nft list table inet filter")
    for opening in settings.openings:
        expected = f'{opening.protocol} dport {opening.nft_port} accept comment "{opening.comment}"'
        assert expected in ruleset, opening
    assert host.file(base.NFTABLES_CONF).content_string == base.nftables_ruleset(
        settings.openings, settings.ssh_listen_port
    )


def test_no_public_tcp_listener_outside_the_openings(host, settings):
    undeclared = []
    for line in host.check_output("ss -tlnH").splitlines():
        local = line.split()[3]  # State Recv-Q Send-Q Local:Port Peer:Port
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        if address not in ("*", "") and ipaddress.ip_address(address).is_loopback:
            continue
        if "%lo" in local:
            continue
        if not any(o.covers(int(port), "tcp") for o in settings.openings):
            undeclared.append(local)
    assert undeclared == [], "listening on ports the firewall does not open (declare an Opening)"


# -- updates, time, logs, swap ------------------------------------------------------------


def test_unattended_upgrades_installs_security_updates(host, settings):
    dump = host.check_output("apt-config dump")
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    origins = re.findall(r'^Unattended-Upgrade::Origins-Pattern:: "(.*)";$', dump, re.M)
    assert origins and all("label=Debian-Security" in o for o in origins), origins
    reboot = settings.unattended_upgrades_reboot_time
    assert f'Unattended-Upgrade::Automatic-Reboot "{"true" if reboot else "false"}";' in dump
    if reboot:
        assert f'Unattended-Upgrade::Automatic-Reboot-Time "{reboot}";' in dump
    assert host.service("apt-daily-upgrade.timer").is_enabled


def test_timesyncd_is_enabled_and_runs_outside_containers(host, in_container):
    timesyncd = host.service("systemd-timesyncd")
    assert timesyncd.is_enabled
    if in_container:
        # The unit has ConditionVirtualization=!container: in a container the clock is the
        # host's, and granting CAP_SYS_TIME would let it change the host clock.
        return
    assert timesyncd.is_running


def test_journald_size_is_bounded(host, settings):
    assert host.file(base.JOURNALD_DROP_IN).content_string == render.journald_config(settings)
    merged = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert f"SystemMaxUse={settings.journald_max_use}" in merged


def test_swap_file(host, settings, in_container):
    if settings.swap_file_mb == 0:
        pytest.skip("swap_file_mb is 0: no swap file wanted")
    if in_container:
        pytest.skip("swap is the container host's kernel's; the role does not create it here")
    assert base.SWAP_FILE in host.file("/proc/swaps").content_string
    assert host.file(base.SWAP_FILE).mode == 0o600
    assert re.search(rf"^{base.SWAP_FILE}\s+none\s+swap", host.file("/etc/fstab").content_string, re.M)


# -- fail2ban -----------------------------------------------------------------------------


def test_fail2ban_watches_sshd(host, settings):
    service = host.service("fail2ban")
    assert service.is_enabled and service.is_running
    status = host.run("fail2ban-client status sshd")
    assert status.rc == 0, status.stderr
    assert "Journal matches:" in status.stdout  # the systemd backend, not a log file
    assert host.file(base.FAIL2BAN_JAIL).content_string == render.fail2ban_jail(settings)
