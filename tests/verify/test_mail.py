"""What roles/mail promises on every host: Postfix as a null client, its secrets root-only,
and no mail stuck in its queue. Expected values come from the host's plan and data."""

from __future__ import annotations

import shlex
import time

import pytest

from roles import mail


@pytest.fixture(scope="module")
def settings(pyinfra_host, data, plan) -> mail.MailSettings:
    return mail.settings_from(pyinfra_host.name, data, plan.mail)


def test_postfix_runs_with_the_rendered_configuration(host, settings):
    assert host.service("postfix").is_running
    assert host.file(mail.MAIN_CF).content_string == mail.main_cf(settings)
    assert host.run("postfix check").rc == 0


def test_postfix_listens_on_loopback_only(host):
    """Port 25 on 127.0.0.1 (and ::1 where the host has IPv6), nowhere else."""
    sockets = host.check_output("ss -Hltn 'sport = :25'").splitlines()
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in sockets}
    assert addresses and addresses <= {"127.0.0.1", "[::1]"}, sockets


def test_postfix_delivers_nothing_here(host):
    assert host.check_output("postconf -h mydestination") == ""
    assert host.check_output("postconf -h local_transport").startswith("error:")


def test_the_relay_passwords_are_root_only(host):
    for path in (mail.PASSWORD_MAP, f"{mail.PASSWORD_MAP}.db"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), path


def test_each_sender_finds_its_relay_login(host, settings):
    """Postfix's own lookup in the map it reads (postmap -q), never printing the password."""
    for route in settings.plan.routes:
        key = route.sender or f"[{route.relay.host}]:{route.relay.port}"
        found = host.run(f"postmap -q {shlex.quote(key)} hash:{mail.PASSWORD_MAP} | cut -d: -f1")
        assert found.stdout.strip() == route.relay.login, key


def test_no_mail_is_stuck_in_the_queue(host, data):
    """A mail waiting too long, or refused for a reason no retry cures (a wrong relay
    password), is named with the relay's own words: what `make verify` tells the sysadmin."""
    max_age = 60 * int(getattr(data, "mail_max_wait_minutes", None) or mail.DEFAULTS["mail_max_wait_minutes"])
    stuck = mail.stuck_mail(host.check_output("postqueue -j"), time.time(), max_age)
    assert stuck == [], "mail waiting in the queue of this host:\n  " + "\n  ".join(stuck)
