"""Every unit file the roles write is sandboxed as rendered: `systemd-analyze security
--offline` (systemd 250 or later, here) scores each file within its kind's limit
(roles/units.py MAX_EXPOSURE, the limits the verify check applies on the hosts), and
`systemd-analyze verify` finds nothing wrong in it. The drop-ins on Debian's units (php-fpm,
coturn) need Debian's unit beside them: tests/verify/test_unit_sandbox.py scores them on the
hosts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from assotic.mattermost import MattermostInstance
from roles import backup, mattermost, redis, timers
from roles.plan import plan_host
from roles.tls import render as tls_render
from roles.units import MAX_EXPOSURE
from test_backup import NEXTCLOUD, PAHEKO, SFTP, FakeSecrets, planned, specs

ANALYZE = shutil.which("systemd-analyze")
CHAT = MattermostInstance("chat", "web-1", "chat.example.org", 8065, ("ulap",), declared=True)


def _systemd_version() -> int:
    if ANALYZE is None:
        return 0
    out = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True).stdout
    match = re.match(r"systemd (\d+)", out)
    return int(match.group(1)) if match else 0


pytestmark = pytest.mark.skipif(_systemd_version() < 250,
                                reason="needs systemd-analyze 250 or later (security --offline)")


def rendered_units(lab_host_data) -> list[tuple[str, str, str]]:
    """(file name, kind, text) of every unit file the roles write for the lab's web hosts, with
    the stand-ins as the lab runs them and a backup job of the real Nextcloud and Paheko (the
    ones whose hooks and SQLite copies write into the apps)."""
    from test_mattermost import built

    lab_host_data.platform.mattermost = built()[0]
    plan = plan_host("web-1", lab_host_data, ["web"], "12")
    units = [("assotic-redis@.service", "redis", redis.redis_unit(redis.RedisSettings())),
             # The template with an instance's drop-in after it: one file, as systemd merges them.
             ("assotic-mattermost@.service", "mattermost",
              mattermost.unit_template() + mattermost.release_dropin(CHAT, None)),
             (tls_render.model.PEBBLE_UNIT, "pebble", tls_render.pebble_unit())]
    units += [(f"{t.unit}.service", "timer", timers.timer_units(t)[0]) for t in plan.needs.timers]
    context = backup.backup_context("web-1", SFTP, FakeSecrets())
    trust_on_first_use = backup.backup_context(
        "web-1", {"backup_target": {**SFTP["backup_target"], "known_hosts": []}}, FakeSecrets())
    for ctx in (context, trust_on_first_use):
        jobs = backup.jobs_for(planned(specs(NEXTCLOUD, PAHEKO)), "web-1", SFTP)
        units += [(f"{u.name}.service", "backup", backup.unit_files(ctx, u)[0])
                  for u in backup.units_for(jobs, "web-1", SFTP)]
    return units


def offline_exposure(folder: Path, name: str) -> float:
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(folder / name)],
                            capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"{name}: {result.stdout[-300:]} {result.stderr}"
    return float(match.group(1))


def test_every_rendered_unit_is_within_its_exposure_limit(lab_host_data, tmp_path):
    too_exposed = []
    for name, kind, text in rendered_units(lab_host_data):
        folder = tmp_path / kind
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(text)
        level = offline_exposure(folder, name)
        print(f"\n{name} ({kind}): offline exposure {level:.1f}", end="")
        if level > MAX_EXPOSURE[kind]:
            too_exposed.append(f"{name}: {level} > {MAX_EXPOSURE[kind]}")
    assert not too_exposed, too_exposed


def test_rendered_sandbox_settings_are_known_to_systemd(lab_host_data, tmp_path):
    """`systemd-analyze verify` reports unknown or misspelt settings ("Unknown key name");
    missing executables (restic, redis-server ... are not installed here) are not its concern."""
    problems = []
    for name, _kind, text in rendered_units(lab_host_data):
        path = tmp_path / name.replace("@.", "@x.")
        path.write_text(text)
        result = subprocess.run([ANALYZE, "verify", "--man=false", str(path)], capture_output=True, text=True)
        problems += [f"{name}: {line}" for line in result.stderr.splitlines()
                     if "Unknown" in line or "Invalid" in line or "Failed to parse" in line
                     or "ignoring" in line.lower()]
    assert not problems, problems


def test_backup_units_write_only_their_state_and_their_apps_folders():
    """What roles/backup leaves writable: its state, restic's cache, the lock's folder; the
    Nextcloud job also its home (maintenance mode), the Paheko job the folder of its SQLite."""
    context = backup.backup_context("web-1", SFTP, FakeSecrets())
    jobs = {j.name: j for j in backup.jobs_for(planned(specs(NEXTCLOUD, PAHEKO)), "web-1", SFTP)}
    units = {u.name: u for u in backup.units_for(list(jobs.values()), "web-1", SFTP)}

    def writable(unit: str) -> list[str]:
        text = backup.unit_files(context, units[unit])[0]
        return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ReadWritePaths=")]

    own = ["/var/lib/assotic/backup", backup.CACHE_DIR, "/run/lock"]
    assert writable("assotic-backup-ulap-nextcloud") == [*own, "/srv/assotic/ulap/nextcloud"]
    assert writable("assotic-backup-ulap-paheko") == [*own, "/srv/assotic/ulap/paheko/data"]
    assert writable("assotic-backup-host") == own == writable("assotic-backup-check")
    # Without the target's host key in data, ssh records it on first use: that file only.
    first_use = backup.backup_context(
        "web-1", {"backup_target": {**SFTP["backup_target"], "known_hosts": []}}, FakeSecrets())
    text = backup.unit_files(first_use, units["assotic-backup-host"])[0]
    assert [line for line in text.splitlines() if line.startswith("ReadWritePaths=")] == \
        [f"ReadWritePaths={path}" for path in own] + [f"ReadWritePaths=-{backup.ETC_DIR}/known_hosts"]


def test_mattermost_unit_writes_the_instance_home_only():
    lines = mattermost.unit_template().replace("%i", CHAT.name).splitlines()
    assert [line for line in lines if line.startswith("ReadWritePaths=")] == \
        [f"ReadWritePaths={CHAT.app_instance.home}"]
