"""Outgoing mail in the lab, through the lab's real authenticated relay (runs after test_lab.py).

Every host's Postfix relays to relay.lab.example.org (lab/relay.py): Debian's Postfix on the
submission port with STARTTLS required and SASL logins checked by Dovecot, as a provider's
relay. It delivers every recipient into one Maildir, which these tests read. Each PHP stand-in
sends its mail the way its real app would (SMTP to the host's Postfix on loopback, as the
instance's user, From the association's sender); so does each Mattermost stand-in, with its
env file's MM_EMAILSETTINGS_* (POST /api/v4/email/test on its local-mode socket).
"""

from __future__ import annotations

import email.message
import json
import shlex
import subprocess
import time
import uuid
from email.utils import parseaddr

import pytest

from assotic.needs import as_instance_user
from assotic.preflight import load_inventory_like_pyinfra
from assotic.tenants import load_tenants
from lab import relay
from roles import mattermost, nextcloud, paheko
from roles.standin import STANDIN_ROOT, config_path
from tests.lab.shell import sh
from tests.lab.test_lab import INVENTORY, REPO, VENV_BIN, secrets_printed

TENANTS = [t for _, t in load_tenants(REPO / "group_data" / "tenants")[0]]
# (host, instance, tenant) of every PHP stand-in of the example associations.
STANDINS = [(app.host, role.instance(t), t) for t in TENANTS
            for name, role in (("nextcloud", nextcloud), ("paheko", paheko))
            if (app := getattr(t.apps, name)) is not None]
# The stand-in the queue tests send from: a Nextcloud one (the lab never has its release).
QUEUE_TEST_SENDER = next(s for s in STANDINS if s[1].app == "nextcloud")
ARRIVAL_TIMEOUT = 60  # seconds: a mail the relay takes is in its Maildir within a second or two


def on_relay(*command: str) -> None:
    subprocess.run(["docker", "exec", relay.RELAY_CONTAINER, *command], check=True)


def arrived(recipient: str) -> email.message.EmailMessage:
    """The mail the relay delivered for `recipient` (its X-Original-To), waiting for it."""
    return relay.wait_for_mail(lambda mail: mail["X-Original-To"] == recipient, timeout=ARRIVAL_TIMEOUT)


def queued_for(host: str, recipient: str) -> list[dict]:
    out = sh(host, "postqueue -j").stdout
    return [m for m in map(json.loads, filter(None, out.splitlines()))
            if any(r["address"] == recipient for r in m["recipients"])]


def wait_queued(host: str, recipient: str, reason: str, timeout: float = 60) -> dict:
    """The queued mail for `recipient` once Postfix gave the relay's answer containing `reason`."""
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = queued_for(host, recipient)
        reasons = [r.get("delay_reason", "") for m in found for r in m["recipients"]]
        if any(reason in text for text in reasons):
            return found[0]
        time.sleep(1)
    raise AssertionError(f"{host}: no mail for {recipient} deferred with {reason!r}: {found}")


def send_from_standin(host, inst, recipient: str) -> None:
    answer = sh(host, f"runuser -u {inst.user} -- php {STANDIN_ROOT}/mail.php "
                      f"{shlex.quote(config_path(inst))} {shlex.quote(recipient)}").stdout
    assert answer.startswith("250"), answer


