"""Restore drills in the lab: back up, destroy, restore, and prove nothing was lost.

Runs after test_lab.py (tests/lab/conftest.py) on the same lab. For tenant ulap on web-1
(Nextcloud and Paheko stand-ins): files in the Nextcloud data folder, rows in its
PostgreSQL database and in the Paheko SQLite file are created; the backup services run;
everything is destroyed; `python -m commands restore` (what `make restore` runs) brings it
back; every file checksum and every row must be identical, and the apps answer again.
Then the faults: an unreachable backup target and a full one fail loudly and leave the
last good backup in place; the next run succeeds. Then ulap's backups from web-1 are
restored onto web-2 (Debian 13), as a sysadmin moves an association: its apps put on web-2
in a copy of the tenant files, a deploy, the restore, and a deploy back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab import relay
from lab.harness import LAB_HOSTS, container_name
from assotic.runlog import changed_operation_names, changed_operations_per_host
from tests.lab.shell import sh

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = "inventory/lab.py"
TENANT = "ulap"
WEB = "web-1"
SECOND_WEB = "web-2"  # Debian 13: another PHP and PostgreSQL than web-1's
NC_HOME = f"/srv/assotic/{TENANT}/nextcloud"
PA_HOME = f"/srv/assotic/{TENANT}/paheko"
NC_DB = f"nextcloud_{TENANT}"
SQLITE = f"{PA_HOME}/data/standin.sqlite"
STATUS = "/var/lib/assotic/backup/status"
JOBS = (f"{TENANT}-nextcloud", f"{TENANT}-paheko")
DOMAINS = {"nextcloud": "cloud.ulap.example.org", "paheko": "gestion.ulap.example.org"}
# Files the stand-ins rewrite on their own (cron every 5 minutes, a row per page view):
# compared through their content where it matters, not by checksum.
VOLATILE = ("standin-cron.txt", "standin.sqlite")


def run(*command: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    print(f"$ {' '.join(command)}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}")
    if check:
        assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}"
    return result


def restore(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(str(VENV_BIN / "python"), "-m", "commands", "restore", "--inventory", INVENTORY,
               "--tenant", TENANT, *args, check=check, env=env)


def fingerprint(host: str) -> dict:
    """Checksums of every file of the tenant's instances, and every drill row."""
    files = sh(host, f"""cd / && find {NC_HOME}/data {NC_HOME}/config {PA_HOME}/data {PA_HOME}/config \
        -type f {' '.join(f"! -name '{v}'" for v in VOLATILE)} -print0 | sort -z \
        | xargs -0 sha256sum""").stdout
    owners = sh(host, f"find {NC_HOME}/data {PA_HOME}/data -printf '%u:%g %m %p\\n' | "
                      f"grep -v -e standin-cron -e standin.sqlite | sort").stdout
    pg = sh(host, f"runuser -u postgres -- psql -XtA -d {NC_DB} "
                  "-c 'SELECT id, payload, md5(blob) FROM drill ORDER BY id'").stdout
    sqlite = sh(host, f"sqlite3 -readonly {SQLITE} 'SELECT id, payload, hex(blob) FROM drill ORDER BY id'").stdout
    return {"files": files, "owners": owners, "postgres": pg, "sqlite": sqlite}


def app_answers(host: str, app: str) -> dict:
    out = sh(host, f"curl -sk --max-time 20 --resolve {DOMAINS[app]}:443:127.0.0.1 https://{DOMAINS[app]}/").stdout
    return json.loads(out)


def start_backups(host: str, check: bool = True, jobs=JOBS) -> subprocess.CompletedProcess:
    units = " ".join(f"assotic-backup-{job}.service" for job in jobs)
    return sh(host, f"systemctl start {units}", check=check)


def status_files(host: str) -> dict:
    out = sh(host, f"for f in {' '.join(f'{STATUS}/{j}.json' for j in JOBS)}; do jq -c . $f 2>/dev/null "
                   "|| echo null; done").stdout
    return dict(zip(JOBS, (json.loads(line) for line in out.splitlines()), strict=True))


@pytest.fixture(scope="module")
def lab():
    run(str(VENV_BIN / "python"), "-m", "lab", "up")
    run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py")


