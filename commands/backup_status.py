"""Is every association's last backup fresh? (`make backup-status`, run nightly by CI)

    python -m commands.backup_status --inventory inventory/<name>.py

Reads the inventory exactly as pyinfra does, computes on the deploy machine which backup
jobs each backed-up host must have (the same host_plan the deploy uses: one job per
association and app, plus the host's own), then reads their status files
(/var/lib/assotic/backup/status/<job>.json, written by the job as its very last step) over
SSH. Exits 1 naming every job whose last successful backup is missing or older than data
`backup_max_age_hours` (26 by default: a nightly job, with room for a slow night).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assotic.preflight import BACKED_UP_GROUPS, REPO_ROOT, load_inventory_like_pyinfra

STATUS_DIR = "/var/lib/assotic/backup/status"
DEFAULT_MAX_AGE_HOURS = 26


# The apps whose roles hand a backup spec per association; Mattermost has one job per
# instance (an association's own, or a shared one), named after the instance.
BACKED_UP_APPS = ("nextcloud", "paheko")


def expected_jobs(host_name: str, host_data: Any) -> list[str]:
    """The job names a host must have status files for: <slug>-<app>, then "host".

    From the tenants alone, as roles.host_plan walks them, not from resolved releases: CI
    runs this on a fresh machine where no release file has been downloaded.
    """
    from roles.backup import HOST_JOB

    jobs = [f"{tenant.slug}-{app}" for tenant in host_data.platform.tenants_on(host_name)
            for app in BACKED_UP_APPS if app in tenant.apps_on(host_name)]
    jobs += [f"{instance.name}-mattermost" for instance in host_data.platform.mattermost_on(host_name)]
    return jobs + [HOST_JOB]


def age_hours(finished_at: str, now: datetime) -> float:
    """Hours since a status file's finished_at ("2026-11-30T02:17:03Z")."""
    finished = datetime.strptime(finished_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (now - finished).total_seconds() / 3600


def stale_jobs(host: str, jobs: list[str], statuses: dict[str, dict], max_age_h: float,
               now: datetime) -> list[str]:
    """One line per job of `host` whose last successful backup is missing or too old."""
    problems = []
    for job in jobs:
        status = statuses.get(job)
        if status is None:
            problems.append(f"{host}: {job}: no successful backup recorded ({STATUS_DIR}/{job}.json missing)")
            continue
        age = age_hours(status["finished_at"], now)
        if age > max_age_h:
            problems.append(f"{host}: {job}: last successful backup {age:.1f} h ago "
                            f"({status['finished_at']}), more than {max_age_h:g} h")
    return problems


def read_statuses(pyinfra_host) -> dict[str, dict]:
    from commands.restore import run_remote
    from commands.update import parse_json_stream

    result = run_remote(pyinfra_host, f"for f in {STATUS_DIR}/*.json; do [ -e \"$f\" ] && cat \"$f\"; done; true\n")
    if result.returncode != 0:
        raise RuntimeError(f"cannot read {STATUS_DIR} on {pyinfra_host.name}: {result.stderr.strip()}")
    return {status["job"]: status for status in parse_json_stream(result.stdout)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="commands.backup_status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", required=True)
    args = parser.parse_args(argv)
    inventory = load_inventory_like_pyinfra(Path(args.inventory).resolve(), REPO_ROOT)
    now = datetime.now(timezone.utc)
    problems, checked = [], 0
    for h in inventory:
        if not set(h.groups) & set(BACKED_UP_GROUPS):
            continue
        max_age = float(h.data.get("backup_max_age_hours") or DEFAULT_MAX_AGE_HOURS)
        if not h.data.get("backup_target"):
            problems.append(f"{h.name}: no backup_target in its data: nothing on it is backed up")
            continue
        try:
            statuses = read_statuses(h)
            jobs = expected_jobs(h.name, h.data)
        except Exception as err:  # unreachable host: that is a failed check too, named
            problems.append(f"{h.name}: {err}")
            continue
        checked += len(jobs)
        found = stale_jobs(h.name, jobs, statuses, max_age, now)
        problems += found
        for job in jobs:
            if job in statuses and not any(f": {job}:" in p for p in found):
                print(f"ok  {h.name}: {job}: {age_hours(statuses[job]['finished_at'], now):.1f} h old "
                      f"(snapshot {statuses[job].get('snapshot_id', '?')[:8]})")
    for problem in problems:
        print(f"OLD {problem}")
    print(f"backup-status: {checked} job(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
