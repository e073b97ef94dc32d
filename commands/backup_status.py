"""Is every association's last backup fresh? (`make backup-status`, run nightly by CI)

    python -m commands backup-status --inventory inventory/<name>.py

Reads the inventory exactly as pyinfra does, computes on the deploy machine which backup
jobs each backed-up host must have (from the plan the deploy uses, roles/plan.py: one
job per instance it backs up, plus the host's own), then reads their status files
(/var/lib/assotic/backup/status/<job>.json, written by the job as its very last step) over
SSH. Exits 1 naming every job whose last successful backup is missing or older than data
`backup_max_age_hours` (26 by default: a nightly job, with room for a slow night).
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from assotic.layout import BACKED_UP_GROUPS, BACKUP_MAX_AGE_HOURS, BACKUP_STATUS_DIR, HOST_BACKUP_JOB
from assotic.preflight import REPO_ROOT, load_inventory_like_pyinfra
from commands.remote import host_plan, parse_json_stream, run_remote


def expected_jobs(plan) -> list[str]:
    """The job names a host must have status files for: one per instance its plan backs up
    (<slug>-<app>, <instance>-mattermost), then "host"."""
    return [b.job for b in plan.backups] + [HOST_BACKUP_JOB]


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
            problems.append(f"{host}: {job}: no successful backup recorded ({BACKUP_STATUS_DIR}/{job}.json missing)")
            continue
        age = age_hours(status["finished_at"], now)
        if age > max_age_h:
            problems.append(f"{host}: {job}: last successful backup {age:.1f} h ago "
                            f"({status['finished_at']}), more than {max_age_h:g} h")
    return problems


def read_statuses(pyinfra_host) -> dict[str, dict]:
    result = run_remote(pyinfra_host, f"for f in {BACKUP_STATUS_DIR}/*.json; do [ -e \"$f\" ] && cat \"$f\"; done; true\n")
    if result.returncode != 0:
        raise RuntimeError(f"cannot read {BACKUP_STATUS_DIR} on {pyinfra_host.name}: {result.stderr.strip()}")
    return {status["job"]: status for status in parse_json_stream(result.stdout)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", required=True)


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory_like_pyinfra(Path(args.inventory).resolve(), REPO_ROOT)
    now = datetime.now(timezone.utc)
    problems, checked = [], 0
    for h in inventory:
        if not set(h.groups) & set(BACKED_UP_GROUPS):
            continue
        max_age = float(h.data.get("backup_max_age_hours") or BACKUP_MAX_AGE_HOURS)
        if not h.data.get("backup_target"):
            problems.append(f"{h.name}: no backup_target in its data: nothing on it is backed up")
            continue
        try:
            statuses = read_statuses(h)
            # "standin": job names do not depend on releases, and CI runs this on a fresh
            # machine where no release file has been downloaded.
            jobs = expected_jobs(host_plan(h, missing_release="standin"))
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