@pytest.fixture(scope="module")
def drill_data(lab):
    """Files, PostgreSQL rows and SQLite rows that the drill must bring back."""
    sh(WEB, f"""
# Both folders named: install -d makes missing parents 0755 whatever the umask.
install -d -o nextcloud_{TENANT} -g nextcloud_{TENANT} -m 0750 {NC_HOME}/data/drill {NC_HOME}/data/drill/sub
for i in 1 2 3; do head -c $((i * 300000)) /dev/urandom > {NC_HOME}/data/drill/file-$i.bin; done
echo 'compte rendu de l AG' > {NC_HOME}/data/drill/sub/notes.txt
chown -R nextcloud_{TENANT}:nextcloud_{TENANT} {NC_HOME}/data/drill
runuser -u postgres -- psql -Xq -v ON_ERROR_STOP=1 -d {NC_DB} <<'SQL'
SET ROLE {NC_DB};
DROP TABLE IF EXISTS drill;
CREATE TABLE drill (id int PRIMARY KEY, payload text, blob bytea);
INSERT INTO drill SELECT i, 'row ' || i, decode(md5(random()::text), 'hex') FROM generate_series(1, 500) i;
SQL
""")
    app_answers(WEB, "paheko")  # the stand-in creates its SQLite file on first use
    sh(WEB, f"""runuser -u paheko_{TENANT} -- sqlite3 {SQLITE} <<'SQL'
DROP TABLE IF EXISTS drill;
CREATE TABLE drill (id INTEGER PRIMARY KEY, payload TEXT, blob BLOB);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO drill SELECT i, 'membre ' || i, randomblob(32) FROM n;
SQL""")
    return fingerprint(WEB)


@pytest.fixture(scope="module")
def backed_up(drill_data):
    before = time.time()
    start_backups(WEB)
    statuses = status_files(WEB)
    for job, status in statuses.items():
        assert status and status["snapshot_id"], f"{job}: no status after a successful run"
    assert fingerprint(WEB) == drill_data, "the backup itself changed the tenant's data"
    return {"statuses": statuses, "started": before}


def test_backup_jobs_write_status_and_snapshots(backed_up):
    for job, status in backed_up["statuses"].items():
        assert status["job"] == job and status["host"] == WEB and status["duration_s"] >= 0
    listing = sh(WEB, "set -a; . /etc/assotic/backup/restic.env; set +a; "
                      "restic -o 'sftp.command=ssh -F /etc/assotic/backup/ssh_config assotic-backup-target -s sftp' "
                      f"snapshots --json --tag tenant:{TENANT}").stdout
    tags = [set(s["tags"]) for s in json.loads(listing)]
    assert {f"tenant:{TENANT}", "app:nextcloud", f"host:{WEB}"} in tags
    assert {f"tenant:{TENANT}", "app:paheko", f"host:{WEB}"} in tags


def test_restore_refuses_a_live_tenant_without_force(backed_up):
    result = restore(check=False)
    assert result.returncode == 1 and "FORCE=1" in result.stderr
    assert "restore plan for ulap" in result.stdout


def test_destroy_then_restore_gives_back_every_file_and_row(backed_up, drill_data):
    sh(WEB, f"""
find {NC_HOME}/data -mindepth 1 -delete
runuser -u postgres -- psql -Xq -d {NC_DB} -c 'DROP TABLE drill'
rm -f {SQLITE}
""")
    assert app_answers(WEB, "nextcloud")["database"] == "ok"  # the app runs, the data is gone
    assert "drill" not in sh(WEB, f"ls {NC_HOME}/data").stdout
    start = time.monotonic()
    result = restore("--force")
    print(f"restore of {TENANT} took {time.monotonic() - start:.1f}s")
    assert "restored snapshot" in result.stdout
    after = fingerprint(WEB)
    for part in ("files", "owners", "postgres", "sqlite"):
        assert after[part] == drill_data[part], f"{part} differ after the restore"
    print("CHECKSUMS COMPARED (before backup == after restore):\n" + after["files"])
    for app in ("nextcloud", "paheko"):
        answer = app_answers(WEB, app)
        assert answer["database"] == "ok", answer


