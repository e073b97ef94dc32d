"""`make bench`: how long a deploy takes, how much memory idle associations cost, and what
a night of backups and a restore cost.

For 1 and for 10 generated associations (each with Nextcloud and Paheko on web-1):
  - converge: the first deploy onto a fresh lab host;
  - no-op: the deploy run again, which must change nothing;
  - idle memory of the whole host once pools are idle: its resident set, each page counted
    once (the sum of every process's PSS), and the sum of the processes' RSS, which counts a
    shared library again in every process that maps it.
With 1 association, then, its backups to the lab's backup target (backup-1, deployed first,
untimed, since web-1's first deploy initialises its repository there):
  - first night: its backup services started by hand, as their timers do (all data new);
  - unchanged night: the same again with nothing changed, the growth of web-1's restic
    repository on backup-1 over that night (`du -sb`), and the bytes of the repository files
    written during it (the net growth is after the job's prune: see bytes_written_since_mark);
  - restore: `python -m commands restore --force` of the association onto the same host.
Writes bench/results.json and prints a table. Figures are measured, never asserted by
tests: the targets below are reported as met or not.

The benchmark uses its own lab (slot 9: containers assotic-lab9-*, state in .lab9/)
so that the main lab is left as it is.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from assotic.layout import backup_job, backup_unit
from assotic.runlog import changed_operations_per_host

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results.json"
BENCH_SLOT = "9"
BENCH_HOST = "web-1"
BACKUP_HOST = "backup-1"  # the lab's backup target (lab.harness LAB_HOSTS, group backup)
BENCH_APPS = ("nextcloud", "paheko")
TENANT_COUNTS = (1, 10)
# PHP-FPM ondemand pools stop their workers after their idle timeout (10 s): wait longer.
IDLE_SETTLE_S = 30
# Checked against the host's resident set (PSS summed): what one more association costs
# the host. The summed RSS is reported next to it.
TARGET_RSS_PER_TENANT_KIB = 5 * 1024
TARGET_NOOP_RATIO = 3.0


def bench_tenant(index: int) -> dict:
    """A generated association, as a volunteer would write it."""
    slug = f"bench{index:02d}"
    return {
        "slug": slug,
        "name": f"Association de mesure {index}",
        "contact": {"email": f"bureau@{slug}.example.org"},
        "apps": {
            "nextcloud": {"host": BENCH_HOST, "domain": f"cloud.{slug}.example.org"},
            "paheko": {"host": BENCH_HOST, "domain": f"gestion.{slug}.example.org"},
        },
        "admins": [{"name": "Camille", "email": f"camille@{slug}.example.org"}],
    }


def write_tenants(directory: Path, count: int) -> None:
    for index in range(1, count + 1):
        tenant = bench_tenant(index)
        (directory / f"{tenant['slug']}.yml").write_text(yaml.safe_dump(tenant, sort_keys=False))


def lab_env(tenants_dir: Path) -> dict[str, str]:
    return {**os.environ, "ASSOTIC_LAB_SLOT": BENCH_SLOT, "ASSOTIC_TENANTS_DIR": str(tenants_dir)}


def container(host: str = BENCH_HOST, slot: str = BENCH_SLOT) -> str:
    return f"assotic-lab{slot}-{host}" if slot != "0" else f"assotic-lab-{host}"


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"bench: {' '.join(command)} failed with exit code {result.returncode}")
    return result


def timed_deploy(env: dict[str, str]) -> tuple[float, int]:
    """(seconds, operations changed on the bench host) for one real deploy."""
    bin_dir = Path(sys.executable).parent
    start = time.monotonic()
    result = run([str(bin_dir / "pyinfra"), "-y", "--limit", BENCH_HOST, "inventory/lab.py",
                  "deploy.py"], env)
    seconds = time.monotonic() - start
    changed = changed_operations_per_host(result.stdout + result.stderr).get(BENCH_HOST, -1)
    return seconds, changed


def prepare_backup_target(env: dict[str, str]) -> None:
    """Deploy the backup target first (untimed): web-1's converge initialises its repository there."""
    run([str(Path(sys.executable).parent / "pyinfra"), "-y", "--limit", BACKUP_HOST, "inventory/lab.py",
         "deploy.py"], env)


def tenant_backup_units(slug: str) -> list[str]:
    """The association's nightly backup services (roles/backup: one per app), as its timers start them."""
    return [f"{backup_unit(backup_job(slug, app))}.service" for app in BENCH_APPS]


