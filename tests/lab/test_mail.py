"""Outgoing mail in the lab, on the deployed hosts (runs after test_lab.py).

Each PHP stand-in sends one mail the way its real app would (SMTP to the host's Postfix on
loopback, as the instance's user, From the association's sender); Postfix takes it, with that
envelope sender, into its queue. The lab has no relay yet (data mail_relay is None), so the
mail waits there, as the null client promises. Delivery through a real authenticated relay
is the next step of issue 11 (docs/mail.md).
"""

from __future__ import annotations

import json
import shlex

import pytest

from assotic.tenants import load_tenants
from roles.standin import STANDIN_ROOT, config_path
from roles import nextcloud, paheko
from tests.lab.shell import sh
from tests.lab.test_lab import REPO

TENANTS = [t for _, t in load_tenants(REPO / "group_data" / "tenants")[0]]
# (host, instance, tenant) of every PHP stand-in of the example associations.
STANDINS = [(app.host, role.instance(t), t) for t in TENANTS
            for name, role in (("nextcloud", nextcloud), ("paheko", paheko))
            if (app := getattr(t.apps, name)) is not None]


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
