"""roles/base without any host: data checks, openings and every rendered file."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import pytest

from roles import base
from roles.base import render
from roles.base.facts import ActiveSwaps, ContainerType
from roles.base.model import BaseDataError, BaseSettings, Opening

CAMILLE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbQeFU3rlJF7h8SnFD4N0XhadTpqowgK/M7qannQ27G camille@laptop"
BOOKWORM_KEX = [  # `ssh -Q kex` on Debian 12 (OpenSSH 9.2)
    "diffie-hellman-group14-sha256", "diffie-hellman-group16-sha512", "ecdh-sha2-nistp256",
    "curve25519-sha256", "curve25519-sha256@libssh.org",
    "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
]
TRIXIE_KEX = BOOKWORM_KEX + ["mlkem768x25519-sha256"]  # OpenSSH 10.0 adds ML-KEM


def settings(**data) -> BaseSettings:
    return BaseSettings.from_data(data)


# -- host data ----------------------------------------------------------------------------


def test_defaults_apply_when_data_is_empty():
    s = settings()
    assert (s.sysadmins, s.timezone, s.swap_file_mb, s.journald_max_use) == ((), "Europe/Paris", 0, "200M")
    assert (s.unattended_upgrades_reboot_time, s.ssh_listen_port, s.base_extra_packages) == (None, 22, ())


def test_defaults_match_the_deploy_data_defaults():
    """The knobs pyinfra fills in (data_defaults of @deploy("Base host")) are exactly the fields
    BaseSettings reads from host data, with the same defaults: a knob added to one only fails here."""
    deploy_defaults = base.base.__wrapped__.deploy_data  # where pyinfra's @deploy keeps data_defaults
    # openings and the report address are not host data: deploy.py hands them over from the plan.
    field_defaults = {f.name: f.default for f in dataclasses.fields(BaseSettings)
                      if f.name not in ("openings", "update_report_mail_to")}
    assert set(deploy_defaults) == set(field_defaults)
    # Host data holds lists where BaseSettings keeps tuples.
    as_settings = {name: tuple(v) if isinstance(v, list) else v for name, v in deploy_defaults.items()}
    assert as_settings == field_defaults


def test_sysadmins_are_plain_dicts():
    s = settings(sysadmins=[{"name": "camille", "ssh_keys": [CAMILLE_KEY + "\n"]}])
    assert s.sysadmins == (base.Sysadmin("camille", (CAMILLE_KEY,)),)


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(BaseDataError) as error:
        settings(
            sysadmins=[{"name": "Camille Dupont", "ssh_keys": [CAMILLE_KEY]}, {"name": "root", "ssh_keys": ["x"]}],
            swap_file_mb=-1,
            journald_max_use="lots",
            unattended_upgrades_reboot_time="4h30",
            ssh_listen_port=70000,
            base_extra_packages="jq",
        )
    message = str(error.value)
    for field in ("sysadmins[0].name", "sysadmins[1].name", "swap_file_mb", "journald_max_use",
                  "unattended_upgrades_reboot_time", "ssh_listen_port", "base_extra_packages"):
        assert field in message


@pytest.mark.parametrize("item, field", [
    ({"name": "camille"}, "ssh_keys"),  # present without a key: could never log in
    ({"name": "camille", "ssh_keys": CAMILLE_KEY}, "ssh_keys"),  # a string, not a list
    ({"name": "camille", "ssh_keys": ["hunter2"]}, "ssh_keys"),
    ({"name": "camille", "ssh_keys": [CAMILLE_KEY], "sudo": True}, "unknown keys"),
    ({"name": "camille", "ssh_keys": [CAMILLE_KEY], "present": "no"}, "present"),
])
def test_bad_sysadmin_entries_name_the_field(item, field):
    with pytest.raises(BaseDataError, match=field):
        settings(sysadmins=[item])


def test_duplicate_sysadmins_are_refused():
    entry = {"name": "camille", "ssh_keys": [CAMILLE_KEY]}
    with pytest.raises(BaseDataError, match="duplicate"):
        settings(sysadmins=[entry, entry])


def test_a_removed_sysadmin_needs_no_key():
    s = settings(sysadmins=[{"name": "dominique", "present": False}])
    assert s.present_sysadmins == ()


# -- openings -----------------------------------------------------------------------------


def test_ssh_opening_follows_ssh_listen_port():
    assert base.ssh_openings({}) == [Opening(22, "tcp", "SSH")]
    assert base.ssh_openings({"ssh_listen_port": 2222}) == [Opening(2222, "tcp", "SSH")]


@pytest.mark.parametrize("kwargs", [
    {"port": 0, "protocol": "tcp"},
    {"port": 65536, "protocol": "tcp"},
    {"port": "32768-16384", "protocol": "udp"},  # reversed range
    {"port": "80,443", "protocol": "tcp"},
    {"port": 443, "protocol": "icmp"},
    {"port": 443, "protocol": "tcp", "sources": ("not-a-network",)},
    {"port": 443, "protocol": "tcp", "sources": "192.0.2.0/24"},  # a string, not a tuple
    {"port": 443, "protocol": "tcp", "comment": 'say "hi"'},  # would break the nft string
])
def test_bad_openings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Opening(**{"comment": "test", **kwargs})


def test_range_opening_covers_its_ports():
    media = Opening("16384-32768", "udp", "BBB media")
    assert media.covers(16384, "udp") and media.covers(32768, "udp")
    assert not media.covers(16383, "udp") and not media.covers(20000, "tcp")


# -- nftables -----------------------------------------------------------------------------


def test_ruleset_without_ssh_is_refused():
    with pytest.raises(ValueError, match="SSH"):
        base.nftables_ruleset([Opening(443, "tcp", "HTTPS")])
    with pytest.raises(ValueError, match="SSH"):  # SSH moved, the opening did not
        base.nftables_ruleset(base.ssh_openings({}), ssh_port=2222)


def test_ruleset_drops_by_default_and_opens_each_port():
    ruleset = base.nftables_ruleset(base.ssh_openings({}) + [Opening(443, "tcp", "HTTPS")])
    assert "policy drop;" in ruleset.split("chain input")[1].split("}")[0]
    assert 'tcp dport 22 accept comment "SSH"' in ruleset
    assert 'tcp dport 443 accept comment "HTTPS"' in ruleset
    statements = [l.strip() for l in ruleset.splitlines() if not l.strip().startswith("#")]
    assert "flush ruleset" not in statements  # fail2ban's own table must survive a reload
    assert statements.index("delete table inet filter") < statements.index("table inet filter {")


def test_ruleset_restricts_sources_per_address_family():
    ruleset = base.nftables_ruleset(base.ssh_openings({}) + [
        Opening("16384-32768", "udp", "BBB media", sources=("192.0.2.0/24", "2001:db8::/32", "198.51.100.7")),
        Opening(5060, "udp", "SIP", sources=("2001:db8::1",)),
    ])
    assert 'ip saddr { 192.0.2.0/24, 198.51.100.7 } udp dport 16384-32768 accept comment "BBB media"' in ruleset
    assert 'ip6 saddr { 2001:db8::/32 } udp dport 16384-32768 accept comment "BBB media"' in ruleset
    # An IPv6-only source list must not become an IPv4 rule open to everybody.
    sip_rules = [line.strip() for line in ruleset.splitlines() if "dport 5060" in line]
    assert sip_rules == ['ip6 saddr { 2001:db8::1 } udp dport 5060 accept comment "SIP"']


def test_duplicate_openings_render_once():
    https = Opening(443, "tcp", "HTTPS")
    ruleset = base.nftables_ruleset(base.ssh_openings({}) + [https, https])
    assert ruleset.count("dport 443") == 1


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed (apt-get install nftables)")
def test_rendered_ruleset_passes_nft_check(tmp_path):
    ruleset = base.nftables_ruleset(base.ssh_openings({}) + [
        Opening(443, "tcp", "HTTPS"),
        Opening("16384-32768", "udp", "BBB media", sources=("192.0.2.0/24", "2001:db8::/32")),
    ])
    path = tmp_path / "nftables.conf"
    path.write_text(ruleset)
    result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    assert result.returncode == 0, result.stderr


# -- sshd ---------------------------------------------------------------------------------


def test_sshd_drop_in_hardens_and_keeps_root_key_login():
    conf = base.sshd_config(settings(), BOOKWORM_KEX)
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no",
                 "PermitRootLogin prohibit-password", "X11Forwarding no", "Port 22"):
        assert f"\n{line}\n" in conf


def test_sshd_key_exchange_follows_the_openssh_release():
    kex_line = lambda conf: next(l for l in conf.splitlines() if l.startswith("KexAlgorithms "))
    bookworm = kex_line(base.sshd_config(settings(), BOOKWORM_KEX))
    trixie = kex_line(base.sshd_config(settings(), TRIXIE_KEX))
    assert "mlkem768x25519-sha256" not in bookworm  # unknown to OpenSSH 9.2: sshd -t would fail
    assert trixie.startswith("KexAlgorithms mlkem768x25519-sha256,")
    assert "diffie-hellman" not in trixie and "ecdh-sha2" not in trixie


def test_sshd_refuses_a_kex_list_pyinfra_cannot_speak():
    with pytest.raises(ValueError, match="paramiko|pyinfra"):
        render.kex_algorithms(["sntrup761x25519-sha512@openssh.com"])


def test_sshd_algorithms_are_ones_paramiko_speaks():
    paramiko = pytest.importorskip("paramiko")
    transport = paramiko.Transport
    assert set(render.SSH_CIPHERS) & set(transport._preferred_ciphers)
    assert set(render.SSH_MACS) & set(transport._preferred_macs)
    assert set(render.SSH_KEX_PREFERENCE) & set(transport._preferred_kex)


@pytest.mark.skipif(shutil.which("sshd") is None, reason="sshd is not installed (openssh-server)")
@pytest.mark.skipif(not os.path.isdir("/run/sshd"),
                    reason="sshd -t needs /run/sshd, made by ssh.service (.ci/run creates it)")
def test_sshd_drop_in_passes_sshd_check(tmp_path):
    kex = subprocess.run(["ssh", "-Q", "kex"], capture_output=True, text=True, check=True).stdout.split()
    path = tmp_path / "assotic.conf"
    path.write_text(base.sshd_config(settings(ssh_listen_port=2222), kex))
    result = subprocess.run(["sshd", "-t", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- sudoers, apt, journald, fail2ban -------------------------------------------------------


def test_sudoers_lists_present_sysadmins_only():
    s = settings(sysadmins=[
        {"name": "camille", "ssh_keys": [CAMILLE_KEY]},
        {"name": "dominique", "present": False},
    ])
    rules = [l for l in base.sysadmin_sudoers(s).splitlines() if l and not l.startswith("#")]
    assert rules == ["camille ALL=(ALL:ALL) NOPASSWD: ALL"]


def test_sudoers_without_sysadmins_grants_nothing():
    rules = [l for l in base.sysadmin_sudoers(settings()).splitlines() if l and not l.startswith("#")]
    assert rules == []


@pytest.mark.skipif(shutil.which("visudo") is None, reason="visudo is not installed (sudo)")
def test_sudoers_passes_visudo(tmp_path):
    path = tmp_path / "assotic-sysadmins"
    path.write_text(base.sysadmin_sudoers(settings(sysadmins=[{"name": "camille", "ssh_keys": [CAMILLE_KEY]}])))
    result = subprocess.run(["visudo", "-cf", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unattended_upgrades_security_only_and_reboot_option():
    never = render.unattended_upgrades_config(settings())
    at_430 = render.unattended_upgrades_config(settings(unattended_upgrades_reboot_time="04:30"))
    assert "#clear Unattended-Upgrade::Origins-Pattern;" in never
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in never and "Reboot-Time" not in never
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in at_430
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "04:30";' in at_430
    origins = [l.strip() for l in never.splitlines() if l.strip().startswith('"origin=')]
    assert origins and all("label=Debian-Security" in o for o in origins)
    assert 'APT::Periodic::Unattended-Upgrade "1";' in render.auto_upgrades_config(settings())


@pytest.mark.skipif(shutil.which("apt-config") is None, reason="apt-config is not installed here")
def test_update_reports_are_mailed_to_the_hosting_team_when_there_is_one(tmp_path):
    """apt's own parser reads the rendered file: Mail is set with mail_admin, absent without."""
    def parsed(text: str) -> str:
        (tmp_path / "uu.conf").write_text(text)
        return subprocess.run(["apt-config", "-c", str(tmp_path / "uu.conf"), "dump", "Unattended-Upgrade"],
                              capture_output=True, text=True, check=True).stdout

    mailed = parsed(render.unattended_upgrades_config(
        BaseSettings.from_data({}, update_report_mail_to="equipe@hosting.example.net")))
    assert 'Unattended-Upgrade::Mail "equipe@hosting.example.net";' in mailed
    assert 'Unattended-Upgrade::MailReport "on-change";' in mailed
    assert "Unattended-Upgrade::Mail " not in parsed(render.unattended_upgrades_config(settings()))


