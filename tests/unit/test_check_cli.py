"""`make check` and `pyinfra ... deploy.py` run the same preflight, before any connection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """Secrets store and key in a temporary folder, so the tests never touch real ones."""
    return {**os.environ, "ASSOTIC_SECRETS_FILE": str(tmp_path / "store.enc.json"),
            "ASSOTIC_SECRETS_KEY": str(tmp_path / "secrets.key")}


def inventory(tmp_path: Path, port: int = 22) -> Path:
    path = tmp_path / "inventory" / "prod.py"
    path.parent.mkdir()
    path.write_text(
        f'web = [("web-1", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}}}),\n'
        f'       ("web-2", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}}})]\n'
    )
    return path


def run(*args: str, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_check_accepts_the_examples_and_writes_nothing(tmp_path, env):
    assert run(str(VENV_BIN / "python"), "-m", "commands", "secrets", "init", env=env).returncode == 0
    store_before = Path(env["ASSOTIC_SECRETS_FILE"]).read_bytes()
    result = run(str(VENV_BIN / "python"), "-m", "commands", "check",
                 "--inventory", str(inventory(tmp_path)), env=env)
    assert result.returncode == 0, result.stderr
    assert "3 association(s) are valid" in result.stdout
    assert "generated secret(s) are not in the store yet" in result.stdout
    assert "new secret(s) in the encrypted store" not in result.stderr  # it wrote none
    assert Path(env["ASSOTIC_SECRETS_FILE"]).read_bytes() == store_before


def test_check_refuses_the_example_inventory_until_the_sip_password_is_stored(env):
    """inventory/example.py (web, BigBlueButton and TURN hosts) through `make check`, as its
    docstring tells the operator: refused, naming the missing SIP password; valid once stored."""
    python = str(VENV_BIN / "python")
    check = (python, "-m", "commands", "check", "--inventory", "inventory/example.py")
    assert run(python, "-m", "commands", "secrets", "init", env=env).returncode == 0
    refused = run(*check, env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "inventory/example.py: bbb-1.bbb_sip.password_secret" in refused.stderr
    assert "make secret-set NAME=sip/bbb-1/password" in refused.stderr

    stored = run(python, "-m", "commands", "secrets", "set", "sip/bbb-1/password",
                 env=env, stdin="not-a-real-sip-password")
    assert stored.returncode == 0, stored.stderr
    store_before = Path(env["ASSOTIC_SECRETS_FILE"]).read_bytes()
    result = run(*check, env=env)
    assert result.returncode == 0, result.stderr
    assert "hosts: web-1, web-2, bbb-1, turn-1" in result.stdout
    assert Path(env["ASSOTIC_SECRETS_FILE"]).read_bytes() == store_before


def test_check_reports_every_problem_of_every_file_and_exits_non_zero(tmp_path, env):
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    (tenants / "amap.yml").write_text("slug: Amap\nname: AMAP\n")
    (tenants / "velo.yml").write_text("- a list\n")
    result = run(str(VENV_BIN / "python"), "-m", "commands", "check", "--inventory",
                 str(inventory(tmp_path)), "--tenants", str(tenants), env=env)
    assert result.returncode == 2
    report = result.stderr
    assert "nothing was deployed" in report
    for expected in ("amap.yml: slug: 2 to 20 characters", "amap.yml: contact: required",
                     "velo.yml: the top level is a list", "secrets.key"):
        assert expected in report, report


def test_pyinfra_with_a_bad_tenant_touches_no_host(tmp_path, env):
    """A real `pyinfra <inventory> deploy.py` must stop before opening any connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0)
    port = listener.getsockname()[1]
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    (tenants / "amap.yml").write_text("slug: amap\nname: AMAP\ncontact: {email: nope}\n")
    result = run(str(VENV_BIN / "pyinfra"), "-y", str(inventory(tmp_path, port)), "deploy.py",
                 env={**env, "ASSOTIC_TENANTS_DIR": str(tenants)})
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody knocked on the host's SSH port
    listener.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "amap.yml: contact.email: an e-mail address" in result.stderr
    assert "inventory/prod.py" not in result.stderr or "nothing was deployed" in result.stderr
    assert "Connecting" not in result.stdout + result.stderr


def test_check_names_every_problem_of_the_mail_data_at_once(tmp_path, env):
    """A tenant's own relay, bad in three ways, and a relay given to one host in the inventory:
    every problem named with its file and field, before anything else happens."""
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    (tenants / "amap.yml").write_text(
        "slug: amap\nname: AMAP\ncontact: {email: bureau@amap.example.org}\n"
        "apps: {paheko: {host: web-1, domain: gestion.amap.example.org}}\n"
        "admins: [{name: A, email: a@amap.example.org}]\n"
        "mail: {from: nope, relay: {host: smtp.provider.example, port: 25, tls: plain}}\n")
    path = inventory(tmp_path)
    path.write_text(path.read_text() + 'web[0][1]["mail_relay"] = {"host": "smtp.example.net", '
                    '"login": "x", "password": "in clear"}\n')
    result = run(str(VENV_BIN / "python"), "-m", "commands", "check", "--inventory", str(path),
                 "--tenants", str(tenants), env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    for expected in ("amap.yml: mail.from: an e-mail address", "amap.yml: mail.relay.tls:",
                     "amap.yml: mail.relay.login: required", "web-1.mail_relay.password: no such key"):
        assert expected in result.stderr, result.stderr
    assert "in clear" not in result.stderr
