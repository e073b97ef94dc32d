"""Deploys killed partway (SIGKILL: an OOM kill, a closed laptop, a lost session), then re-run.

Runs after test_lab.py (tests/lab/conftest.py) on the same lab, one round per kill point, in
the order of a first deploy. Each round puts web-1 back, for just the parts its point
touches, into the state of a first deploy (the damage), so that the deploy has real work
there; starts `pyinfra -y inventory/lab.py deploy.py` and kills it with SIGKILL at that
point, chosen by operation name and by the output line that triggers the kill: the
operation starting, or the operation having succeeded on web-1 (so that the kill lands
between two named steps). Then the kill is checked to have landed there (the last started
operation, and what the host shows), the next deploy must succeed and change things, the
testinfra checks of the point's concern must pass on web-1 (its check files in tests/verify,
and test_reloads.py: a kill between a change and its reload is what every point risks), and a
deploy of every host after that must change nothing anywhere. That no-op deploy is the
converged state the next round damages.

The killed and the repair deploys run on web-1 alone (`--limit`): the damage is there only,
and the no-op deploy of every host proves the others unchanged. A round costs three deploys
and a few checks, not the whole of tests/verify (docs/lab.md has the figures).

The five points, spread over a first deploy (deploy.py's order):
1. base, firewall: /etc/nftables.conf installed, its ruleset not loaded yet. The host runs
   without its firewall; the next deploy finds the file right, so only the reload stamp
   (roles/remote_files.reload_after) makes it load the rules. The same mechanism follows
   every reloaded file (PHP pools, PostgreSQL, Redis, units): this is its earliest use, and
   the costliest to miss.
2. PostgreSQL: an instance's database created, PUBLIC not yet deprived of CONNECT and the
   public schema not yet given to its owner. The next deploy must finish securing it from
   what PostgreSQL says (roles/postgresql database_ops_needed), not from what it did.
3. nginx: a vhost staged in /etc/nginx/assotic-staging/, not activated. The next deploy finds
   the staged copy right (nothing to render) and must still activate it.
4. A release unpack: killed as the unpack starts. A half-made tree must never be taken for
   a finished one (roles/releases.py: built aside, marker written last). Needs the real
   Paheko release (as tests/lab/test_paheko_release.py): skipped, with the reason, when the
   lab runs the stand-in, since a stand-in has no release to unpack.
5. backup: an association's backup script, service and timer written, systemd not yet
   reloaded, the timer not enabled: the last role, so a kill there leaves everything else
   done and only stamps and facts to tell what is missing.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from assotic.artifacts import OPT_ROOT
from assotic.layout import backup_job, backup_unit
from assotic.runlog import ANSI_ESCAPE, changed_operation_names, changed_operations_per_host
from lab.harness import LAB_HOSTS
from roles.backup import LIB_DIR, UNIT_DIR
from roles.base import NFTABLES_CONF
from roles.nginx.render import NGINX_DIR, SITES_ENABLED, STAGING_DIR
from roles.remote_files import RELOAD_STAMPS
from tests.lab.shell import sh

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = "inventory/lab.py"
WEB = "web-1"
TENANT = "ulap"  # on web-1, with the three apps
PAHEKO_DOMAIN = f"gestion.{TENANT}.example.org"
DATABASE = f"nextcloud_{TENANT}"  # its Nextcloud's role and database (the stand-in's too)
BACKUP_JOB = backup_job(TENANT, "paheko")
BACKUP_UNIT = backup_unit(BACKUP_JOB)
# The Paheko vhost as the deploy stages it, then activates it (roles/nginx).
PAHEKO_VHOST = f"{SITES_ENABLED}/assotic-{PAHEKO_DOMAIN}.conf"
PAHEKO_VHOST_STAGED = f"{STAGING_DIR}/{PAHEKO_VHOST.removeprefix(NGINX_DIR + '/')}"
# Bounds: the killed deploy must reach its point; every command ends.
KILL_DEADLINE_S = 900
COMMAND_TIMEOUT_S = 1800
STARTED = "--> Starting operation:"
# pyinfra prints `[web-1] Success` for an operation that changed something on web-1.
SUCCESS_ON_WEB = re.compile(rf"^\s*\[{re.escape(WEB)}\]\s+Success\b")
FAILED_ON_WEB = re.compile(rf"^\s*\[{re.escape(WEB)}\]\s+Error\b")


def operation(name: str, whole: bool = True) -> str:
    """A regexp finding the operation `name` in a start line: pyinfra prefixes the names of
    @deploy functions ("PostgreSQL | ...") and joins those of different hosts with ", "."""
    return rf"(?:^|\| |, ){re.escape(name)}" + (r"(?:,|$)" if whole else "")


@dataclass(frozen=True)
class KillPoint:
    name: str
    damage: str  # bash on web-1: the first-deploy state of what this point touches
    operation: str  # regexp searched in the operation's name (`--> Starting operation: <name>`)
    when: str  # "started": on that line; "succeeded": on `[web-1] Success` after it
    landed: str  # bash on web-1 that succeeds only in the state the kill should leave
    checks: tuple[str, ...]  # files of tests/verify that check the point's concern
    needs_release: bool = False


POINTS = [
    KillPoint(
        name="firewall-installed-not-loaded",
        # Debian's own nftables.conf accepts everything (its `flush ruleset` left out here:
        # fail2ban's table is not this point's business), loaded in place of ours.
        damage="printf '%s\\n' '#!/usr/sbin/nft -f' 'table inet filter {'"
               " '  chain input { type filter hook input priority filter; }'"
               " '  chain forward { type filter hook forward priority filter; }'"
               f" '  chain output {{ type filter hook output priority filter; }}' '}}' > {NFTABLES_CONF}\n"
               f"nft delete table inet filter\nnft -f {NFTABLES_CONF}",
        operation=operation(f"Check and install {NFTABLES_CONF}"),
        when="succeeded",
        # The assotic ruleset is in the file, not in the kernel.
        landed=f"grep -q 'policy drop' {NFTABLES_CONF} && ! grep -q 'policy drop' <(nft list table inet filter)",
        checks=("test_base.py",),  # the firewall's checks are base's
    ),
    KillPoint(
        name="postgresql-database-created-not-secured",
        damage=f"runuser -u postgres -- psql -Xq -v ON_ERROR_STOP=1"
               f" -c 'DROP DATABASE IF EXISTS \"{DATABASE}\" WITH (FORCE)'"
               f" -c 'DROP ROLE IF EXISTS \"{DATABASE}\"'",
        operation=operation(f"Create database {DATABASE}"),
        when="succeeded",
        # Created by its owner, PUBLIC's default CONNECT still there (datacl NULL).
        landed=f"test \"$(runuser -u postgres -- psql -XAtq -c \"SELECT pg_get_userbyid(datdba)"
               f" || '|' || COALESCE(datacl::text, '') FROM pg_database WHERE datname = '{DATABASE}'\")\""
               f" = '{DATABASE}|'",
        checks=("test_postgresql.py",),
    ),
    KillPoint(
        name="nginx-vhost-staged-not-activated",
        damage=f"rm -f {PAHEKO_VHOST}\nsystemctl reload nginx",
        operation=operation(f"Render {PAHEKO_VHOST_STAGED}"),
        when="succeeded",
        landed=f"test -f {PAHEKO_VHOST_STAGED} && ! test -e {PAHEKO_VHOST}",
        checks=("test_nginx.py", "test_paheko.py"),  # the vhost is Paheko's: its pages through nginx
    ),
    KillPoint(
        name="release-unpack-started",
        # The code tree of the real Paheko and its marker (the upload stays: checksum-compared).
        damage=f"rm -rf {OPT_ROOT}/paheko-* {OPT_ROOT}/.paheko-*.unpacked {OPT_ROOT}/.paheko-*.lock",
        operation=operation("Unpack paheko ", whole=False),
        when="started",
        # Killed deploys leave the remote command running (no tty: sshd sends no SIGHUP), so
        # the unpack may even finish; what must never be is a tree behind a marker, unfinished.
        landed=f"for m in {OPT_ROOT}/.paheko-*.unpacked; do [ -e \"$m\" ] || continue;"
               f" d=${{m#{OPT_ROOT}/.}}; test -d {OPT_ROOT}/${{d%.unpacked}}/www; done",
        checks=("test_paheko.py",),  # the release tree, its instances initialised, its pages
        needs_release=True,
    ),
    KillPoint(
        name="backup-units-written-not-loaded",
        damage=f"systemctl disable --now {BACKUP_UNIT}.timer\n"
               f"rm -f {UNIT_DIR}/{BACKUP_UNIT}.service {UNIT_DIR}/{BACKUP_UNIT}.timer"
               f" {LIB_DIR}/{BACKUP_JOB}.sh\n"
               "systemctl daemon-reload",
        operation=operation(f"Render {UNIT_DIR}/{BACKUP_UNIT}.timer"),
        when="succeeded",
        # On disk, newer than the last daemon-reload of the backup units, the timer not enabled.
        landed=f"test {UNIT_DIR}/{BACKUP_UNIT}.timer -nt {RELOAD_STAMPS}/daemon-reload-backup"
               f" && test \"$(systemctl is-enabled {BACKUP_UNIT}.timer)\" = disabled",
        checks=("test_backup.py",),
    ),
]


def run(*command: str) -> str:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    output = result.stdout + result.stderr
    print(f"$ {' '.join(command)}\n{output[-6000:]}")
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output[-3000:]}"
    return output


def deploy(*options: str) -> str:
    return run(str(VENV_BIN / "pyinfra"), "-y", *options, INVENTORY, "deploy.py")


# The deploys a round damages: web-1 only. pyinfra still loads every host's data.
ON_WEB = ("--limit", WEB)
# Every point risks a change written and its reload not run: the reload stamps' check.
ALWAYS_CHECKED = ("test_reloads.py",)


def verify_concern(point: KillPoint) -> None:
    """The checks of tests/verify for the point's concern, on web-1 only: the other hosts
    were not damaged, and the no-op deploy of every host shows them unchanged (all their
    checks passed in test_lab.py)."""
    files = [f"tests/verify/{name}" for name in (*point.checks, *ALWAYS_CHECKED)]
    run(str(VENV_BIN / "pytest"), "-q", "-p", "no:cacheprovider", *files, f"--inventory={INVENTORY}",
        "-k", WEB)


def operation_name(line: str) -> str | None:
    return line.split(":", 1)[1].strip() if line.startswith(STARTED) else None


def deploy_killed_at(point: KillPoint) -> list[str]:
    """Start a deploy and SIGKILL it at `point`; returns the operations web-1 reported after
    the point's own, each with its status (none when the kill landed right there).

    pyinfra writes unbuffered and its output is read unbuffered too (os.read, no line buffer
    holding a line back), so the kill follows the line that triggers it at once; what
    pyinfra printed before it died is read afterwards.
    """
    wanted = re.compile(point.operation)
    process = subprocess.Popen(
        [str(VENV_BIN / "pyinfra"), "-y", *ON_WEB, INVENTORY, "deploy.py"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, pending, current, triggered, failed, at = [], b"", None, False, False, 0
    deadline = time.monotonic() + KILL_DEADLINE_S
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        while not triggered and not failed and time.monotonic() < deadline:
            if not selector.select(timeout=1):
                if process.poll() is not None:
                    break
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            *complete, pending = (pending + chunk).split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace") + "\n"
                lines.append(line)
                if triggered or failed:
                    continue  # printed in the same chunk, after the trigger
                plain = ANSI_ESCAPE.sub("", line)
                name = operation_name(plain)
                if name is not None:
                    current = name
                    triggered = point.when == "started" and bool(wanted.search(name))
                elif current is not None and wanted.search(current):
                    triggered = point.when == "succeeded" and bool(SUCCESS_ON_WEB.match(plain))
                    failed = bool(FAILED_ON_WEB.match(plain))
                at = len(lines)  # what follows the trigger is what went on past it
        finished_early = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        drain_until = time.monotonic() + 10  # what it printed before the kill reached it
        while time.monotonic() < drain_until and selector.select(timeout=1):
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
        lines += [raw.decode(errors="replace") + "\n" for raw in pending.split(b"\n") if raw]
    finally:
        selector.close()
        if process.poll() is None:
            process.kill()
    output = "".join(lines)
    print(f"$ pyinfra -y {' '.join(ON_WEB)} {INVENTORY} deploy.py  (SIGKILL at {point.name})\n{output[-4000:]}")
    assert not finished_early, "the deploy ended before it reached the kill point"
    assert not failed, f"the operation of the kill point failed on {WEB}"
    assert triggered, f"{point.operation!r} ({point.when}) not seen on {WEB} within {KILL_DEADLINE_S}s"
    return reported_on_web(lines[at:])


def reported_on_web(lines: list[str]) -> list[str]:
    """`<operation>: <status>` for each operation web-1 reported in these lines. pyinfra starts
    the next operation as soon as one is done (its start line may come before the kill), and
    runs through those of other hosts (`[web-1] Skipped`) in no time: those are harmless."""
    reported, current = [], None
    for line in lines:
        plain = ANSI_ESCAPE.sub("", line)
        current = operation_name(plain) or current
        status = re.match(rf"^\s*\[{re.escape(WEB)}\]\s+(.*\S)", plain)
        if status and current and not status[1].startswith("Skipped"):
            reported.append(f"{current}: {status[1]}")
    return reported


@pytest.fixture(scope="module")
def lab():
    began = time.monotonic()
    run(str(VENV_BIN / "python"), "-m", "lab", "up")
    deploy()  # after test_lab.py a no-op; alone, the first deploy
    print(f"killed-deploy setup (lab up, deploy): {time.monotonic() - began:.0f} s")
    rounds: dict[str, dict[str, float]] = {}
    yield rounds
    for name, phases in rounds.items():
        print(f"killed-deploy round {name}: {sum(phases.values()):.0f} s ("
              + ", ".join(f"{phase} {s:.0f}" for phase, s in phases.items()) + ")")


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_a_deploy_killed_at_this_point_is_repaired_by_the_next_one(lab, point):
    if point.needs_release and sh(WEB, f"ls {OPT_ROOT}/.paheko-*.unpacked", check=False).returncode:
        pytest.skip("the lab runs the Paheko stand-in (no release provided, docs/lab.md): "
                    "there is no release to unpack")
    phases, began = {}, time.monotonic()

    def phase(name: str) -> None:
        phases[name] = time.monotonic() - began - sum(phases.values())

    sh(WEB, point.damage)
    after = deploy_killed_at(point)
    assert not after, f"{WEB} went on past the kill point: {after}"
    sh(WEB, point.landed)  # and the host is in between
    phase("damage+killed")

    repaired = deploy(*ON_WEB)
    phase("repair")
    assert changed_operations_per_host(repaired).get(WEB, 0) >= 1, "the re-run must finish the work"
    verify_concern(point)
    phase("verify")

    again = deploy()
    phase("no-op")
    per_host = changed_operations_per_host(again)
    changed = {h: changed_operation_names(again, h) for h, n in per_host.items() if n}
    assert per_host == {h.name: 0 for h in LAB_HOSTS}, f"operations that changed: {changed}"
    lab[point.name] = phases