def test_journald_limit():
    assert "\nSystemMaxUse=1G\n" in render.journald_config(settings(journald_max_use="1G"))


def test_fail2ban_jail_uses_the_journal_and_the_ssh_port():
    jail = render.fail2ban_jail(settings(ssh_listen_port=2222))
    sshd_section = jail.split("[sshd]")[1]
    assert "enabled = true" in sshd_section
    assert "backend = systemd" in sshd_section
    assert "port = 2222" in sshd_section
    assert "banaction = nftables-multiport" in jail
    assert base.FAIL2BAN_JAIL.endswith(".local")  # read after Debian's jail.d/*.conf


# -- facts --------------------------------------------------------------------------------


def test_fact_parsers():
    assert ContainerType().process(["docker"]) == "docker"
    assert ContainerType().process(["none"]) == "none"
    swaps = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority",
             "/swapfile                               file\t\t1048572\t\t0\t\t-2"]
    assert ActiveSwaps().process(swaps) == ["/swapfile"]
    assert ActiveSwaps().process(swaps[:1]) == []


def test_sshd_drop_in_is_read_before_other_drop_ins():
    # sshd keeps the first value it reads; cloud images ship 50-cloud-init.conf.
    name = base.SSHD_DROP_IN.rsplit("/", 1)[1]
    assert name.endswith(".conf") and name < "50-cloud-init.conf"


def test_folder_facts_are_empty_mappings_when_nothing_is_there():
    """pyinfra hands a fact's default() when its command prints nothing (an empty or missing
    folder): put_text and the stat checks then see "absent", not None."""
    from roles.remote_files import FolderFiles, PathStats

    assert FolderFiles.default() == {} and PathStats.default() == {}
    line = "/etc/x.conf|root|root|644|" + "a" * 40
    assert FolderFiles().process([line]) == {"/etc/x.conf": ("a" * 40, "root", "root", 0o644)}
