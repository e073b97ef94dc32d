"""backup() planned against one FakeHost (no host, nothing runs), for web-1's example
instances: the whole ordered plan of a first deploy, none without a target, a stale job
removed, and a second deploy that changes nothing."""

from __future__ import annotations

import hashlib
from datetime import datetime
from types import SimpleNamespace

from fake_facts import FakeHost
from test_backup import SFTP, TENANTS, ULAP, FakeSecrets, planned
from test_mattermost import built
from test_mattermost_plan import changing

from assotic.preflight import Platform
from assotic.layout import BACKUP_STAGING_DIR, BACKUP_STATE_DIR, BACKUP_STATUS_DIR
from roles import backup, mattermost, nextcloud, paheko
from roles.backup.sshkey import private_key_text

JOBS = ["ulap-nextcloud", "ulap-paheko", "chat-mattermost", "ulap-mattermost", "host"]
UNITS = [f"assotic-backup-{job}" for job in JOBS] + ["assotic-backup-check"]
FRESH = {"Directory": None, "File": None, "Sha1File": None, "FolderFiles": {}, "DebPackages": {},
         "ChangedSinceStamp": True, "SystemdStatus": {}, "SystemdEnabled": {},
         "ManagedBackupUnits": [], "ResticRepositoryReady": False}


def specs():
    """The example backups of web-1: ulap's Nextcloud and Paheko (stand-ins), both Mattermost
    instances (chat, shared, and ulap's own)."""
    instances = {i.name: i for i in built()[0]}
    return (nextcloud.nextcloud_needs(ULAP, None).backups + paheko.paheko_needs(ULAP, None).backups
            + [mattermost.mattermost_backup(instances["chat"]), mattermost.mattermost_backup(instances["ulap"])])


def plan(facts, data=SFTP):
    data = {"platform": Platform(tenants=TENANTS, secrets=FakeSecrets()), **data}
    fake = FakeHost("web-1", {"web": ["web-1"]}, data, facts)
    host_plan = SimpleNamespace(backups=planned(specs()), host_backup_paths=(), secrets=FakeSecrets())
    return fake.plan(backup.backup, host_plan)


def test_first_deploy_plans_every_operation_in_this_order():
    """The whole plan, pinned: a refactor of the role that renames, reorders or drops an
    operation, or changes which one is conditional, shows here first."""
    ops = plan(FRESH)
    lib, etc, units = backup.LIB_DIR, backup.ETC_DIR, backup.UNIT_DIR
    assert [op.name for op in ops] == [
        "Install restic and the backup tools",
        *(f"Create {path}" for path in (etc, BACKUP_STATE_DIR, BACKUP_STATUS_DIR,
                                        BACKUP_STAGING_DIR, backup.CACHE_DIR, lib)),
        f"Install {etc}/restic.password (0600)", f"Install {etc}/restic.env (0600)",
        f"Install {etc}/id_ed25519 (0600)",
        f"Remove {etc}/msmtprc (alerts go through Postfix)",
        *(f"Render {lib}/{script}.sh" for script in ("lib", "init", "check", *JOBS)),
        f"Render {etc}/ssh_config", f"Render {etc}/known_hosts",
        *(f"Render {units}/{unit}.{suffix}" for unit in UNITS for suffix in ("service", "timer")),
        "Reload systemd units (backup)",
        *(f"Enable and start {unit}.timer" for unit in UNITS),
        "Initialise the restic repository of web-1 (sftp:assotic-backup-target:/repo)"]
    assert [op.name for op in ops if op.global_arguments.get("_if")] == ["Reload systemd units (backup)"]
    assert ops[-1].commands == [f"{lib}/init.sh"]
    for op in ops:
        assert not any("SECRET-" in command for command in op.commands), op.name


def test_without_a_target_only_the_tools_are_installed():
    assert [op.name for op in plan(FRESH, data={})] == ["Install restic and the backup tools"]


def test_a_stale_job_is_stopped_and_removed_and_a_ready_repository_is_not_initialised():
    ops = plan({**FRESH, "ManagedBackupUnits": ["assotic-backup-gone-paheko", *UNITS],
                "ResticRepositoryReady": True})
    names = [op.name for op in ops]
    reload = names.index("Reload systemd units (backup)")
    assert names[reload - 4:reload] == [
        "Stop and disable assotic-backup-gone-paheko.timer",
        f"Remove {backup.UNIT_DIR}/assotic-backup-gone-paheko.service",
        f"Remove {backup.UNIT_DIR}/assotic-backup-gone-paheko.timer",
        f"Remove {backup.LIB_DIR}/gone-paheko.sh"]
    assert not any(name.startswith("Initialise") for name in names)


def current_facts():
    """A host where every file, folder, unit and the repository are as this deploy wants them."""
    context = backup.backup_context("web-1", SFTP, FakeSecrets())
    jobs = backup.jobs_for(planned(specs()), "web-1", SFTP)
    units = backup.units_for(jobs, "web-1", SFTP)
    files = dict(backup.rendered_files(context, jobs))
    for unit in units:
        service, timer = backup.unit_files(context, unit)
        files[f"{backup.UNIT_DIR}/{unit.name}.service"] = (service, "0644")
        files[f"{backup.UNIT_DIR}/{unit.name}.timer"] = (timer, "0644")
    facts = {**FRESH, "DebPackages": {p: ["1"] for p in backup.PACKAGES}, "Date": datetime.now(),
             ("File", (("path", "/var/lib/apt/periodic/update-success-stamp"),)): {"mtime": datetime.now()},
             "ChangedSinceStamp": False, "ResticRepositoryReady": True,
             "ManagedBackupUnits": [u.name for u in units],
             "SystemdStatus": {f"{u.name}.timer": True for u in units},
             "SystemdEnabled": {f"{u.name}.timer": True for u in units}}
    for path, (content, mode) in files.items():
        folder = facts.setdefault(("FolderFiles", (("folder", path.rsplit("/", 1)[0]),)), {})
        folder[path] = (hashlib.sha1(content.encode()).hexdigest(), "root", "root", int(mode, 8))
    for path, mode in ((backup.ETC_DIR, 700), (BACKUP_STATE_DIR, 755), (BACKUP_STATUS_DIR, 755),
                       (BACKUP_STAGING_DIR, 711), (backup.CACHE_DIR, 700), (backup.LIB_DIR, 755)):
        facts[("Directory", (("path", path),))] = {"mode": mode, "user": "root", "group": "root"}
    return facts


def secret_files():
    """Each root-only file the deploy installs, by its operation: what it must hold."""
    etc, secrets = backup.ETC_DIR, FakeSecrets()
    return {f"{etc}/restic.password": secrets.get("hosts/web-1/restic_password") + "\n",
            f"{etc}/restic.env": backup.render("restic.env.j2",
                                               backup=backup.backup_context("web-1", SFTP, secrets)),
            f"{etc}/id_ed25519": private_key_text(secrets.get("hosts/web-1/backup_ssh_key"),
                                                "assotic-backup@web-1")}


def test_a_second_deploy_changes_nothing():
    facts = current_facts()
    for path, text in secret_files().items():
        facts[("File", (("path", path),))] = {"mode": 600, "user": "root", "group": "root"}
        facts[("Sha1File", (("path", path),))] = hashlib.sha1(text.encode()).hexdigest()
    assert [op.name for op in changing(plan(facts))] == []
