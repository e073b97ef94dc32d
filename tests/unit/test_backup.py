"""roles/backup, roles/backup_target and assotic/restore: pure functions, rendered scripts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from assotic.artifacts import Artifact
from assotic.preflight import generated_secret_names
from commands.restore import (pick_spec, plan_script, repository_setup, restore_script, snapshot_age_s,
                             source_and_target)
from assotic.tenants import load_tenants
from roles import backup, backup_target, mattermost, nextcloud, paheko
from assotic.mattermost import MattermostInstance
from roles.backup.sshkey import private_key_text, public_key_line
from roles.plan import PlannedBackup, retention_for

REPO = Path(__file__).resolve().parents[2]
TENANTS = [t for _, t in load_tenants(REPO / "group_data" / "tenants")[0]]
ULAP = next(t for t in TENANTS if t.slug == "ulap")
NEXTCLOUD = Artifact("nextcloud", "34.0.4", "nextcloud-34.0.4.tar.bz2", "https://example.invalid/nc", "0" * 64)
PAHEKO = Artifact("paheko", "1.3.12", "paheko-1.3.12.tar.gz", "https://example.invalid/p", "1" * 64)
SFTP = {"backup_target": {"host": "backup-1", "address": "172.17.0.4", "port": 22,
                          "known_hosts": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEY"]}}


class FakeSecrets:
    def get(self, name: str) -> str:
        return f"SECRET-{name.replace('/', '-')}"


def planned(backup_specs, tenants=TENANTS):
    """The specs as the host's plan holds them: each with its retention (roles.plan)."""
    return [PlannedBackup(spec, retention_for(spec, tenants)) for spec in backup_specs]


def specs(release_nc=None, release_pa=None):
    return nextcloud.nextcloud_needs(ULAP, release_nc).backups + paheko.paheko_needs(ULAP, release_pa).backups


def bash_syntax_ok(text: str) -> None:
    result = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_app_roles_hand_their_backup_specs():
    nc, pa = specs()
    assert nc.postgres_db == "nextcloud_ulap" and nc.pre_hooks == () and "stand-in" in nc.notices[0]
    assert pa.sqlite == ("/srv/assotic/ulap/paheko/data/standin.sqlite",)
    real_nc, real_pa = specs(NEXTCLOUD, PAHEKO)
    assert "maintenance:mode --on" in real_nc.pre_hooks[0]
    assert "maintenance:mode --off" in real_nc.post_hooks[0]
    assert real_nc.after_restore[-1].endswith("maintenance:data-fingerprint")
    assert real_pa.sqlite == ("/srv/assotic/ulap/paheko/data/association.sqlite",)


def test_mattermost_instances_are_backed_up_with_the_longest_retention_of_their_associations():
    own = MattermostInstance("ulap", "web-1", "chat.ulap.example.org", 8100, ("ulap",), declared=False)
    shared = MattermostInstance("chat", "web-1", "chat.example.org", 8065, ("toitcommun", "ulap"),
                                declared=True)
    own_spec, = mattermost.mattermost_needs(own, None).backups
    shared_spec, = mattermost.mattermost_needs(shared, None).backups
    assert own_spec.postgres_db == "mattermost_ulap" and own_spec.retention_of == ()
    assert own_spec.paths == ("/srv/assotic/ulap/mattermost/data", "/srv/assotic/ulap/mattermost/config")
    jobs = {j.name: j for j in backup.jobs_for(planned([own_spec, shared_spec]), "web-1", SFTP)}
    ulap = ULAP.backup.retention
    toit = next(t for t in TENANTS if t.slug == "toitcommun").backup.retention
    assert (jobs["ulap-mattermost"].keep_daily, jobs["ulap-mattermost"].keep_monthly) == (ulap.daily, ulap.monthly)
    assert jobs["chat-mattermost"].keep_daily == max(ulap.daily, toit.daily)
    assert jobs["chat-mattermost"].keep_monthly == max(ulap.monthly, toit.monthly)
    assert jobs["chat-mattermost"].tags[0] == "tenant:chat"
    lonely = MattermostInstance("empty", "web-1", "x.example.org", 8066, (), declared=True)
    job, _host = backup.jobs_for(planned(mattermost.mattermost_needs(lonely, None).backups), "web-1", SFTP)
    assert job.keep_daily == 7  # the schema's default retention


