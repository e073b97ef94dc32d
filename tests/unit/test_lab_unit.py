"""Unit tests of lab/harness.py's pure functions: no Docker engine, no container."""

from __future__ import annotations

import os

import dataclasses
import runpy
from pathlib import Path

import pytest
from pyinfra.connectors.ssh import connector_data_meta
from pyinfra.connectors.sshuserclient.client import StrictPolicy, get_missing_host_key_policy

from lab import harness as lab
from lab.harness import LAB_HOSTS, LabHost

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_1 = LabHost("web-1", "bookworm", 2201, "web")
WEB_2 = LabHost("web-2", "trixie", 2202, "web")
ED25519_PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5bm90cmVhbGx5dXNlZGFueXdoZXJl root@web-1"


def test_lab_hosts_are_the_two_web_hosts():
    assert WEB_1 in LAB_HOSTS and WEB_2 in LAB_HOSTS
    assert [h.name for h in LAB_HOSTS if h.group == "web"] == ["web-1", "web-2"]


def test_lab_hosts_have_unique_names_and_ports():
    assert len({h.name for h in LAB_HOSTS}) == len(LAB_HOSTS)
    assert len({h.ssh_port for h in LAB_HOSTS}) == len(LAB_HOSTS)
    assert len({lab.container_name(h) for h in LAB_HOSTS}) == len(LAB_HOSTS)


def test_lab_host_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WEB_1.ssh_port = 22  # type: ignore[misc]


def test_lab_hosts_is_not_a_tuple_pyinfra_would_misread():
    # inventory/lab.py imports LAB_HOSTS; pyinfra reads a top-level tuple as (hosts, data).
    assert not isinstance(LAB_HOSTS, tuple)


def test_every_suite_has_a_debian_release():
    for h in LAB_HOSTS:
        assert h.suite in lab.DEBIAN_RELEASES
    assert lab.debian_release("bookworm") == "Debian 12"
    assert lab.debian_release("trixie") == "Debian 13"
    assert lab.debian_release("sid") == "sid"


def test_names_of_containers_and_images():
    assert lab.container_name(WEB_1) == "assotic-lab-web-1"
    assert lab.image_tag("trixie") == "assotic-lab:trixie"
    assert lab.image_tag("bookworm", "assotic-lab-test") == "assotic-lab-test:bookworm"


def test_find_host():
    assert lab.find_host("web-2") == WEB_2
    with pytest.raises(lab.LabError, match="web-1"):
        lab.find_host("nope")


def test_lab_ssh_data_reaches_loopback_with_the_lab_key():
    data = lab.lab_ssh_data(WEB_2)
    assert data["ssh_hostname"] == "127.0.0.1"
    assert data["ssh_port"] == 2202
    assert data["ssh_user"] == "root"
    assert data["ssh_key"] == str(REPO_ROOT / ".lab" / "ssh" / "id_ed25519")
    assert data["ssh_known_hosts_file"] == str(REPO_ROOT / ".lab" / "ssh" / "known_hosts")
    assert Path(data["ssh_key"]).is_absolute()
    assert Path(data["ssh_known_hosts_file"]).is_absolute()


def test_lab_ssh_data_uses_pyinfra_key_names_and_strict_host_keys():
    data = lab.lab_ssh_data(WEB_1)
    unknown = set(data) - set(connector_data_meta)
    assert not unknown, f"not pyinfra ssh connector data: {unknown}"
    policy = get_missing_host_key_policy(data["ssh_strict_host_key_checking"])
    assert isinstance(policy, StrictPolicy)


def test_inventory_file_lists_the_web_hosts(monkeypatch):
    # inventory/lab.py sets these with setdefault: set them so the test leaves no trace.
    monkeypatch.setenv("ASSOTIC_SECRETS_FILE", "x")
    monkeypatch.setenv("ASSOTIC_SECRETS_KEY", "y")
    inventory = runpy.run_path(str(REPO_ROOT / "inventory" / "lab.py"))
    assert [name for name, _ in inventory["web"]] == ["web-1", "web-2"]
    assert inventory["web"][0][1]["ssh_port"] == 2201