def timed_backup_night(slug: str, slot: str = BENCH_SLOT) -> float:
    """Seconds for `systemctl start` of the association's backup services (it waits for them)."""
    start = time.monotonic()
    subprocess.run(["docker", "exec", container(BENCH_HOST, slot), "systemctl", "start",
                    *tenant_backup_units(slug)], check=True, capture_output=True, text=True)
    return time.monotonic() - start


BENCH_REPOSITORY = f"/srv/assotic-backup/restic-{BENCH_HOST}/repo"
NIGHT_MARK = "/run/assotic-bench-night-start"


def on_backup_target(script: str, slot: str) -> str:
    return subprocess.run(["docker", "exec", container(BACKUP_HOST, slot), "sh", "-c", script],
                          check=True, capture_output=True, text=True).stdout


def repository_bytes(slot: str = BENCH_SLOT) -> int:
    """Size of the bench host's restic repository on the backup target (roles/backup_target)."""
    return int(on_backup_target(f"du -sb {BENCH_REPOSITORY}", slot).split()[0])


def bytes_written_since_mark(slot: str = BENCH_SLOT) -> int:
    """Bytes of the repository's files written after NIGHT_MARK: what the night sent, before
    the job's `forget --prune` removed anything (within one day, --keep-daily drops the day's
    earlier snapshot, so the net growth alone would understate a real night)."""
    out = on_backup_target(f"find {BENCH_REPOSITORY} -type f -newer {NIGHT_MARK} -printf '%s\\n'", slot)
    return sum(int(size) for size in out.split())


def timed_restore(slug: str, env: dict[str, str]) -> float:
    """Seconds for `make restore TENANT=<slug> FORCE=1`: the latest snapshots onto the same host."""
    start = time.monotonic()
    run([sys.executable, "-m", "commands", "restore", "--inventory", "inventory/lab.py", "--tenant", slug,
         "--force"], env)
    return time.monotonic() - start


def measure_backups(slug: str, env: dict[str, str], slot: str = BENCH_SLOT) -> dict:
    """A first night, an unchanged night (time, repository growth), then a restore of `slug`.

    `slot` and `env` name the lab (the bench's own by default; any lab whose web-1 backs up
    `slug` to backup-1 works, e.g. to try this by hand with ASSOTIC_LAB_SLOT=3 and ulap).
    """
    first_night_s = timed_backup_night(slug, slot)
    before = repository_bytes(slot)
    on_backup_target(f"touch {NIGHT_MARK}", slot)
    unchanged_night_s = timed_backup_night(slug, slot)
    growth = repository_bytes(slot) - before
    written = bytes_written_since_mark(slot)
    restore_s = timed_restore(slug, env)
    return {"tenant": slug, "jobs": tenant_backup_units(slug), "first_night_s": round(first_night_s, 1),
            "unchanged_night_s": round(unchanged_night_s, 1), "repository_bytes_before": before,
            "unchanged_night_growth_bytes": growth, "unchanged_night_written_bytes": written,
            "restore_s": round(restore_s, 1)}


def host_rss_kib() -> tuple[int, list[tuple[str, int]]]:
    """Total resident memory of the host's processes, and the five largest by command."""
    result = subprocess.run(["docker", "exec", container(), "ps", "-eo", "rss=,comm="],
                            capture_output=True, text=True, check=True)
    by_command: dict[str, int] = {}
    for line in result.stdout.splitlines():
        rss, _, command = line.strip().partition(" ")
        if rss.isdigit():
            by_command[command.strip()] = by_command.get(command.strip(), 0) + int(rss)
    top = sorted(by_command.items(), key=lambda item: -item[1])[:5]
    return sum(by_command.values()), top


def host_pss_kib() -> int:
    """Proportional set size of the host's processes: shared pages split between their users.

    RSS counts a shared library once per process that maps it (every redis-server maps the
    same ~10 MiB); PSS adds up to what the processes really cost together.
    """
    script = "cat /proc/[0-9]*/smaps_rollup 2>/dev/null | awk '/^Pss:/ {kib += $2} END {print kib}'"
    result = subprocess.run(["docker", "exec", container(), "sh", "-c", script],
                            capture_output=True, text=True, check=True)
    return int(result.stdout.strip() or 0)


