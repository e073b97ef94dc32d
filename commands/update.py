"""Apply new release pins to the app instances that still run an older one (`make update`).

    python -m commands update --inventory inventory/<name>.py [--tenant <slug>] [--dry-run]

Reads the inventory exactly as pyinfra does (assotic.preflight.load_inventory_like_pyinfra),
reads each web host's release markers (/var/lib/assotic/releases/, written by deploy.py after
each app) over SSH, and compares them with the pins in data `releases`. Every instance whose
deployed version differs is updated, one at a time, the canary association first (data
`update_canary`; if any of its updates fails, nothing else is touched):

1. a fresh backup: its backup job runs now and must write a new status file (its snapshot is
   the rollback point); otherwise the update of that instance does not start;
2. maintenance mode on (Nextcloud: `occ maintenance:mode --on`; a stand-in has none: skipped,
   and said so);
3. the upgrade: the deploy, limited to that host (`pyinfra --limit`), with every other
   instance of the host held on the release it runs (assotic.artifacts.instance_pins), so only
   this one changes. Nextcloud: one major at a time (the role runs `occ upgrade` and the
   db:add-missing-* commands); a jump of more than one major needs the intermediate pins in
   data `nextcloud_upgrade_path`, else it is refused before anything starts. Then maintenance
   mode off (Nextcloud);
4. a health check: the vhost answers below 500 on the host itself, Nextcloud's `occ status`
   says installed, not in maintenance, no database upgrade pending; the marker shows the new
   version;
5. on failure (of 3 or 4): rollback. `commands restore` puts the pre-update snapshot back
   (--snapshot <id> --force), then the deploy puts the previous pin's code back (the pin
   recorded in the marker), and the health check runs again.

Mattermost: each instance (an association's own, or one shared by several, named
"<instance>/mattermost") is updated the same way: its backup job (database dump, data,
config), no maintenance mode (Mattermost has none: the new server runs its database
migrations when it starts), the limited deploy that points its unit at the new release and
restarts it, the health check through nginx, the rollback by restore + previous release.

`--dry-run` prints the plan only. The plan is always printed before anything is done.
`--drill-fail-health <slug>/<app>`: for rehearsals, the health check of that instance is
reported failed after it ran for real, so that the rollback path runs; never for production.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assotic.artifacts import artifact_from_pin, instance_key
from assotic.layout import RELEASE_MARKER_DIR, backup_job, backup_status_file, backup_unit
from assotic.preflight import REPO_ROOT, load_inventory_like_pyinfra
from commands.remote import parse_json_stream, run_remote_strict

HTTP_HEALTHY_BELOW = 500


class UpdateRefused(Exception):
    """The plan cannot be carried out as data says: nothing was started."""


class StepFailed(Exception):
    pass


# -- Pure part: versions, paths, order (tests/unit/test_update.py) ------------------------------


def major(version: str) -> int:
    """Nextcloud's major: "34.0.4" -> 34."""
    head = str(version).split(".")[0]
    if not head.isdigit():
        raise UpdateRefused(f"cannot read a major version in {version!r}")
    return int(head)


