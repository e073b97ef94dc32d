"""The scheduled restore drill (`make drill`): prove, on a throw-away machine, that the
latest backups of each association restore and work.

    python -m commands drill --inventory inventory/<name>.py [--tenant <slug>] [--keep]
        [--max-age-hours 26]

For the chosen associations (all by default) it:
  1. starts a throw-away lab (slot 8: containers assotic-lab8-*, state in .lab8/) and
     deploys there, on the drill host web-1, the apps of each association that the backups
     hold (Nextcloud, Paheko, a Mattermost instance of its own), with the production
     secrets (from a temporary copy of the store, so the drill never writes the real one)
     and without backups of its own;
  2. restores the latest snapshot of each app onto it with commands/restore.py (restic checks
     every restored file against the snapshot: `restore --verify`), reaching the production
     backup target with the source host's read access;
  3. checks that each app answers over HTTPS and that its database is whole;
  4. reports, per app, the snapshot's age and how long the restore took, writes
     drill/results.json, and removes the throw-away lab (unless --keep).
It exits non-zero when a restore or a check fails or a snapshot is older than --max-age-hours:
a drill that cannot restore is an alert, as a failed backup is.

The production hosts are only read (their snapshots, over the backup target's SFTP
account); nothing is written on them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import yaml

from assotic.layout import BACKUP_MAX_AGE_HOURS
from assotic.preflight import REPO_ROOT, load_inventory_like_pyinfra
from commands.remote import RemoteError, run_remote
from commands.restore import RestoreError, restore, snapshot_age_s

DRILL_SLOT = 8
DRILL_HOST = "web-1"
RESULTS = REPO_ROOT / "drill" / "results.json"
# Apps the drill can stand up on its own host. A Mattermost team on a shared instance is
# restored with its instance, not alone: the drill says it skipped it.
DRILLED_APPS = ("nextcloud", "paheko", "mattermost")
DEFAULT_MAX_AGE_HOURS = float(BACKUP_MAX_AGE_HOURS)  # as `make backup-status`


class DrillError(Exception):
    pass


@dataclass
class AppResult:
    tenant: str
    app: str
    snapshot: str = ""
    snapshot_time: str = ""
    age_hours: float | None = None
    restore_seconds: float | None = None
    checks: dict[str, str] = field(default_factory=dict)  # name -> "ok" or "fail (why)"
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.checks) and all(v == "ok" for v in self.checks.values())


# --- Pure functions (unit tested) ---------------------------------------------------------


def drill_tenant(tenant: dict, host: str = DRILL_HOST) -> tuple[dict | None, list[str]]:
    """A tenant file's data with every drilled app moved onto the drill host.

    Returns (tenant data or None when nothing is drilled, apps skipped with the reason)."""
    apps, skipped = {}, []
    for name, app in (tenant.get("apps") or {}).items():
        if not isinstance(app, dict) or app.get("enabled") is False:
            continue
        if name not in DRILLED_APPS:
            skipped.append(f"{name}: not restored by the drill")
        elif name == "mattermost" and "host" not in app:
            skipped.append("mattermost: a team on a shared instance (restore the instance)")
        else:
            apps[name] = {**app, "host": host}
    if not apps:
        return None, skipped
    return {**tenant, "apps": apps}, skipped


def slot_ssh_data(slot: int, host_port_offset: int, repo_root: Path = REPO_ROOT) -> SimpleNamespace:
    """pyinfra-style SSH data of a lab host of another slot (lab.harness reads its slot once,
    at import, from ASSOTIC_LAB_SLOT: the drill talks to slot 8 from a process of slot 0)."""
    lab_dir = repo_root / (".lab" if slot == 0 else f".lab{slot}")
    return SimpleNamespace(ssh_hostname="127.0.0.1", ssh_port=2200 + 10 * slot + host_port_offset,
                           ssh_user="root", ssh_key=str(lab_dir / "ssh" / "id_ed25519"),
                           ssh_known_hosts_file=str(lab_dir / "ssh" / "known_hosts"),
                           ssh_strict_host_key_checking="yes")


def age_hours(snapshot_time: str, now: datetime | None = None) -> float:
    seconds = snapshot_age_s(snapshot_time) if now is None else \
        (now - datetime.fromisoformat(snapshot_time.replace("Z", "+00:00"))).total_seconds()
    return seconds / 3600


def check_script(app: str, slug: str, domain: str, expected: dict[str, int]) -> str:
    """Bash run on the drill host after a restore: one `name=ok|fail (why)` line per check.

    `expected` is what the restore found in the snapshot (commands.restore.expectations):
    the live database must hold as many tables, and SQLite must pass its integrity check."""
    from assotic.needs import AppInstance

    inst = AppInstance(slug, app)
    lines = [f"code=$(curl -sk -o /dev/null -w '%{{http_code}}' --max-time 30 "
             f"--resolve {domain}:443:127.0.0.1 https://{domain}/ || true)",
             'if [ "${code:-0}" -ge 200 ] && [ "$code" -lt 500 ]; then echo answers=ok; '
             'else echo "answers=fail (HTTP $code)"; fi']
    if "pg_tables" in expected:
        want = expected["pg_tables"]
        lines.append(f"n=$(runuser -u postgres -- psql -XtAc \"select count(*) from pg_tables "
                     f"where schemaname='public'\" {inst.user} 2>/dev/null || echo none)")
        lines.append(f'if [ "$n" = {want} ]; then echo database=ok; '
                     f'else echo "database=fail ($n tables, the snapshot has {want})"; fi')
    elif "sqlite_tables" in expected:
        want = expected["sqlite_tables"]
        lines.append(f"db=$(find {inst.data_dir} -maxdepth 1 -name '*.sqlite' | head -n 1)")
        lines.append('integrity=$(sqlite3 "$db" "PRAGMA integrity_check" 2>&1 || true)')
        lines.append("n=$(sqlite3 \"$db\" \"select count(*) from sqlite_master where type='table'\" "
                     "2>/dev/null || echo none)")
        lines.append(f'if [ "$integrity" = ok ] && [ "$n" = {want} ]; then echo database=ok; '
                     f'else echo "database=fail (integrity: $integrity; $n tables, the snapshot has {want})"; fi')
    elif "sqlite_missing" in expected:
        lines.append("echo 'database=fail (the snapshot holds no copy of the SQLite database)'")
    else:
        lines.append("echo 'database=fail (the restore reported no database)'")
    return "\n".join(lines) + "\n"


def parse_checks(output: str) -> dict[str, str]:
    """{"answers": "ok", "database": "fail (3 tables, the snapshot has 4)"}"""
    checks = {}
    for line in output.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isidentifier():
            checks[name] = value.strip()
    return checks


def report_lines(results: list[AppResult], max_age_hours: float) -> list[str]:
    lines = [f"{'tenant':<14} {'app':<11} {'snapshot':<9} {'age':>8} {'restore':>9}  checks"]
    for r in results:
        age = f"{r.age_hours:.1f} h" if r.age_hours is not None else "-"
        seconds = f"{r.restore_seconds:.1f} s" if r.restore_seconds is not None else "-"
        checks = ", ".join(f"{k} {'ok' if v == 'ok' else 'FAILED: ' + v.removeprefix('fail').strip(' ()')}"
                           for k, v in r.checks.items())
        if r.age_hours is not None and r.age_hours > max_age_hours:
            checks += f"{', ' if checks else ''}snapshot OLDER than {max_age_hours:g} h"
        lines.append(f"{r.tenant:<14} {r.app:<11} {r.snapshot[:8]:<9} {age:>8} {seconds:>9}  "
                     f"{r.error or checks}")
    return lines


def drill_passed(results: list[AppResult], max_age_hours: float) -> bool:
    return bool(results) and all(r.ok and r.age_hours is not None and r.age_hours <= max_age_hours
                                 for r in results)


# --- The drill ------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"drill: {message}", flush=True)


def drill_env(tenants_dir: Path, store_copy: Path, key: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ASSOTIC_CHECK_ONLY", "ASSOTIC_INVENTORY_LABEL")}
    env.update(ASSOTIC_LAB_SLOT=str(DRILL_SLOT), ASSOTIC_TENANTS_DIR=str(tenants_dir),
               ASSOTIC_SECRETS_FILE=str(store_copy), ASSOTIC_SECRETS_KEY=str(key),
               # group_data/lab.py: the throw-away host makes no backups of its own.
               ASSOTIC_LAB_NO_BACKUP="1")
    return env


def run_step(command: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise DrillError(f"{what} failed (exit {result.returncode}): {' '.join(command)}")
    return result


def tenants_dir_of_source() -> Path:
    from assotic.preflight import tenants_dir

    return tenants_dir()


def tenants_to_drill(source, only: str | None, inventory_file: str) -> list:
    """The inventory's associations the drill restores: all, or the one `only` names."""
    platform = next(iter(source)).data.platform
    tenants = [t for t in platform.tenants if only in (None, t.slug)]
    if not tenants:
        raise DrillError(f"no tenant {only!r} in {inventory_file}")
    return tenants