def test_jobs_tags_retention_and_never_the_live_sqlite_file():
    jobs = backup.jobs_for(planned(specs()), "web-1", SFTP)
    assert [j.name for j in jobs] == ["ulap-nextcloud", "ulap-paheko", "host"]
    nc, pa, host = jobs
    assert nc.tags == ("tenant:ulap", "app:nextcloud", "host:web-1")
    assert (nc.keep_daily, nc.keep_weekly, nc.keep_monthly) == (14, 8, 12)  # from ulap.yml
    live = "/srv/assotic/ulap/paheko/data/standin.sqlite"
    assert live in pa.excludes and f"{live}-wal" in pa.excludes
    assert "/etc" in host.paths


def test_timer_times_are_stable_spread_and_in_the_night_window():
    first = [j.on_calendar for j in backup.jobs_for(planned(specs()), "web-1", SFTP)]
    again = [j.on_calendar for j in backup.jobs_for(planned(specs()), "web-1", SFTP)]
    other = [j.on_calendar for j in backup.jobs_for(planned(specs()), "web-2", SFTP)]
    assert first == again and first != other
    for calendar in first:
        hour = int(calendar.split()[1].split(":")[0])
        assert 1 <= hour < 5
    assert backup.weekly_check(SFTP, "web-1").startswith("Sun ")


def test_rendered_scripts_are_valid_bash_with_a_trap_and_status_last():
    context = backup.backup_context("web-1", SFTP, FakeSecrets())
    jobs = backup.jobs_for(planned(specs(NEXTCLOUD, PAHEKO)), "web-1", SFTP)
    files = backup.rendered_files(context, jobs)
    for path, (text, _mode) in files.items():
        if path.endswith(".sh"):
            bash_syntax_ok(text)
    nc = files[jobs[0].script][0]
    assert "trap finish EXIT" in nc and "maintenance:mode --off" in nc.split("finish()")[0]
    assert nc.index("backup --json") < nc.index("forget --prune") < nc.index('write_status "$JOB"')
    assert "VACUUM INTO" in files[jobs[1].script][0]
    assert "StrictHostKeyChecking yes" in files["/etc/assotic/backup/ssh_config"][0]
    assert files["/etc/assotic/backup/known_hosts"][0] == "172.17.0.4 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEY\n"
    assert "SECRET" not in "".join(text for text, _ in files.values())  # secrets only in 0600 files


def test_s3_target_keeps_credentials_in_the_env_file():
    data = {"backup_target": {"repository": "s3:https://s3.example.org/bk/{host}",
                              "s3_access_key_secret": "backup/s3_key", "s3_secret_key_secret": "backup/s3_secret"}}
    context = backup.backup_context("web-1", data, FakeSecrets())
    assert context.repository == "s3:https://s3.example.org/bk/web-1" and not context.sftp
    env = backup.render("restic.env.j2", backup=context)
    assert "AWS_SECRET_ACCESS_KEY=SECRET-backup-s3_secret" in env


def test_no_target_means_no_backups_and_bad_data_is_named():
    assert backup.backup_context("web-1", {}) is None
    with pytest.raises(backup.BackupDataError, match="address"):
        backup.backup_context("web-1", {"backup_target": {"host": "backup-1"}})


def test_host_secrets_are_generated_per_backed_up_host():
    from assotic.preflight import InventoryView, platform_secret_names

    view = InventoryView("inventory/x.py", {"web": ["web-1"], "backup": ["backup-1"]},
                         {"web-1": {}, "backup-1": {}})
    names = platform_secret_names(view)
    assert names == ["hosts/web-1/restic_password", "hosts/web-1/backup_ssh_key"]
    assert not any(n.startswith("hosts/") for n in generated_secret_names(TENANTS))