def test_run_kwargs_use_the_flags_that_work_here():
    kwargs = lab.run_kwargs(WEB_1)
    assert kwargs["image"] == "assotic-lab:bookworm"
    assert kwargs["name"] == "assotic-lab-web-1"
    assert kwargs["hostname"] == "web-1"
    assert kwargs["command"] == ["/lib/systemd/systemd"]
    assert kwargs["detach"] is True
    assert sorted(kwargs["cap_add"]) == ["NET_ADMIN", "SYS_ADMIN"]
    assert set(kwargs["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}
    assert kwargs["cgroupns"] == "host"
    assert kwargs["volumes"] == {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}
    assert set(kwargs["tmpfs"]) == {"/run", "/run/lock"}
    assert kwargs["restart_policy"] == {"Name": "no"}


def test_run_kwargs_never_ask_for_privileges_the_sandbox_refuses():
    kwargs = lab.run_kwargs(WEB_2)
    assert not kwargs.get("privileged")
    assert "ALL" not in kwargs["cap_add"]


def test_run_kwargs_publish_ssh_on_loopback_only():
    assert lab.run_kwargs(WEB_2)["ports"] == {"22/tcp": ("127.0.0.1", 2202)}
    assert lab.run_kwargs(WEB_2, image="other:tag")["image"] == "other:tag"


def test_a_container_is_labelled_with_the_secrets_key_it_is_deployed_with_and_reused_only_with_it():
    key_id = lab.secrets_key_id(b"key of this checkout")
    labels = lab.run_kwargs(WEB_1, key_id=key_id)["labels"]
    assert lab.reuse_refusal(labels, key_id) is None
    other = lab.reuse_refusal(labels, lab.secrets_key_id(b"key of another checkout"))
    assert other and "another secrets key" in other and key_id in other


def test_a_container_without_the_secrets_key_label_is_not_reused():
    key_id = lab.secrets_key_id(b"key")
    assert "no secrets-key label" in lab.reuse_refusal({"assotic.lab": "1"}, key_id)
    assert lab.reuse_refusal({lab.SECRETS_KEY_LABEL: ""}, key_id)


def test_the_secrets_key_id_is_stable_and_does_not_contain_the_key():
    key = b"k" * 44
    assert lab.secrets_key_id(key) == lab.secrets_key_id(key)
    assert lab.secrets_key_id(key) != lab.secrets_key_id(key[:-1] + b"j")
    assert "k" * 4 not in lab.secrets_key_id(key)


def test_known_hosts_line_drops_the_comment_and_brackets_the_port():
    line = lab.known_hosts_line(WEB_1, ED25519_PUB + "\n")
    key_data = ED25519_PUB.split()[1]
    assert line == f"[127.0.0.1]:2201 ssh-ed25519 {key_data}"


def test_known_hosts_line_accepts_ecdsa_and_rsa():
    assert lab.known_hosts_line(WEB_2, "ecdsa-sha2-nistp256 AAAAE2 c").startswith(
        "[127.0.0.1]:2202 ecdsa-sha2-nistp256 AAAAE2"
    )
    assert lab.known_hosts_line(WEB_2, "ssh-rsa AAAAB3").endswith(" ssh-rsa AAAAB3")


@pytest.mark.parametrize("bad", ["", "ssh-ed25519", "garbage AAAA", "cat: no such file"])
def test_known_hosts_line_rejects_what_is_not_a_public_key(bad):
    with pytest.raises(ValueError):
        lab.known_hosts_line(WEB_1, bad)


def test_debootstrap_command():
    command = lab.debootstrap_command("trixie", Path("/tmp/rootfs"))
    assert command[0] == "debootstrap"
    assert "--variant=minbase" in command
    assert command[-3:] == ["trixie", "/tmp/rootfs", "http://deb.debian.org/debian"]
    include = next(arg for arg in command if arg.startswith("--include="))
    packages = set(include.removeprefix("--include=").split(","))
    for needed in ("systemd", "systemd-sysv", "python3", "openssh-server", "iproute2"):
        assert needed in packages


def test_prepare_script_makes_own_host_keys_once_and_keeps_the_key_off_the_command_line():
    script = lab.prepare_script()
    assert "rm -f /etc/ssh/ssh_host_*" in script
    assert "ssh-keygen -A" in script
    assert f"if [ ! -e {lab.PREPARED_MARKER} ]" in script
    assert "chmod 0600 /root/.ssh/authorized_keys" in script
    assert '"$LAB_PUBKEY"' in script


def test_a_lab_slot_shifts_names_ports_and_state_folder():
    import subprocess
    import sys

    probe = ("from lab import harness as lab; h = lab.LAB_HOSTS[0]; "
             "print(lab.container_name(h), h.ssh_port, lab.LAB_DIR.name)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "ASSOTIC_LAB_SLOT": "4"}, check=True).stdout.split()
    assert out == ["assotic-lab4-web-1", "2241", ".lab4"]


def test_a_lab_host_is_made_knowing_the_mail_relay_and_not_reused_without_it():
    from lab import relay

    wanted = relay.extra_hosts()
    kwargs = lab.run_kwargs(WEB_1, extra_hosts=wanted)
    assert kwargs["extra_hosts"] == {relay.RELAY_NAME: relay.RELAY_ADDRESS}
    # Docker keeps them as name:address (docker inspect .HostConfig.ExtraHosts).
    made_with = [f"{relay.RELAY_NAME}:{relay.RELAY_ADDRESS}"]
    assert lab.extra_hosts_refusal(made_with, wanted) is None
    for older in (None, [], [f"{relay.RELAY_NAME}:10.0.0.9"]):
        refusal = lab.extra_hosts_refusal(older, wanted)
        assert refusal and relay.RELAY_NAME in refusal and "mail relay" in refusal
