"""What roles/base promises on every host, checked on the host itself.

Expected values come from the host's pyinfra data through the role's own pure
functions (roles/base), so a check fails when the host drifts from its data.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from roles import base
from roles.base import hardening, render


@pytest.fixture(scope="module")
def settings(data, declared_openings) -> base.BaseSettings:
    return base.BaseSettings.from_data(data, openings=declared_openings)


# -- packages, identity -----------------------------------------------------------------


def test_base_packages_are_installed(host, settings, in_container):
    wanted = base.BASE_PACKAGES + hardening.packages(in_container) + list(settings.base_extra_packages)
    missing = [p for p in wanted if not host.package(p).is_installed]
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


def test_sshd_opens_no_tunnel_and_logs_key_fingerprints(sshd_effective):
    refused = ("allowtcpforwarding", "allowstreamlocalforwarding", "allowagentforwarding",
               "gatewayports", "permittunnel", "permituserenvironment", "tcpkeepalive", "compression")
    assert {key: sshd_effective[key] for key in refused} == {key: "no" for key in refused}
    assert sshd_effective["loglevel"] == "VERBOSE"
    assert (sshd_effective["clientaliveinterval"], sshd_effective["clientalivecountmax"]) == ("300", "2")


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


def test_apt_sources_hold_the_security_suite_in_deb822_form(host, settings):
    distribution = host.system_info.distribution
    if distribution != "debian":
        pytest.skip(f"{distribution}: its own apt sources")
    codename = host.system_info.codename
    sources = hardening.AptSources(codename=codename, mirror=settings.apt_mirror,
                                   security_mirror=settings.apt_security_mirror)
    assert host.file(hardening.APT_SOURCES).content_string == hardening.apt_sources(sources)
    # Nothing listed twice: sources.list keeps comments only.
    lines = host.file(hardening.APT_SOURCES_LIST).content_string.splitlines()
    assert [line for line in lines if line.strip() and not line.lstrip().startswith("#")] == []


def test_apt_really_has_the_security_origin(host):
    """What apt has fetched, not what a file says: without the security suite in its lists no
    security update can arrive, whatever unattended-upgrades is told."""
    distribution = host.system_info.distribution
    if distribution != "debian":
        pytest.skip(f"{distribution}: its own apt sources")
    policy = host.check_output("apt-cache policy")
    origin = f"n={host.system_info.codename}-security,l=Debian-Security"
    assert origin in policy, f"no {origin} origin in `apt-cache policy`:\n{policy}"


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


# -- the operating system's own hardening (roles/base/hardening.py) --------------------------


def test_login_defs_defaults(host):
    login_defs = host.file(hardening.LOGIN_DEFS).content_string
    for key, value in hardening.LOGIN_DEFS_SETTINGS:
        assert re.findall(rf"^{key}\s+(\S+)", login_defs, re.M) == [value], key


def test_no_core_dumps(host):
    assert host.file(hardening.LIMITS_DROP_IN).content_string == hardening.static_file("limits-assotic.conf.j2")
    merged = host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert "Storage=none" in merged and "ProcessSizeMax=0" in merged
    # A login shell really gets the hard limit (pam_limits reads limits.d).
    assert host.check_output("su -s /bin/sh -c 'ulimit -Hc' nobody") == "0"


def test_sysctls_are_written_and_applied_on_machines(host, in_container):
    assert host.file(hardening.SYSCTL_DROP_IN).content_string == hardening.sysctl_config()
    if in_container:
        pytest.skip("the kernel is the container host's: the file is written, not applied")
    wrong = {key: host.check_output(f"sysctl -n {key}") for key, value in hardening.SYSCTLS
             if host.check_output(f"sysctl -n {key}") != value}
    assert wrong == {}


def test_unused_kernel_modules_cannot_load(host):
    assert host.file(hardening.MODPROBE_DROP_IN).content_string == hardening.modprobe_config()
    if not host.exists("modprobe"):
        pytest.skip("no modprobe here (kmod is not installed in a minimal container): the file is all there is")
    shown = host.check_output("modprobe --showconfig | grep '^install ' || true")
    for module in hardening.BLOCKED_MODULES:
        assert f"install {module.replace('-', '_')} /bin/true" in shown, module


def test_idle_login_shells_end_and_dump_no_core(host):
    assert host.file(hardening.SHELL_PROFILE).content_string == hardening.shell_profile()
    # A real login shell: TMOUT is set and cannot be unset; the soft core limit is 0.
    seen = host.check_output("bash -lc 'echo $TMOUT; ulimit -Sc; unset TMOUT 2>/dev/null || echo kept'")
    assert seen.split() == [str(hardening.IDLE_SHELL_TIMEOUT), "0", "kept"]


def test_legal_banner(host):
    for path in hardening.BANNER_FILES:
        assert host.file(path).content_string == hardening.static_file("issue.j2"), path


def test_needrestart_lists_and_never_restarts(host):
    assert "$nrconf{restart} = 'l';" in host.file(hardening.NEEDRESTART_DROP_IN).content_string
    result = host.run("needrestart -b -r l")
    assert result.rc == 0, result.stderr
    assert "NEEDRESTART-VER:" in result.stdout


def test_login_sessions_get_a_private_tmpdir(host):
    # pam_tmpdir, from libpam-tmpdir, in the common session stack every login goes through.
    assert "pam_tmpdir.so" in host.file("/etc/pam.d/common-session").content_string


def test_lynis_profile_is_the_projects(host, in_container):
    profile = host.file(hardening.LYNIS_PROFILE)
    assert profile.content_string == hardening.lynis_profile(in_container)
    assert profile.mode & 0o007 == 0


def test_auditd_runs_with_the_projects_rules_on_machines(host, in_container):
    if in_container:
        pytest.skip("auditd cannot run in a container: the kernel's audit subsystem is not namespaced")
    assert host.service("auditd").is_running
    rules = host.check_output("auditctl -l")
    assert "-w /etc/sudoers -p wa -k sudo" in rules