def unique_recipient(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@lab.example.org"


def assert_relayed_over_tls_with_the_login(mail) -> None:
    """The relay's own Received header: TLS, and the platform relay's login."""
    received = " ".join(str(h) for h in mail.get_all("Received"))
    assert "using TLSv1.3" in received or "using TLSv1.2" in received, received
    assert f"Authenticated sender: {relay.RELAY_LOGIN}" in received, received


@pytest.mark.parametrize("host, inst, tenant", STANDINS, ids=[f"{i.app}-{t.slug}" for _, i, t in STANDINS])
def test_a_standins_mail_arrives_from_the_associations_sender(host, inst, tenant):
    if sh(host, f"test -e {shlex.quote(config_path(inst))}", check=False).returncode != 0:
        pytest.skip(f"{inst.app} of {tenant.slug} runs the real release (test_paheko_release.py "
                    "sends its mail)")
    recipient = unique_recipient(f"{inst.app}-{tenant.slug}")
    send_from_standin(host, inst, recipient)
    mail = arrived(recipient)
    assert parseaddr(mail["From"])[1] == tenant.mail_from
    assert parseaddr(mail["Reply-To"])[1] == tenant.mail_reply_to
    assert parseaddr(mail["Return-Path"])[1] == tenant.mail_from, "the envelope sender"
    assert_relayed_over_tls_with_the_login(mail)
    assert secrets_printed(mail.as_string()) == [], "a secret of the store is in the mail"
    assert queued_for(host, recipient) == [], "the mail is delivered, not left in the queue"


def mattermost_test_mail(host: str, inst, recipient: str) -> dict:
    """Ask the Mattermost stand-in of `inst` on `host` for its test mail: POST
    /api/v4/email/test on its local-mode socket, as the instance's user (the socket is 0600).
    Its JSON answer, an error's too (no curl -f)."""
    command = shlex.join([*as_instance_user(inst.user), "curl", "-sS", "--max-time", "60",
                          "--unix-socket", mattermost.local_socket(inst), "-X", "POST",
                          "-H", "Content-Type: application/json",
                          "--data", json.dumps({"to": recipient}),
                          "http://localhost/api/v4/email/test"])
    return json.loads(sh(host, command).stdout)


def test_each_mattermost_standins_mail_arrives_from_the_instances_sender():
    # The lab's instances as the deploy plans them; read here, not at collection: the
    # inventory only loads once `lab up` (test_lab.py) made the lab's secrets.
    instances = next(iter(load_inventory_like_pyinfra(INVENTORY))).data.platform.mattermost
    assert instances, "the lab declares Mattermost instances"
    for inst in instances:
        if mattermost.STANDIN_FILE not in sh(inst.host, f"cat {mattermost.dropin_path(inst)}").stdout:
            print(f"{inst.name} runs the real Mattermost: its test mail needs a system admin's session")
            continue
        sender, reply_to = inst.mail_sender(TENANTS)
        recipient = unique_recipient(f"mattermost-{inst.name}")
        answer = mattermost_test_mail(inst.host, inst, recipient)
        assert answer["status"] == "OK" and answer["smtp_reply"].startswith("250"), answer
        mail = arrived(recipient)
        assert parseaddr(mail["From"])[1] == sender, inst.name
        assert parseaddr(mail["Reply-To"] or "")[1] == (reply_to or ""), inst.name
        assert_relayed_over_tls_with_the_login(mail)
        assert secrets_printed(mail.as_string()) == [], f"{inst.name}: a secret of the store is in the mail"


def test_a_relay_outage_delays_mail_and_loses_none():
    host, inst, tenant = QUEUE_TEST_SENDER
    recipient = unique_recipient("outage")
    on_relay("systemctl", "stop", "postfix")
    try:
        send_from_standin(host, inst, recipient)
        waiting = wait_queued(host, recipient, "Connection refused")
        print(f"queued on {host} while the relay is down: {waiting}")
    finally:
        on_relay("systemctl", "start", "postfix")
    relay.wait_for_submission()
    sh(host, "postqueue -f")  # what a sysadmin does once the relay is back (docs/mail.md)
    mail = arrived(recipient)
    assert parseaddr(mail["From"])[1] == tenant.mail_from
    assert queued_for(host, recipient) == []


def verify_queue(host: str) -> subprocess.CompletedProcess:
    """`make verify`'s queue check on one host."""
    result = subprocess.run(
        [str(VENV_BIN / "pytest"), "-q", "-p", "no:cacheprovider", "tests/verify/test_mail.py",
         f"--inventory={INVENTORY}", "-k", f"test_no_mail_is_stuck_in_the_queue and {host}"],
        cwd=REPO, capture_output=True, text=True)
    print(result.stdout[-4000:], result.stderr[-2000:])
    return result


def set_relay_password(password: str) -> None:
    """Replace the relay's password file (Dovecot rereads it when it changes)."""
    line = relay.dovecot_password_line(relay.RELAY_LOGIN, password)
    subprocess.run(["docker", "exec", "-i", relay.RELAY_CONTAINER, "sh", "-c",
                    "cat > /etc/dovecot/assotic-relay.passwd.new && "
                    "chgrp dovecot /etc/dovecot/assotic-relay.passwd.new && "
                    "chmod 0640 /etc/dovecot/assotic-relay.passwd.new && "
                    "mv /etc/dovecot/assotic-relay.passwd.new /etc/dovecot/assotic-relay.passwd"],
                   input=line, text=True, check=True)


def test_a_wrong_relay_password_fails_verify_naming_the_mail_and_the_reason():
    host, inst, _ = QUEUE_TEST_SENDER
    recipient = unique_recipient("wrong-password")
    # The relay now expects another password than the one in the hosts' store.
    set_relay_password(uuid.uuid4().hex)
    try:
        send_from_standin(host, inst, recipient)
        waiting = wait_queued(host, recipient, "authentication failed")
        result = verify_queue(host)
        assert result.returncode != 0, "make verify must fail while a mail is refused"
        assert waiting["queue_id"] in result.stdout, "the verify failure names the queue id"
        assert recipient in result.stdout
        assert "authentication failed" in result.stdout, "and the relay's reason"
        assert secrets_printed(result.stdout + result.stderr) == []
    finally:
        set_relay_password(relay.ensure_relay_password())
    sh(host, "postqueue -f")
    arrived(recipient)
    assert verify_queue(host).returncode == 0, "verify passes again once the mail is gone"