def test_target_unreachable_fails_loudly_then_recovers(backed_up):
    before = status_files(WEB)
    mails_before = set(relay.mailbox())
    target = container_name(next(h for h in LAB_HOSTS if h.group == "backup"))
    subprocess.run(["docker", "exec", target, "systemctl", "stop", "ssh.socket", "ssh.service"], check=False)
    try:
        result = start_backups(WEB, check=False)
        assert result.returncode != 0, "a backup to an unreachable target must fail"
        state = sh(WEB, f"systemctl is-failed assotic-backup-{JOBS[0]}.service", check=False).stdout.strip()
        assert state == "failed"
        assert status_files(WEB) == before, "a failed run must not touch the status files"
        staging = sh(WEB, "ls /var/lib/assotic/backup/staging/").stdout
        assert not any(job in staging for job in JOBS), "the failed job left its staging behind"
        # The alert goes through the host's Postfix and the lab's real relay to the hosting
        # team (data mail_admin; inventory/lab.py), from the hosts' own sender.
        alert = relay.wait_for_mail(lambda m: m["Subject"].startswith("assotic backup FAILED")
                                    and JOBS[0] in m["Subject"], skip=mails_before)
        assert alert["X-Original-To"] == relay.LAB_MAIL_ADMIN, alert["X-Original-To"]
        assert WEB in alert["Subject"]
        print(f"alert received by the relay: {alert['Subject']} (from {alert['From']})")
    finally:
        subprocess.run(["docker", "exec", target, "systemctl", "start", "ssh.service"], check=True)
    time.sleep(2)
    start_backups(WEB)
    after = status_files(WEB)
    for job in JOBS:
        assert after[job]["snapshot_id"] != before[job]["snapshot_id"]


def test_full_target_fails_loudly_and_keeps_earlier_snapshots(backed_up):
    """The account's repository on a 40 MiB tmpfs, filled up; a big new file must not fit."""
    target_host = next(h for h in LAB_HOSTS if h.group == "backup")
    repo = f"/srv/assotic-backup/restic-{WEB}/repo"
    before = status_files(WEB)
    sh(target_host.name, f"""
cp -a {repo} /var/tmp/repo-saved
mount -t tmpfs -o size=40m,mode=0700 tmpfs {repo}
cp -a /var/tmp/repo-saved/. {repo}/
chown restic-{WEB}:assotic-backup {repo}
free=$(df --output=avail -k {repo} | tail -1)
fallocate -l $(( (free - 2048) * 1024 )) {repo}/filler
""")
    try:
        sh(WEB, f"head -c 20000000 /dev/urandom > {NC_HOME}/data/drill/big.bin && "
                f"chown nextcloud_{TENANT}: {NC_HOME}/data/drill/big.bin")
        # Only the job that has 20 MB to send: Paheko's few kilobytes may still fit.
        result = start_backups(WEB, check=False, jobs=JOBS[:1])
        assert result.returncode != 0, "a backup to a full target must fail"
        assert status_files(WEB)[JOBS[0]] == before[JOBS[0]]
        sh(target_host.name, f"rm -f {repo}/filler")
        check = sh(WEB, "set -a; . /etc/assotic/backup/restic.env; set +a; "
                        "restic -o 'sftp.command=ssh -F /etc/assotic/backup/ssh_config assotic-backup-target -s sftp' "
                        "unlock && restic -o 'sftp.command=ssh -F /etc/assotic/backup/ssh_config "
                        "assotic-backup-target -s sftp' check && restic -o 'sftp.command=ssh -F "
                        "/etc/assotic/backup/ssh_config assotic-backup-target -s sftp' snapshots --json")
        listed = json.loads(check.stdout.strip().splitlines()[-1])
        ids = {s["id"] for s in listed} | {s["short_id"] for s in listed}
        assert {s["snapshot_id"] for s in before.values()} <= ids, "earlier snapshots lost"
    finally:
        sh(WEB, f"rm -f {NC_HOME}/data/drill/big.bin", check=False)
        sh(target_host.name, f"""
rm -f {repo}/filler
cp -a {repo}/. /var/tmp/repo-saved/ 2>/dev/null || true
umount {repo}
rm -rf {repo} && mv /var/tmp/repo-saved {repo}
""", check=False)
    start_backups(WEB)


def tenants_with_apps_moved(folder: Path, apps: tuple[str, ...], host: str) -> Path:
    """A copy of the tenant files in which ulap's `apps` run on `host`, as a sysadmin edits them."""
    for source in (REPO / "group_data" / "tenants").glob("*.yml"):
        shutil.copy(source, folder / source.name)
    tenant_file = folder / f"{TENANT}.yml"
    tenant = yaml.safe_load(tenant_file.read_text())
    for app in apps:
        tenant["apps"][app]["host"] = host
    tenant_file.write_text(yaml.safe_dump(tenant, sort_keys=False, allow_unicode=True))
    return folder


