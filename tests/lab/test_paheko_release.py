"""A real Paheko in the lab, through the project's own path: deploy, pages, idempotence while
its timers run, and a backup -> destroy -> restore of one association's database.

Runs only when the pinned Paheko release (or the one $ASSOTIC_RELEASES_OVERRIDE pins for this
run) is in $ARTIFACTS_DIR or the artifact cache; otherwise every test is skipped with the
reason. Nothing is downloaded: the lab has no route to upstream (docs/lab.md).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lab.harness import LAB_HOSTS
from assotic.needs import as_instance_user
from assotic.preflight import load_inventory_like_pyinfra
from assotic.runlog import changed_operation_names, changed_operations_per_host
from tests.lab.shell import sh
from roles import paheko

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = "inventory/lab.py"
TENANT = "ulap"  # on web-1
ROWS = 200


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    # lab_data loads the inventory in this process, which sets ASSOTIC_CHECK_ONLY: a deploy
    # that inherited it would not write the secrets it generates (a fresh lab slot fails).
    env = {k: v for k, v in os.environ.items() if k not in ("ASSOTIC_CHECK_ONLY", "ASSOTIC_INVENTORY_LABEL")}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    print(f"$ {' '.join(command)}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}")
    if check:
        assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}"
    return result


def deploy() -> str:
    result = run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py")
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def lab_data():
    """The lab's inventory data, loaded as pyinfra does; skips unless the real Paheko is here."""
    inventory = load_inventory_like_pyinfra(REPO / INVENTORY)
    data = next(iter(inventory)).data
    found = data.release_set.get("paheko")
    if found is None or not found.available:
        pytest.skip("the real Paheko release is not provided, the lab runs the stand-in: "
                    + (found.missing_message() if found else "no Paheko pin resolved"))
    return data


@pytest.fixture(scope="module")
def deployed(lab_data):
    run(str(VENV_BIN / "python"), "-m", "lab", "up")
    deploy()
    return lab_data


def paheko_tenants(data):
    return [t for t in data.tenants if t.apps.paheko]


def bin_paheko(inst, version: str, *args: str) -> str:
    return shlex.join([*as_instance_user(inst.user), "/usr/bin/php",
                       f"/opt/assotic/paheko-{version}/bin/paheko", "--config",
                       paheko.config_path(inst), *args])


def curl(tenant, path: str, *options: str) -> str:
    domain = tenant.apps.paheko.domain
    return shlex.join(["curl", "-sk", "--max-time", "20", "--resolve", f"{domain}:443:127.0.0.1",
                       *options, f"https://{domain}{path}"])


def test_the_login_page_answers_with_paheko_s_form(deployed):
    for tenant in paheko_tenants(deployed):
        host = tenant.apps.paheko.host
        answer = sh(host, curl(tenant, "/admin/login.php", "-w", "\\n%{http_code}")).stdout
        body, status = answer.rsplit("\n", 1)
        assert status == "200", answer[-2000:]
        assert "<title>Connexion" in body and 'name="password"' in body, body[-2000:]
        for error in ("Fatal error", "Deprecated:", "Warning:", "Erreur interne"):
            assert error not in body
        status_json = json.loads(sh(host, curl(tenant, "/status.php")).stdout)
        assert status_json["installed"] is True, status_json


def test_each_instance_database_is_whole(deployed):
    version = deployed.release_set.get("paheko").artifact.version
    for tenant in paheko_tenants(deployed):
        inst = paheko.instance(tenant)
        out = sh(tenant.apps.paheko.host, bin_paheko(inst, version, "db", "check")).stdout
        assert "Integrity: ok" in out, out


def test_a_deploy_after_the_timers_ran_changes_nothing(deployed):
    """Paheko's queue (every minute) and daily tasks run as the instance user between
    deploys; what they make must be private already, or the deploy repairs it again."""
    for tenant in paheko_tenants(deployed):
        inst = paheko.instance(tenant)
        units = f"{paheko.cron_unit(inst)}.service {paheko.queue_unit(inst)}.service"
        shown = sh(tenant.apps.paheko.host, f"systemctl start {units}; "
                                            f"systemctl show -p Result {units}").stdout
        assert shown.split() == ["Result=success", "Result=success"], shown
    output = deploy()
    per_host = changed_operations_per_host(output)
    changed = {h: changed_operation_names(output, h) for h, n in per_host.items() if n}
    assert changed == {}, f"operations that changed after the timers ran: {changed}"


