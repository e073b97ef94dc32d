"""What roles/backup and roles/backup_target promise, checked on the hosts (lab or production)."""

from __future__ import annotations

import calendar
import json
import time

import pytest

from assotic.layout import HOST_BACKUP_JOB, backup_status_file, backup_unit
from roles import backup, backup_target


@pytest.fixture(scope="module")
def jobs(pyinfra_host, data, plan):
    if backup.backup_context(pyinfra_host.name, data) is None:
        pytest.skip("no backup_target in this host's data")
    return backup.jobs_for(list(plan.backups), pyinfra_host.name, data)


@pytest.mark.hosts_in("web")
def test_restic_and_tools_installed(host, jobs):
    for package in backup.PACKAGES:
        assert host.package(package).is_installed, package


@pytest.mark.hosts_in("web")
def test_secret_files_are_root_only(host, jobs):
    for name in ("restic.password", "restic.env", "id_ed25519"):
        f = host.file(f"{backup.ETC_DIR}/{name}")
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), name
    assert host.file(backup.ETC_DIR).mode == 0o700


@pytest.mark.hosts_in("web")
def test_timers_active_at_their_stable_times(host, pyinfra_host, data, jobs):
    for unit in backup.units_for(jobs, pyinfra_host.name, data):
        timer = host.service(f"{unit.name}.timer")
        assert timer.is_running and timer.is_enabled, unit.name
        text = host.file(f"{backup.UNIT_DIR}/{unit.name}.timer").content_string
        assert f"OnCalendar={unit.on_calendar}\n" in text, unit.name


@pytest.mark.hosts_in("web")
def test_repository_answers(host, jobs):
    probe = f'. {backup.LIB_PATH} && "${{RESTIC[@]}}" cat config >/dev/null'
    result = host.run(f"bash -c '{probe}'")
    assert result.rc == 0, result.stderr


@pytest.mark.hosts_in("web")
def test_status_fresh_after_a_run(host, jobs):
    """Start the smallest job (the host's own) and check its status file is new and complete."""
    before = time.time()
    result = host.run(f"systemctl start {backup_unit(HOST_BACKUP_JOB)}.service")
    assert result.rc == 0, result.stderr
    status = json.loads(host.file(backup_status_file(HOST_BACKUP_JOB)).content_string)
    finished = calendar.timegm(time.strptime(status["finished_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert finished >= before - 120 and status["snapshot_id"] and status["duration_s"] >= 0


@pytest.mark.hosts_in("backup")
def test_backup_accounts_are_sftp_only_and_chrooted(host, pyinfra_host):
    clients = backup_target.clients_of(
        pyinfra_host.name, [(h.name, h.groups, h.data) for h in pyinfra_host.inventory],
        pyinfra_host.data.platform.secrets)
    assert clients, "no backed-up host names this target"
    for client in clients:
        user = host.user(client.account)
        assert user.shell == backup_target.NOLOGIN and user.home == client.chroot
        chroot = host.file(client.chroot)
        assert (chroot.user, chroot.group, chroot.mode) == ("root", "root", 0o755)
        repo = host.file(client.repository)
        assert (repo.user, repo.mode) == (client.account, 0o700)
        keys = host.file(f"{backup_target.KEYS_DIR}/{client.account}")
        assert keys.user == "root" and keys.content_string.startswith("restrict ssh-ed25519 ")
        effective = host.check_output(f"sshd -T -C user={client.account},host=x,addr=192.0.2.1")
        for line in ("forcecommand internal-sftp", f"chrootdirectory {backup_target.CHROOT_ROOT}/%u",
                     "allowtcpforwarding no", "permittty no", "x11forwarding no"):
            assert line in effective, line
    # Root and the sysadmins are not caught by the Match block.
    assert "forcecommand none" in host.check_output("sshd -T -C user=root,host=x,addr=192.0.2.1")
