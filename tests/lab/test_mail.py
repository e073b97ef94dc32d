"""Outgoing mail in the lab, on the deployed hosts (runs after test_lab.py).

Each PHP stand-in sends one mail the way its real app would (SMTP to the host's Postfix on
loopback, as the instance's user, From the association's sender); so does each Mattermost
stand-in, through its env file's MM_EMAILSETTINGS_* (POST /api/v4/email/test on its local-mode
socket). Postfix takes each, with that envelope sender, into its queue. The lab has no relay yet (data mail_relay is None), so the
mail waits there, as the null client promises. Delivery through a real authenticated relay
is the next step of issue 11 (docs/mail.md).
"""

from __future__ import annotations

import ast
import json
import shlex

import pytest

from assotic.mattermost import build_instances
from assotic.needs import as_instance_user
from assotic.tenants import load_tenants
from roles.standin import STANDIN_ROOT, config_path
from roles import mattermost, nextcloud, paheko
from tests.lab.shell import sh
from tests.lab.test_lab import REPO

LOADED = load_tenants(REPO / "group_data" / "tenants")[0]
TENANTS = [t for _, t in LOADED]
# (host, instance, tenant) of every PHP stand-in of the example associations.
STANDINS = [(app.host, role.instance(t), t) for t in TENANTS
            for name, role in (("nextcloud", nextcloud), ("paheko", paheko))
            if (app := getattr(t.apps, name)) is not None]


def declared_mattermost_instances() -> dict:
    """`mattermost_instances` as written in group_data/all.py (the lab's), read without
    running that file (it needs a pyinfra inventory)."""
    source = (REPO / "group_data" / "all.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "mattermost_instances":
            return ast.literal_eval(node.value)
    raise AssertionError("no `mattermost_instances = {...}` in group_data/all.py")


MATTERMOST_INSTANCES = build_instances(declared_mattermost_instances(), LOADED)[0]


def queued_from(host: str, sender: str) -> list[dict]:
    out = sh(host, "postqueue -j").stdout
    return [m for m in map(json.loads, filter(None, out.splitlines())) if m.get("sender") == sender]


@pytest.mark.parametrize("host, inst, tenant", STANDINS, ids=[f"{i.app}-{t.slug}" for _, i, t in STANDINS])
def test_a_standins_mail_reaches_the_hosts_postfix_from_the_associations_sender(host, inst, tenant):
    recipient = f"test-{inst.app}-{tenant.slug}@lab.example.org"
    before = len(queued_from(host, tenant.mail_from))
    answer = sh(host, f"runuser -u {inst.user} -- php {STANDIN_ROOT}/mail.php "
                      f"{shlex.quote(config_path(inst))} {shlex.quote(recipient)}").stdout
    assert answer.startswith("250"), answer
    waiting = queued_from(host, tenant.mail_from)
    assert len(waiting) == before + 1
    assert any(r["address"] == recipient for m in waiting for r in m["recipients"])


def mattermost_test_mail(host: str, inst, recipient: str) -> dict:
    """Ask the Mattermost stand-in of `inst` on `host` for its test mail: POST
    /api/v4/email/test on its local-mode socket, as the instance's user (the socket is 0600),
    as an admin would run it by hand. Its JSON answer, an error's too (no curl -f)."""
    command = shlex.join([*as_instance_user(inst.user), "curl", "-sS", "--max-time", "60",
                          "--unix-socket", mattermost.local_socket(inst), "-X", "POST",
                          "-H", "Content-Type: application/json",
                          "--data", json.dumps({"to": recipient}),
                          "http://localhost/api/v4/email/test"])
    return json.loads(sh(host, command).stdout)


@pytest.mark.parametrize("inst", MATTERMOST_INSTANCES, ids=[f"mattermost-{i.name}" for i in MATTERMOST_INSTANCES])
def test_a_mattermost_standins_mail_reaches_the_hosts_postfix_from_the_instances_sender(inst):
    if mattermost.STANDIN_FILE not in sh(inst.host, f"cat {mattermost.dropin_path(inst)}").stdout:
        pytest.skip(f"{inst.name} runs the real Mattermost: its test mail needs a system admin's session")
    sender, _ = inst.mail_sender(TENANTS)
    recipient = f"test-mattermost-{inst.name}@lab.example.org"
    before = len(queued_from(inst.host, sender))
    answer = mattermost_test_mail(inst.host, inst, recipient)
    assert answer["status"] == "OK" and answer["smtp_reply"].startswith("250"), answer
    waiting = queued_from(inst.host, sender)
    assert len(waiting) == before + 1
    assert any(r["address"] == recipient for m in waiting for r in m["recipients"])