def remove_moved_instances(host: str) -> None:
    """What a deploy leaves of instances whose apps moved away (it removes their pools, vhosts,
    Redis and backup units, never data): accounts, folders, database, role, certificates."""
    sh(host, f"""
for domain in {' '.join(DOMAINS.values())}; do
    [ ! -e /etc/letsencrypt/renewal/$domain.conf ] || certbot delete --non-interactive --cert-name $domain >/dev/null
done
runuser -u postgres -- psql -Xq -c 'DROP DATABASE IF EXISTS {NC_DB}' -c 'DROP ROLE IF EXISTS {NC_DB}'
for user in nextcloud_{TENANT} paheko_{TENANT}; do ! id -u $user >/dev/null 2>&1 || userdel $user; done
rm -rf /srv/assotic/{TENANT}
""")


def test_restore_onto_a_second_host_gives_back_every_file_and_row(backed_up, drill_data, tmp_path):
    """web-1's latest snapshots of ulap (the drill data, taken again after the faults) onto web-2."""
    assert sh(SECOND_WEB, f"id -u nextcloud_{TENANT}", check=False).returncode != 0, \
        f"{TENANT} must not be on {SECOND_WEB} before the move"
    moved = tenants_with_apps_moved(tmp_path, tuple(DOMAINS), SECOND_WEB)
    moved_env = {**os.environ, "ASSOTIC_TENANTS_DIR": str(moved)}
    try:
        # The restore fills an instance, it does not create one: deploy it on web-2 first.
        run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py", env=moved_env)
        assert app_answers(SECOND_WEB, "nextcloud")["database"] == "ok"
        assert "drill" not in sh(SECOND_WEB, f"ls {NC_HOME}/data").stdout
        # The instance just deployed on web-2 may already count as live (the stand-in's cron
        # writes in its data folder every 5 minutes, as Nextcloud does): the move is planned
        # with --force, as docs/backup.md tells a sysadmin to run it.
        refused = restore("--from", WEB, "--to", SECOND_WEB, "--dry-run", check=False, env=moved_env)
        if refused.returncode != 0:
            assert f"{TENANT} is live on {SECOND_WEB}; run again with FORCE=1" in refused.stderr
        plan = restore("--from", WEB, "--to", SECOND_WEB, "--dry-run", "--force", env=moved_env)
        assert f"made on {WEB} -> {SECOND_WEB}" in plan.stdout
        assert "dry run: nothing restored" in plan.stdout
        assert "drill" not in sh(SECOND_WEB, f"ls {NC_HOME}/data").stdout
        start = time.monotonic()
        result = restore("--from", WEB, "--to", SECOND_WEB, "--force", env=moved_env)
        print(f"restore of {TENANT} from {WEB} onto {SECOND_WEB} took {time.monotonic() - start:.1f}s")
        assert f"onto {SECOND_WEB}" in result.stdout
        after = fingerprint(SECOND_WEB)
        for part in ("files", "owners", "postgres", "sqlite"):
            assert after[part] == drill_data[part], f"{part} differ on {SECOND_WEB} after the restore"
        print(f"CHECKSUMS COMPARED ({WEB} before backup == {SECOND_WEB} after restore):\n" + after["files"])
        for app in DOMAINS:
            answer = app_answers(SECOND_WEB, app)
            assert answer["database"] == "ok", answer
    finally:
        # Back to the tenant files of the repository: ulap on web-1 only, its units back.
        run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py")
        remove_moved_instances(SECOND_WEB)
    for app in DOMAINS:
        assert app_answers(WEB, app)["database"] == "ok", f"{app} of {TENANT} not back on {WEB}"


def test_deploy_after_the_drills_changes_nothing(backed_up):
    # What the deploy would repair: files the drills left world-readable, named in the failure.
    exposed = sh(WEB, "find /srv/assotic ! -type l -perm /o=rw -ls").stdout.strip()
    result = run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py")
    output = result.stdout + result.stderr
    per_host = changed_operations_per_host(output)
    changed = {h: changed_operation_names(output, h) for h, n in per_host.items() if n}
    assert per_host == {h.name: 0 for h in LAB_HOSTS}, \
        f"operations that changed: {changed}; world-readable before the deploy: {exposed or 'none'}"