def upgrade_steps(app: str, current: str, target_pin: dict[str, Any],
                  intermediate_pins: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The pins to apply in turn to go from `current` to `target_pin`.

    Nextcloud upgrades one major at a time and never downgrades
    (https://docs.nextcloud.com/server/latest/admin_manual/maintenance/upgrade.html): each
    major skipped needs a pin of its own in `intermediate_pins` (the newest one of that major
    is used), or the update is refused. Other apps: the target pin in one step.
    """
    target = str(target_pin["version"])
    if version_key(target) < version_key(current):
        # Code older than the database it finds is not something any of these apps supports.
        raise UpdateRefused(f"{app} {current} -> {target} goes back to an older release: not an "
                            "update. Restore a backup taken before the upgrade (make restore) instead")
    if app != "nextcloud" or current == target:
        return [target_pin]
    have, want = major(current), major(target)
    steps = []
    for between in range(have + 1, want):
        candidates = [p for p in intermediate_pins if major(p["version"]) == between]
        if not candidates:
            raise UpdateRefused(
                f"nextcloud {current} -> {target} skips major {between}: Nextcloud upgrades one "
                f"major at a time. Add a pin of Nextcloud {between} (version, url, sha256) to data "
                "`nextcloud_upgrade_path`, or pin an intermediate release first.")
        steps.append(max(candidates, key=lambda p: version_key(p["version"])))
    return steps + [target_pin]


def version_key(version: str) -> tuple[int, ...]:
    """"34.0.4" -> (34, 0, 4): the numbers of a version, for ordering."""
    return tuple(int(number) for number in re.findall(r"\d+", str(version)))


@dataclass
class Update:
    """One app instance whose deployed release differs from its pin."""

    host: str
    slug: str
    app: str
    domain: str
    deployed: dict[str, Any]  # its release marker
    target_pin: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    refused: str = ""

    @property
    def key(self) -> str:
        return instance_key(self.slug, self.app)

    @property
    def standin(self) -> bool:
        return bool(self.deployed.get("standin"))


def ordered(updates: list[Update], canary: str | None) -> list[Update]:
    """The canary association's updates first, then the others, in a stable order."""
    return sorted(updates, key=lambda u: (u.slug != canary, u.slug, u.host, u.app))


def held_pins(markers: dict[str, dict[str, Any]], moving: str, moving_pin: dict[str, Any]) -> dict:
    """Per-instance pins for a deploy of one host: every instance held on the release its
    marker records, except `moving`, which gets `moving_pin`."""
    pins = {key: marker["pin"] for key, marker in markers.items() if "pin" in marker and "/" in key}
    pins[moving] = moving_pin
    return pins


def markers_by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Release markers read from a host, by "<slug>/<app>" (Mattermost: "<instance>/mattermost")."""
    found = {}
    for record in records:
        if "tenant" in record:
            found[instance_key(record["tenant"], record["app"])] = record
        elif "instance" in record:
            found[instance_key(record["instance"], "mattermost")] = record
    return found


def pins_fingerprint(releases: dict[str, Any], upgrade_path: list[dict[str, Any]]) -> str:
    """sha256 of the pins an update applies (data `releases` and `nextcloud_upgrade_path`),
    independent of key order and comments: the nightly CI job compares it with the one its
    last successful update run stored, and runs `make update` only when it differs."""
    import hashlib

    canonical = json.dumps({"releases": releases, "nextcloud_upgrade_path": upgrade_path},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def plan_text(updates: list[Update], canary: str | None, notes: list[str]) -> str:
    if not updates:
        lines = ["update: every app instance runs its pinned release; nothing to do."]
    else:
        lines = [f"update plan ({len(updates)} instance(s), in this order; canary: {canary or 'none'}):"]
        for n, u in enumerate(updates, 1):
            steps = u.steps or [u.target_pin]  # refused: no steps, say where it was asked to go
            path = " -> ".join([u.deployed.get("version", "?")] + [str(p["version"]) for p in steps])
            flags = [f for f, on in (("canary", u.slug == canary), ("stand-in", u.standin)) if on]
            lines.append(f"  {n}. {u.key} on {u.host} ({u.domain}): {path}"
                         + (f"  [{', '.join(flags)}]" if flags else ""))
            if u.refused:
                lines.append(f"     REFUSED: {u.refused}")
        lines.append("  each: fresh backup (must succeed) -> maintenance on -> deploy --limit host "
                     "-> maintenance off -> health check -> rollback to the backup on failure")
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


# -- On the hosts ---------------------------------------------------------------------------------


def read_markers(pyinfra_host) -> dict[str, dict[str, Any]]:
    result = run_remote_strict(pyinfra_host, f"for f in {RELEASE_MARKER_DIR}/*.json; do "
                                             "[ -e \"$f\" ] && cat \"$f\"; done; true\n")
    if result.returncode != 0:
        raise StepFailed(f"cannot read the release markers of {pyinfra_host.name}: {result.stderr.strip()}")
    return markers_by_key(parse_json_stream(result.stdout))


def fresh_backup(pyinfra_host, update: Update) -> str:
    """Run the instance's backup job now; its new status file's snapshot id, or StepFailed."""
    job = backup_job(update.slug, update.app)
    unit, status = backup_unit(job), backup_status_file(job)
    result = run_remote_strict(pyinfra_host, f"""
before=$(stat -c %Y {status} 2>/dev/null || echo 0)
sleep 1  # a status file written in the same second as `before` would look old
if ! systemctl start {unit}.service; then
    journalctl -u {unit}.service -n 15 --no-pager >&2 || true
    exit 1
fi
after=$(stat -c %Y {status} 2>/dev/null || echo 0)
[ "$after" -gt "$before" ] || {{ echo "status file {status} not renewed" >&2; exit 1; }}
cat {status}
""")
    if result.returncode != 0:
        last_lines = result.stderr.strip().splitlines()[-6:]
        raise StepFailed(f"backup job {unit} failed:\n    " + "\n    ".join(last_lines))
    return json.loads(result.stdout)["snapshot_id"]


def occ(update: Update, version: str, *args: str) -> str:
    """An occ command as the instance's user, with the code of `version`."""
    from assotic.needs import AppInstance
    from roles.nextcloud import occ_prefix

    artifact = artifact_from_pin("nextcloud", {**update.deployed["pin"], "version": version})
    return f"{occ_prefix(AppInstance(update.slug, 'nextcloud'), artifact)} {shlex.join(args)}"


def maintenance(pyinfra_host, update: Update, on: bool, version: str) -> None:
    if update.app != "nextcloud" or update.standin:
        say(f"  maintenance mode: skipped ({update.key} is a stand-in, which has none)"
            if update.standin else f"  maintenance mode: {update.app} has none; skipped")
        return
    result = run_remote_strict(pyinfra_host,
                               occ(update, version, "maintenance:mode", "--on" if on else "--off") + "\n")
    if result.returncode != 0:
        raise StepFailed(f"occ maintenance:mode failed: {result.stderr.strip()[-400:]}")
    say(f"  maintenance mode {'on' if on else 'off'}")


def deploy_host(inventory_path: Path, host: str, pins: dict[str, Any], log: Path) -> None:
    """`pyinfra --limit host` with these per-instance pins; its output goes to `log`."""
    from assotic.artifacts import INSTANCE_PINS_ENV

    handle, pins_file = tempfile.mkstemp(prefix="assotic-pins-", suffix=".json")  # 0600
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(pins, out)
        # Loading the inventory here set check-only mode (no download, no secret written):
        # the deploy itself must run as `make deploy` does.
        env = {k: v for k, v in os.environ.items()
               if k not in ("ASSOTIC_CHECK_ONLY", "ASSOTIC_INVENTORY_LABEL")}
        env[INSTANCE_PINS_ENV] = pins_file
        pyinfra = str(Path(sys.executable).with_name("pyinfra"))
        with log.open("a") as out:
            result = subprocess.run([pyinfra, "-y", "--limit", host, str(inventory_path), "deploy.py"],
                                    cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    finally:
        os.unlink(pins_file)
    if result.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise StepFailed(f"deploy of {host} failed (exit {result.returncode}, log {log}):\n    "
                         + "\n    ".join(tail))


def health(pyinfra_host, update: Update, version: str) -> list[str]:
    """What is wrong with the instance now (empty: healthy)."""
    problems = []
    domain = shlex.quote(update.domain)
    result = run_remote_strict(pyinfra_host, f"curl -sk --max-time 15 -o /dev/null -w '%{{http_code}}' "
                                             f"--resolve {domain}:443:127.0.0.1 https://{domain}/\n")
    code = result.stdout.strip()
    if not code.isdigit() or int(code) == 0 or int(code) >= HTTP_HEALTHY_BELOW:
        problems.append(f"https://{update.domain}/ answered {code or 'nothing'} {result.stderr.strip()}")
    markers = read_markers(pyinfra_host)
    now = markers.get(update.key, {})
    if now.get("version") != version:
        problems.append(f"release marker says {now.get('version')!r}, expected {version!r}")
    if update.app == "nextcloud" and not now.get("standin", update.standin):
        result = run_remote_strict(pyinfra_host, occ(update, version, "status", "--output=json") + "\n")
        try:
            status = json.loads(result.stdout)
        except json.JSONDecodeError:
            status = {}
        if not (status.get("installed") and not status.get("maintenance")
                and not status.get("needsDbUpgrade")):
            problems.append(f"occ status: {result.stdout.strip() or result.stderr.strip()}")
    return problems


def say(text: str) -> None:
    print(text, flush=True)


# -- One instance ---------------------------------------------------------------------------------


# How one instance's update ended.
UPDATED, NOT_STARTED, ROLLED_BACK, ROLLBACK_FAILED = ("updated", "not started (no fresh backup)",
                                                      "rolled back", "ROLLBACK FAILED")


def update_one(inventory, inventory_path: Path, update: Update, log: Path,
               drill_fail_health: str | None) -> str:
    """Backup, maintenance, upgrade, health check, rollback on failure; how it ended."""
    h = inventory.get_host(update.host)
    previous = update.deployed
    say(f"== {update.key} on {update.host}: {previous.get('version')} -> {update.target_pin['version']}")
    started = time.monotonic()
    try:
        snapshot = fresh_backup(h, update)
    except StepFailed as err:
        say(f"  backup FAILED, update not started: {err}")
        return NOT_STARTED
    say(f"  fresh backup: snapshot {snapshot[:8]}")
    version = previous["version"]
    try:
        maintenance(h, update, True, version)
        for pin in update.steps:
            say(f"  upgrade: deploy --limit {update.host} with {update.key} on {pin['version']}")
            deploy_host(inventory_path, update.host, held_pins(read_markers(h), update.key, pin), log)
            version = str(pin["version"])
        maintenance(h, update, False, version)
        problems = health(h, update, version)
        if drill_fail_health == update.key:
            problems.append(f"drill: health check of {update.key} forced to fail (--drill-fail-health)")
        if problems:
            raise StepFailed("health check failed: " + "; ".join(problems))
        say(f"  health check ok; {update.key} runs {version} ({time.monotonic() - started:.0f} s)")
        return UPDATED
    except StepFailed as err:
        say(f"  {err}")
        return ROLLED_BACK if rollback(inventory, inventory_path, update, snapshot, log) else ROLLBACK_FAILED


def rollback(inventory, inventory_path: Path, update: Update, snapshot: str, log: Path) -> bool:
    """Pre-update snapshot, then the previous pin's code; True when healthy again."""
    h = inventory.get_host(update.host)
    say(f"  ROLLBACK of {update.key}: restore snapshot {snapshot[:8]}, then {update.deployed['version']}'s code")
    restore = subprocess.run([sys.executable, "-m", "commands", "restore", "--inventory", str(inventory_path),
                              "--tenant", update.slug, "--app", update.app, "--snapshot", snapshot,
                              "--force"], cwd=REPO_ROOT, capture_output=True, text=True)
    with log.open("a") as out:
        out.write(restore.stdout + restore.stderr)
    if restore.returncode != 0:
        say(f"  rollback: restore FAILED (log {log}); {update.key} needs a sysadmin now")
        return False
    say("  rollback: snapshot restored")
    try:
        deploy_host(inventory_path, update.host,
                    held_pins(read_markers(h), update.key, update.deployed["pin"]), log)
        maintenance(h, update, False, update.deployed["version"])
        problems = health(h, update, update.deployed["version"])
    except StepFailed as err:
        problems = [str(err)]
    if problems:
        say(f"  rollback: {update.key} still unhealthy: {'; '.join(problems)}; it needs a sysadmin now")
        return False
    say(f"  rollback done: {update.key} runs {update.deployed['version']} again, health check ok")
    return True


# -- Plan -----------------------------------------------------------------------------------------


def pin_of(artifact) -> dict[str, Any]:
    return {"version": artifact.version, "url": artifact.url, "sha256": artifact.sha256}


def find_updates(inventory, tenant_filter: str | None) -> tuple[list[Update], list[str]]:
    """Instances whose release marker differs from their pin in data `releases`.

    The pins are read directly (assotic.artifacts.pinned_artifact), not resolved: a new pin
    need not be downloaded yet to be planned (the deploy downloads and checks it).
    """
    from assotic.artifacts import pinned_artifact
    from commands.remote import host_plan as plan_of

    updates, notes = [], []
    for h in inventory:
        if "web" not in h.groups:
            continue
        # The deploy's plan says which instances run here; "standin": a new pin need not be
        # available on this machine to be planned.
        host_plan = plan_of(h, missing_release="standin")
        debian, markers = host_plan.debian, read_markers(h)
        intermediate = list(h.data.get("nextcloud_upgrade_path") or [])

        def plan(slug: str, app: str, domain: str, steps_from: list, h=h, debian=debian,
                 markers=markers) -> None:
            """Add the update of one instance when its marker differs from its pin (called in
            this iteration: the defaults bind this host's values)."""
            pin = pin_of(pinned_artifact(h.data.releases, app, debian))
            key = instance_key(slug, app)
            deployed = markers.get(key)
            if deployed is None:
                notes.append(f"{key} on {h.name}: no release marker (deployed before markers "
                             "existed?); deploy once to record it")
                return
            if deployed["version"] == pin["version"]:
                return
            update = Update(h.name, slug, app, domain, deployed, pin)
            try:
                update.steps = upgrade_steps(app, deployed["version"], pin, steps_from)
            except UpdateRefused as err:
                update.refused = str(err)
            updates.append(update)

        for app in host_plan.apps:
            instance, tenant = app.instance, app.tenant
            if instance is not None:
                # One instance serves the associations with a team on it: it is updated when
                # the filter names it or one of them.
                if not tenant_filter or tenant_filter in (instance.name, *instance.tenants):
                    plan(instance.name, app.app, instance.domain, [])
            elif not tenant_filter or tenant.slug == tenant_filter:
                plan(tenant.slug, app.app, tenant.apps.enabled()[app.app].domain, intermediate)
    return updates, notes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--tenant", help="only this association's instances")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--drill-fail-health", metavar="SLUG/APP",
                        help="rehearsal: report this instance's health check failed, to run the rollback")
    parser.add_argument("--pins-fingerprint", action="store_true",
                        help="print the sha256 of the pins (for CI) and stop; touches no host")


def add_fingerprint_arguments(parser: argparse.ArgumentParser) -> None:
    """`python -m commands pins-fingerprint`: the same as `update --pins-fingerprint`."""
    parser.add_argument("--inventory", required=True)


def run_pins_fingerprint(args: argparse.Namespace) -> int:
    from assotic.artifacts import apply_override

    inventory = load_inventory_like_pyinfra(Path(args.inventory).resolve(), REPO_ROOT)
    data = next(iter(inventory)).data  # `releases` is group data of all hosts
    releases = {app: apply_override(app, pins) for app, pins in (data.get("releases") or {}).items()}
    print(pins_fingerprint(releases, list(data.get("nextcloud_upgrade_path") or [])))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.pins_fingerprint:
        return run_pins_fingerprint(args)
    inventory_path = Path(args.inventory).resolve()
    inventory = load_inventory_like_pyinfra(inventory_path, REPO_ROOT)
    canary = next((h.data.get("update_canary") for h in inventory if h.data.get("update_canary")), None)
    slugs = {t.slug for h in inventory for t in (h.data.get("tenants") or [])}
    if canary and canary not in slugs:
        say(f"update: data `update_canary` names {canary!r}, which is no association "
            f"(known: {', '.join(sorted(slugs))}); nothing was started.")
        return 2
    try:
        updates, notes = find_updates(inventory, args.tenant)
    except StepFailed as err:
        say(f"update: {err}")
        return 1
    updates = ordered(updates, canary)
    say(plan_text(updates, canary, notes))
    refused = [u for u in updates if u.refused]
    if refused:
        say(f"update: {len(refused)} instance(s) refused (above); nothing was started.")
        return 2
    if args.dry_run or not updates:
        return 0
    return run_updates(inventory, inventory_path, updates, canary, args.drill_fail_health)


def run_updates(inventory, inventory_path: Path, updates: list[Update], canary: str | None,
                drill_fail_health: str | None) -> int:
    """Update the planned instances in turn, stopping after a failed canary; 1 if any failed."""
    # The deploy and restore output (no secret: the lab tests check that) for whoever debugs.
    log = Path(tempfile.gettempdir()) / f"assotic-update-{time.strftime('%Y%m%d-%H%M%S')}.log"
    os.close(os.open(log, os.O_CREAT | os.O_WRONLY, 0o600))
    outcomes: dict[str, str] = {}
    for update in updates:
        outcomes[update.key] = update_one(inventory, inventory_path, update, log, drill_fail_health)
        if outcomes[update.key] != UPDATED and update.slug == canary:
            say(f"update: the canary {canary} failed; no other association was touched.")
            break
    failed = [f"{key} ({outcome})" for key, outcome in outcomes.items() if outcome != UPDATED]
    say(f"update: {len(outcomes) - len(failed)} of {len(updates)} updated"
        + (f"; failed: {', '.join(failed)}" if failed else "") + f"; log {log}")
    return 1 if failed else 0