def test_ssh_key_is_derived_stably_and_matches_its_public_key(tmp_path):
    text = private_key_text("seed", "c@h")
    assert text == private_key_text("seed", "c@h") != private_key_text("other", "c@h")
    if shutil.which("ssh-keygen"):
        key = tmp_path / "k"
        key.write_text(text)
        key.chmod(0o600)
        derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True)
        assert derived.stdout.split()[:2] == public_key_line("seed", "c@h").split()[:2]


def test_backup_target_accounts_are_restricted():
    hosts = [("web-1", {"web"}, SFTP),
             ("web-2", {"web"}, {"backup_target": {"host": "elsewhere", "address": "x"}}),
             ("turn-1", {"turn"}, SFTP),  # not backed up: no key, not a client
             ("backup-1", {"backup"}, SFTP)]
    clients = backup_target.clients_of("backup-1", hosts, FakeSecrets())
    assert [c.account for c in clients] == ["restic-web-1"]
    assert backup_target.authorized_keys(clients[0]).startswith("restrict ssh-ed25519 ")
    sshd = backup_target.sshd_drop_in()
    for line in ("Match Group assotic-backup", "ForceCommand internal-sftp", "ChrootDirectory /srv/assotic-backup/%u",
                 "AllowTcpForwarding no", "PermitTTY no"):
        assert line in sshd


def test_restore_scripts_are_valid_bash_and_keep_secrets_off_argv():
    setup = repository_setup("web-1", SFTP, FakeSecrets())
    assert "SECRET-hosts-web-1-restic_password" in setup.split("<<'")[1]  # inside a here-document
    nc, pa = specs(NEXTCLOUD, PAHEKO)
    for spec in (nc, pa):
        bash_syntax_ok(setup + plan_script(spec, "latest"))
        bash_syntax_ok(setup + restore_script(spec, "abc123"))
    assert "pg_restore" in restore_script(nc, "abc") and "data-fingerprint" in restore_script(nc, "abc")
    assert "association.sqlite" in restore_script(pa, "abc")


def test_snapshot_age_reads_restic_times():
    assert snapshot_age_s("2000-01-01T00:00:00.123456789+01:00") > 0
    assert snapshot_age_s("2000-01-01T00:00:00Z") > 0