def test_backup_destroy_restore_gives_back_every_row(deployed):
    tenant = next(t for t in deployed.tenants if t.slug == TENANT)
    inst = paheko.instance(tenant)
    host = tenant.apps.paheko.host
    db = paheko.db_file(inst)
    sql = shlex.join([*as_instance_user(inst.user), "sqlite3", db])
    sh(host, f"""{sql} <<'SQL'
DROP TABLE IF EXISTS drill;
CREATE TABLE drill (id INTEGER PRIMARY KEY, payload TEXT, blob BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
INSERT INTO drill SELECT i, 'membre ' || i, randomblob(32) FROM n;
SQL""")
    select = f"sqlite3 -readonly {db} 'SELECT id, payload, hex(blob) FROM drill ORDER BY id; SELECT count(*) FROM users;'"
    before = sh(host, select).stdout
    assert len(before.splitlines()) == ROWS + 1
    sh(host, f"systemctl start assotic-backup-{TENANT}-paheko.service")
    sh(host, f"rm -f {db} {db}-wal {db}-shm")
    result = run(str(VENV_BIN / "python"), "-m", "commands", "restore", "--inventory", INVENTORY,
                 "--tenant", TENANT, "--app", "paheko", "--force")
    assert "restored snapshot" in result.stdout
    assert sh(host, select).stdout == before
    version = deployed.release_set.get("paheko").artifact.version
    assert "Integrity: ok" in sh(host, bin_paheko(inst, version, "db", "check")).stdout
    login = sh(host, curl(tenant, "/admin/login.php", "-o", "/dev/null", "-w", "%{http_code}")).stdout
    assert login == "200"
    sh(host, f"{sql} 'DROP TABLE drill'")
    per_host = changed_operations_per_host(deploy())
    assert per_host == {h.name: 0 for h in LAB_HOSTS}, per_host


# Sends one mail through Paheko's own sender, Emails::send (Emails.php 1.3.18 lines 696-763:
# From becomes MAIL_SENDER, Reply-To the association's address, Return-Path MAIL_RETURN_PATH,
# then sendMessage's SMTP client with the SMTP_* constants), as its queue does for each row.
# Not through Emails::queue and `paheko queue run`: the queue first checks that the
# recipient's domain has an MX record (Email::validateAddress, Email.php lines 221-256, from
# Emails.php line 431) with a DNS query beyond the lab, and the lab's domains have none.
# argv = config file, release folder, recipient.
SEND_ONE_MAIL = r"""<?php
namespace Paheko;
define('Paheko\CONFIG_FILE', $argv[1]);
require $argv[2] . '/include/init.php';
use Paheko\Email\Emails;
use Paheko\Entities\Email\Email;
$send = new \ReflectionMethod(Emails::class, 'send');
$send->setAccessible(true);
$headers = ['From' => Emails::getFromHeader(), 'To' => $argv[3],
            'Subject' => 'assotic lab: Paheko test mail'];
$sent = $send->invoke(null, Emails::CONTEXT_SYSTEM, Email::getHash($argv[3]), $headers,
                      "Bonjour, ceci est un message de test de Paheko.", null);
echo $sent ? "sent\n" : "not sent\n";
"""


def test_paheko_s_own_sender_reaches_the_relay_from_the_associations_sender(deployed):
    """Paheko's own mail code, with the config.local.php the deploy wrote: SMTP to the host's
    Postfix, then the lab's real relay."""
    import uuid
    from email.utils import parseaddr

    from lab import relay

    tenant = next(t for t in deployed.tenants if t.slug == TENANT)
    inst = paheko.instance(tenant)
    host = tenant.apps.paheko.host
    version = deployed.release_set.get("paheko").artifact.version
    recipient = f"paheko-real-{uuid.uuid4().hex[:8]}@lab.example.org"
    command = shlex.join([*as_instance_user(inst.user), "/usr/bin/php", "--",
                          paheko.config_path(inst), f"/opt/assotic/paheko-{version}", recipient])
    answer = sh(host, f"{command} <<'PHP'\n{SEND_ONE_MAIL}PHP\n").stdout
    assert "sent" in answer.split(), answer
    mail = relay.wait_for_mail(lambda m: m["X-Original-To"] == recipient)
    print("Paheko's mail, as the relay received it:\n" + mail.as_string()[:3000])
    assert parseaddr(mail["Return-Path"])[1] == tenant.mail_from, "the envelope sender (MAIL_RETURN_PATH)"
    assert parseaddr(mail["From"])[1] == tenant.mail_from, "the From (MAIL_SENDER)"
    assert "Paheko test mail" in mail["Subject"]