def measure(count: int, with_backups: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="assotic-bench-") as tmp:
        tenants_dir = Path(tmp)
        write_tenants(tenants_dir, count)
        env = lab_env(tenants_dir)
        print(f"bench: {count} association(s): fresh lab host", flush=True)
        run([sys.executable, "-m", "lab", "down"], env)
        run([sys.executable, "-m", "lab", "up"], env)
        print(f"bench: {count} association(s): deploy the backup target (untimed)", flush=True)
        prepare_backup_target(env)
        print(f"bench: {count} association(s): converge", flush=True)
        converge_s, _ = timed_deploy(env)
        print(f"bench: {count} association(s): no-op re-run", flush=True)
        noop_s, noop_changed = timed_deploy(env)
        time.sleep(IDLE_SETTLE_S)
        rss_kib, top = host_rss_kib()
        pss_kib = host_pss_kib()
        # After the memory figures: the backups and the restore wake the pools up.
        backups = None
        if with_backups:
            print(f"bench: {count} association(s): backups and restore", flush=True)
            backups = measure_backups(bench_tenant(1)["slug"], env)
    figures = {"tenants": count, "converge_s": round(converge_s, 1), "noop_s": round(noop_s, 1),
               "noop_changed_operations": noop_changed, "idle_rss_kib": rss_kib,
               "idle_pss_kib": pss_kib, "largest_processes_kib": top}
    return {**figures, "backup": backups} if backups else figures


def summarize(runs: list[dict]) -> dict:
    one, many = runs[0], runs[-1]
    extra = many["tenants"] - one["tenants"]
    per_tenant = (many["idle_rss_kib"] - one["idle_rss_kib"]) / extra if extra else 0.0
    pss_per_tenant = (many["idle_pss_kib"] - one["idle_pss_kib"]) / extra if extra else 0.0
    noop_ratio = many["noop_s"] / one["noop_s"] if one["noop_s"] else float("inf")
    return {
        "host_resident_per_additional_tenant_kib": round(pss_per_tenant),
        "summed_process_rss_per_additional_tenant_kib": round(per_tenant),
        "noop_ratio": round(noop_ratio, 2),
        "target_rss_per_tenant_kib": TARGET_RSS_PER_TENANT_KIB,
        "target_noop_ratio": TARGET_NOOP_RATIO,
        "rss_target_met": pss_per_tenant < TARGET_RSS_PER_TENANT_KIB,
        "summed_process_rss_under_target": per_tenant < TARGET_RSS_PER_TENANT_KIB,
        "noop_target_met": noop_ratio < TARGET_NOOP_RATIO,
    }


def table(runs: list[dict], summary: dict) -> str:
    lines = [f"{'tenants':>7}  {'converge s':>10}  {'no-op s':>8}  {'no-op changes':>13}  "
             f"{'idle RSS MiB':>12}  {'idle PSS MiB':>12}"]
    for r in runs:
        lines.append(f"{r['tenants']:>7}  {r['converge_s']:>10}  {r['noop_s']:>8}  "
                     f"{r['noop_changed_operations']:>13}  {r['idle_rss_kib'] / 1024:>12.1f}  "
                     f"{r['idle_pss_kib'] / 1024:>12.1f}")
    lines.append(f"host resident memory (PSS summed) per additional tenant: "
                 f"{summary['host_resident_per_additional_tenant_kib'] / 1024:.2f} MiB "
                 f"(target < 5 MiB: {'met' if summary['rss_target_met'] else 'NOT met'}); "
                 f"summed process RSS per additional tenant: "
                 f"{summary['summed_process_rss_per_additional_tenant_kib'] / 1024:.2f} MiB "
                 "(counts shared libraries once per process)")
    lines.append(f"no-op with {runs[-1]['tenants']} / with {runs[0]['tenants']}: "
                 f"{summary['noop_ratio']} (target < 3: "
                 f"{'met' if summary['noop_target_met'] else 'NOT met'})")
    lines += [backup_line(r["backup"]) for r in runs if r.get("backup")]
    return "\n".join(lines)


def backup_line(backup: dict) -> str:
    return (f"backups of {backup['tenant']} ({', '.join(backup['jobs'])}): first night "
            f"{backup['first_night_s']} s; unchanged night {backup['unchanged_night_s']} s, repository "
            f"{backup['unchanged_night_growth_bytes']:+} bytes net (of {backup['repository_bytes_before']}), "
            f"{backup['unchanged_night_written_bytes']} bytes written; restore {backup['restore_s']} s")


def main() -> int:
    runs = [measure(count, with_backups=count == 1) for count in TENANT_COUNTS]
    summary = summarize(runs)
    results = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "bench_host": f"{BENCH_HOST} (Debian 12 lab container)",
        "runs": runs,
        "summary": summary,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(runs, summary))
    print(f"bench: figures written to {RESULTS.relative_to(REPO)}")
    subprocess.run([sys.executable, "-m", "lab", "down"],
                   env={**os.environ, "ASSOTIC_LAB_SLOT": BENCH_SLOT}, cwd=REPO, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