def test_init_script_shows_why_the_repository_could_not_be_read(tmp_path):
    """restic refuses to init over an existing repository; then the read error is the cause."""
    context = backup.backup_context("web-1", SFTP, FakeSecrets())
    init = backup.rendered_files(context, [])[f"{backup.LIB_DIR}/init.sh"][0]
    fake = tmp_path / "restic"
    fake.write_text('#!/bin/sh\nif [ "$1" = cat ]; then echo "Fatal: ssh: connect to host: '
                    'Connection timed out" >&2; exit 1; fi\necho "Fatal: config file already exists" >&2\nexit 1\n')
    fake.chmod(0o755)
    lib = tmp_path / "lib.sh"
    lib.write_text(f'set -euo pipefail\nRESTIC=({fake})\nlog() {{ echo "backup[$JOB]: $*" >&2; }}\n')
    result = subprocess.run(["bash", "-c", init.replace(backup.LIB_PATH, str(lib))],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "config file already exists" in result.stderr
    assert "reading the repository had failed with: Fatal: ssh: connect to host: Connection timed out" \
        in result.stderr

    fake.write_text("#!/bin/sh\nexit 0\n")
    result = subprocess.run(["bash", "-c", init.replace(backup.LIB_PATH, str(lib))],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "already initialised" in result.stderr


def test_restore_reads_the_source_repository_and_restores_onto_the_target():
    # Same host: the tenant file's host is source and target.
    assert source_and_target("web-1", None, None) == ("web-1", "web-1")
    # A copy onto another host, the tenant file unchanged: web-1's backups onto web-2.
    assert source_and_target("web-1", None, "web-2") == ("web-1", "web-2")
    # A move: the tenant file already names web-2, the backups were made on web-1.
    assert source_and_target("web-2", "web-1", None) == ("web-1", "web-1")
    assert source_and_target("web-2", "web-1", "web-2") == ("web-1", "web-2")


def test_restore_fills_the_instance_as_deployed_on_the_target():
    on_source = specs(NEXTCLOUD, PAHEKO)      # real releases on the host that made the backups
    on_target = specs()                       # stand-ins on the target host
    assert pick_spec("paheko", "ulap", on_target, on_source).sqlite == on_target[1].sqlite
    assert pick_spec("paheko", "ulap", [], on_source).sqlite == on_source[1].sqlite
    assert pick_spec("nextcloud", "other", on_target, on_source) is None


def smtp_listener():
    """A loopback SMTP server that accepts one mail and keeps it (a bounded thread)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(20)
    received: dict = {}

    def serve():
        conn, _ = server.accept()
        conn.settimeout(20)
        stream = conn.makefile("rwb")

        def reply(line: str) -> None:
            stream.write(line.encode() + b"\r\n")
            stream.flush()

        reply("220 test ESMTP")
        data = False
        body: list[bytes] = []
        for raw in stream:
            line = raw.rstrip(b"\r\n")
            if data:
                if line == b".":
                    data = False
                    received["body"] = b"\n".join(body).decode()
                    reply("250 queued")
                else:
                    body.append(line)
                continue
            command = line.decode().upper()
            if command.startswith(("EHLO", "HELO")):
                reply("250 test")
            elif command.startswith("MAIL FROM:"):
                received["from"] = line.decode()[10:]
                reply("250 ok")
            elif command.startswith("RCPT TO:"):
                received["to"] = line.decode()[8:]
                reply("250 ok")
            elif command == "DATA":
                data = True
                reply("354 go")
            elif command == "QUIT":
                reply("221 bye")
                break
            else:
                reply("502 no")
        conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread, received


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed here")
def test_a_backup_alert_is_handed_to_the_hosts_smtp_server_from_the_hosts_sender(tmp_path):
    """lib.sh's alert() as a failed job calls it: one mail over SMTP, From the host's sender,
    To the alert address, with the reason in its body (the lab proves the relay path)."""
    port, thread, received = smtp_listener()
    data = {**SFTP, "backup_alert_email": "alertes@hosting.example.net",
            "mail_host_from": "serveurs@hosting.example.net"}
    context = backup.backup_context("web-1", data)
    from dataclasses import replace
    context = replace(context, etc_dir=str(tmp_path), smtp_url=f"smtp://127.0.0.1:{port}")
    (tmp_path / "restic.env").write_text(backup.render("restic.env.j2", backup=context))
    (tmp_path / "lib.sh").write_text(backup.render("lib.sh.j2", backup=context))
    result = subprocess.run(["bash", "-c", f". {tmp_path}/lib.sh; alert 'backup of web-1 failed' "
                             "'restic exited 1: repository locked'"], capture_output=True, text=True,
                            timeout=60)
    thread.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert received["from"].strip("<>") == "serveurs@hosting.example.net"
    assert received["to"].strip("<>") == "alertes@hosting.example.net"
    assert "Subject: backup of web-1 failed" in received["body"]
    assert "restic exited 1: repository locked" in received["body"]


def test_the_alert_address_defaults_to_the_hosting_team_and_backup_smtp_is_refused():
    context = backup.backup_context("web-1", {**SFTP, "mail_admin": "equipe@hosting.example.net"})
    assert (context.mail_to, context.mail_from) == ("equipe@hosting.example.net",) * 2
    with pytest.raises(backup.BackupDataError, match="mail_relay"):
        backup.backup_context("web-1", {**SFTP, "backup_smtp": {"host": "smtp.example.net"}})