def write_drill_tenants(tenants: list, source_dir: Path, tenants_dir: Path) -> dict[str, dict]:
    """Write into `tenants_dir` the tenant file of each association with its drilled apps on
    the drill host (drill_tenant); slug -> that file's data, for those with something drilled."""
    drilled: dict[str, dict] = {}
    for t in tenants:
        data = yaml.safe_load((source_dir / f"{t.slug}.yml").read_text())
        moved, skipped = drill_tenant(data)
        for reason in skipped:
            say(f"{t.slug}: skipped {reason}")
        if moved:
            drilled[t.slug] = moved
            (tenants_dir / f"{t.slug}.yml").write_text(yaml.safe_dump(moved, sort_keys=False))
    if not drilled:
        raise DrillError("no association has an app the drill can restore")
    return drilled


def copy_of_store(store: Path, work: Path) -> Path:
    """A 0600 copy of the secrets store: the drill's deploy may write to it, never to the real one."""
    store_copy = work / "secrets.enc.json"
    shutil.copy2(store, store_copy)
    os.chmod(store_copy, 0o600)
    return store_copy


def start_drill_host(env: dict[str, str], drilled: dict[str, dict]) -> SimpleNamespace:
    """Start the throw-away lab and deploy the drilled apps onto its drill host; that host."""
    python, pyinfra = sys.executable, str(Path(sys.executable).parent / "pyinfra")
    say(f"starting the throw-away lab (slot {DRILL_SLOT}) and deploying "
        f"{', '.join(sorted(drilled))} onto its {DRILL_HOST}")
    run_step([python, "-m", "lab", "up"], env, "lab up")
    run_step([pyinfra, "-y", "--limit", DRILL_HOST, "inventory/lab.py", "deploy.py"], env, "drill deploy")
    return SimpleNamespace(name=f"drill:{DRILL_HOST}", data=slot_ssh_data(DRILL_SLOT, 1))


def restored_result(slug: str, app: str, restored: list[dict], now: datetime | None = None) -> AppResult:
    """An app's result from what commands.restore.restore returned (its checks still to run)."""
    result = AppResult(slug, app)
    if not restored:
        result.error = "nothing restored"
        return result
    r = restored[0]
    result.snapshot, result.snapshot_time = r["snapshot"], r["snapshot_time"]
    result.age_hours = round(age_hours(r["snapshot_time"], now), 2)
    result.restore_seconds = r["seconds"]
    return result


def drill_app(inventory_file: str, source, target, slug: str, app: str, domain: str) -> AppResult:
    """Restore one app's latest snapshot onto the drill host, then check it there."""
    say(f"{slug}/{app}: restoring the latest snapshot")
    try:
        restored = restore(inventory_file, slug, app, "latest", None, force=True,
                           dry_run=False, target=target, inventory=source)
    except (RestoreError, RemoteError) as error:
        return AppResult(slug, app, error=f"restore failed: {str(error).splitlines()[0]}")
    result = restored_result(slug, app, restored)
    if not result.error:
        checked = run_remote(target, check_script(app, slug, domain, restored[0].get("expected", {})))
        result.checks = parse_checks(checked.stdout)
    return result


def remove_drill_lab(work: Path, keep: bool) -> None:
    shutil.rmtree(work, ignore_errors=True)
    if not keep:
        subprocess.run([sys.executable, "-m", "lab", "down"], cwd=REPO_ROOT,
                       env={**os.environ, "ASSOTIC_LAB_SLOT": str(DRILL_SLOT)},
                       capture_output=True, text=True)


def results_document(inventory_file: str, results: list[AppResult], max_age_hours: float,
                     duration_s: float, finished_at: datetime) -> dict:
    """What drill/results.json holds."""
    return {
        "inventory": str(inventory_file),
        "finished_at": finished_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(duration_s, 1),
        "max_age_hours": max_age_hours,
        "passed": drill_passed(results, max_age_hours),
        "results": [vars(r) for r in results],
    }


def report(inventory_file: str, results: list[AppResult], max_age_hours: float, started: float) -> int:
    """Print the results, write drill/results.json; 0 when the drill passed."""
    for line in report_lines(results, max_age_hours):
        print(line)
    document = results_document(inventory_file, results, max_age_hours, time.monotonic() - started,
                                datetime.now(timezone.utc))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    say(f"{'PASSED' if document['passed'] else 'FAILED'} ({len(results)} app(s)); figures in "
        f"{RESULTS.relative_to(REPO_ROOT)}")
    return 0 if document["passed"] else 1


def drill(inventory_file: str, only: str | None, keep: bool, max_age_hours: float) -> int:
    from assotic.secrets_store import default_key_path, default_store_path

    source = load_inventory_like_pyinfra(inventory_file, REPO_ROOT)
    tenants = tenants_to_drill(source, only, inventory_file)
    store, key = default_store_path(), default_key_path()  # as the inventory resolved them
    work = Path(tempfile.mkdtemp(prefix="assotic-drill-"))  # 0700
    started = time.monotonic()
    try:
        tenants_dir = work / "tenants"
        tenants_dir.mkdir()
        drilled = write_drill_tenants(tenants, tenants_dir_of_source(), tenants_dir)
        env = drill_env(tenants_dir, copy_of_store(store, work), key)
        target = start_drill_host(env, drilled)
        results = [drill_app(inventory_file, source, target, slug, app, moved["apps"][app]["domain"])
                   for slug, moved in drilled.items() for app in moved["apps"]]
    finally:
        remove_drill_lab(work, keep)
    return report(inventory_file, results, max_age_hours, started)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", default="inventory/lab.py")
    parser.add_argument("--tenant", help="one association (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away lab afterwards")
    parser.add_argument("--max-age-hours", type=float, default=DEFAULT_MAX_AGE_HOURS)


def run(args: argparse.Namespace) -> int:
    try:
        return drill(args.inventory, args.tenant, args.keep, args.max_age_hours)
    except DrillError as error:
        print(f"drill: {error}", file=sys.stderr)
        return 1
