"""Restore one association from its restic snapshots (`make restore`).

    python -m commands restore --inventory inventory/<name>.py --tenant <slug>
        [--app nextcloud|paheko] [--snapshot latest|<id>] [--from <host>] [--to <host>]
        [--force] [--dry-run]

Reads the inventory exactly as pyinfra does (assotic.preflight.load_inventory_like_pyinfra),
then works over SSH with the inventory's own connection data: it sends a bash script on
stdin (never secrets on a command line) that writes the repository password and SSH key
of the host that made the backup into 0600 files of a root-only temporary folder, removed
on exit. First it shows the plan (snapshot, age, paths, target host, whether the tenant is
live there); it refuses to overwrite a live tenant without --force. Then, per app: files
(data, config), the database (pg_restore of the dump, or the VACUUM INTO copy of SQLite),
ownership mapped to the instance's user on the target host, and the app's after-restore
steps (Nextcloud: maintenance mode off, `occ maintenance:data-fingerprint`).

Restoring onto another host (--to) needs the app deployed there first (move it in the
tenant file and deploy): the restore fills an instance, it does not create one. The
snapshots are read from the repository of the host that made them: by default the host
the tenant file names for the app, or --from <host> once the tenant file names the new
host. Paths, owner and after-restore steps are those of the instance on the target host
(its own release, e.g. another Nextcloud build on another Debian release).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from assotic.layout import BACKUP_STATE_DIR, backup_staging_dir, host_secret
from assotic.needs import BackupSpec
from assotic.preflight import REPO_ROOT, load_inventory_like_pyinfra
from commands.remote import RemoteError, heredoc, host_plan, run_remote


class RestoreError(Exception):
    pass


@dataclass
class Plan:
    app: str
    spec: BackupSpec
    source: str
    to: str
    snapshot: dict
    live: bool
    instance_exists: bool


def repository_setup(source_name: str, source_data, secrets) -> str:
    """Bash: a temporary root-only folder $W with the source host's repository access."""
    from roles.backup import SSH_ALIAS, backup_context, known_hosts_text
    from roles.backup.sshkey import private_key_text

    context = backup_context(source_name, source_data, secrets)
    if context is None:
        raise RestoreError(f"{source_name} has no backup_target in its data: nothing to restore from")
    lines = ["set -euo pipefail", "umask 077", f"mkdir -p {BACKUP_STATE_DIR}",
             f"W=$(mktemp -d {BACKUP_STATE_DIR}/restore.XXXXXX)", "trap 'rm -rf \"$W\"' EXIT",
             heredoc("$W/password", secrets.get(host_secret(source_name, "restic_password")))]
    env = [f"RESTIC_REPOSITORY={shlex.quote(context.repository)}", "RESTIC_PASSWORD_FILE=$W/password",
           "RESTIC_CACHE_DIR=$W/cache"]
    lines += [f"export {assignment}" for assignment in env]
    for name, value in context.extra_env:  # S3 credentials: in the environment, not argv
        lines.append(heredoc(f"$W/env-{name}", value))
        lines.append(f'export {name}="$(cat "$W/env-{name}")"')
    if context.sftp:
        t = context.target
        lines.append(heredoc("$W/id_ed25519", private_key_text(
            secrets.get(host_secret(source_name, "backup_ssh_key")), f"assotic-backup@{source_name}")))
        lines.append(heredoc("$W/known_hosts", known_hosts_text(context) or "# none"))
        lines.append(heredoc("$W/ssh_config", "\n".join([
            f"Host {SSH_ALIAS}", f"    HostName {t.address}", f"    Port {t.port}", f"    User {t.user}",
            "    IdentityFile $W/id_ed25519", "    IdentitiesOnly yes", "    BatchMode yes",
            "    UserKnownHostsFile $W/known_hosts",
            f"    StrictHostKeyChecking {'yes' if t.known_hosts else 'accept-new'}"])))
        lines.append('sed -i "s|\\$W|$W|g" "$W/ssh_config"')
        lines.append(f'R=(restic -o "sftp.command=ssh -F $W/ssh_config {SSH_ALIAS} -s sftp")')
    else:
        lines.append("R=(restic)")
    return "\n".join(lines) + "\n"


def staging_dir(spec: BackupSpec) -> str:
    return backup_staging_dir(spec.instance.slug, spec.instance.app)


def plan_script(spec: BackupSpec, snapshot: str) -> str:
    inst = spec.instance
    tags = f"tenant:{inst.slug},app:{inst.app}"
    select = "." if snapshot == "latest" else f'map(select(.id == "{snapshot}" or .short_id == "{snapshot}"))'
    live_db = ""
    if spec.postgres_db:
        live_db = (f"tables=$(runuser -u postgres -- psql -XtAc \"select count(*) from pg_tables where "
                   f"schemaname='public'\" {spec.postgres_db} 2>/dev/null || echo 0)\n"
                   '[ "${tables:-0}" -gt 0 ] && live=true\n')
    return f"""
"${{R[@]}}" snapshots --json --tag {tags} > "$W/snapshots.json"
snap=$(jq -c '{select} | sort_by(.time) | last // empty' "$W/snapshots.json")
exists=false; live=false
if id -u {inst.user} >/dev/null 2>&1 && [ -d {inst.home} ]; then
    exists=true
    [ -n "$(find {inst.data_dir} -mindepth 1 -print -quit 2>/dev/null)" ] && live=true
    {live_db}
fi
jq -cn --argjson snap "${{snap:-null}}" --argjson exists $exists --argjson live $live \\
    '{{snapshot: $snap, instance_exists: $exists, live: $live}}'
"""


def restore_script(spec: BackupSpec, snapshot_id: str) -> str:
    inst, stage = spec.instance, staging_dir(spec)
    # --verify: restic reads every restored file back and compares it with the snapshot.
    lines = [f'"${{R[@]}}" restore {snapshot_id} --target "$W/tree" --verify >&2']
    for path in spec.paths:
        lines += [
            f'if [ -d "$W/tree{path}" ]; then',
            f"    mkdir -p {path}",
            f"    find {path} -mindepth 1 -delete",
            f'    cp -a "$W/tree{path}/." {path}/',
            # Everything in an instance's home belongs to root or to the instance: numeric
            # ids from another host are mapped to this host's instance user.
            f"    find {path} ! -uid 0 -exec chown -h {inst.user} {{}} +",
            f"    find {path} ! -gid 0 -exec chgrp -h {inst.user} {{}} +",
            "fi",
        ]
    for live in spec.sqlite:
        name = Path(live).name
        lines += [
            f'if [ -e "$W/tree{stage}/sqlite/{name}" ]; then',
            f"    rm -f {live} {live}-wal {live}-shm {live}-journal",
            f'    install -m 0640 -o {inst.user} -g {inst.user} "$W/tree{stage}/sqlite/{name}" {live}',
            # What the snapshot held, for checks after the restore (the drill compares).
            f"    echo \"expect:sqlite_tables=$(sqlite3 {live} \"select count(*) from sqlite_master "
            f"where type='table'\")\"",
            "else",
            "    echo expect:sqlite_missing=1",
            "fi",
        ]
    if spec.postgres_db:
        db, dump = spec.postgres_db, f'"$W/tree{stage}/postgres-{spec.postgres_db}.dump"'
        lines += [
            f"runuser -u postgres -- psql -XqAt -v ON_ERROR_STOP=1 -d {db} -c "
            f"'DROP SCHEMA IF EXISTS public CASCADE' -c 'CREATE SCHEMA public AUTHORIZATION \"{inst.user}\"' >&2",
            f"runuser -u postgres -- pg_restore --no-owner --no-privileges --role={inst.user} "
            f"--exit-on-error -d {db} < {dump} >&2",
            f"echo \"expect:pg_tables=$(pg_restore -l {dump} | grep -cE '^[0-9]+; [0-9]+ [0-9]+ TABLE public ' "
            f"|| true)\"",
        ]
    lines += [f"{hook} >&2" for hook in spec.after_restore]
    lines.append('echo restored')
    return "\n".join(lines) + "\n"


def expectations(output: str) -> dict[str, int]:
    """`expect:<name>=<number>` lines of a restore script: what the snapshot held."""
    found = {}
    for line in output.splitlines():
        name, sep, value = line.removeprefix("expect:").partition("=")
        if line.startswith("expect:") and sep and value.strip().isdigit():
            found[name] = int(value)
    return found


def source_and_target(app_host: str, source: str | None, to: str | None) -> tuple[str, str]:
    """(host whose repository holds the snapshots, host to restore onto) for one app.

    `app_host` is the host the tenant file names for the app. Without --from the backups
    are that host's; without --to the restore goes back onto the source host.
    """
    source_host = source or app_host
    return source_host, to or source_host


def pick_spec(app: str, slug: str, *specs_by_preference: list[BackupSpec]) -> BackupSpec | None:
    """The instance's spec from the first host plan that has it.

    Callers pass the target host's specs first: they have the paths, owner and after-restore
    steps of the instance that the restore fills (e.g. the Nextcloud build of the target's
    Debian release). When the tenant file does not put the app on the target, another host's
    spec is used: the plan then says whether an instance exists on the target at all.
    """
    for specs in specs_by_preference:
        matches = [s for s in specs if s.instance.slug == slug and s.instance.app == app]
        if matches:
            return matches[0]
    return None


def specs_for(tenant, apps: list[str], inventory, source: str | None = None,
              to: str | None = None) -> dict[str, tuple[str, str, BackupSpec]]:
    """app -> (source host, target host, backup spec of the instance to fill)."""
    cache: dict[str, list[BackupSpec]] = {}

    def backups_on(name: str) -> list[BackupSpec]:
        if name not in cache:
            cache[name] = [b.spec for b in host_plan_of(inventory, name).backups]
        return cache[name]

    found: dict[str, tuple[str, str, BackupSpec]] = {}
    for app in apps:
        app_host = tenant.apps.enabled()[app].host
        source_name, to_name = source_and_target(app_host, source, to)
        spec = pick_spec(app, tenant.slug, *(backups_on(h) for h in dict.fromkeys((to_name, app_host))))
        if spec:
            found[app] = (source_name, to_name, spec)
    return found


def shared_instance_specs(instance, inventory) -> dict[str, tuple[str, BackupSpec]]:
    """{"mattermost": (its host, its backup spec)} for a shared Mattermost instance."""
    found = host_plan_of(inventory, instance.host).backups_of(instance.name, "mattermost")
    return {"mattermost": (instance.host, found[0].spec)} if found else {}


def host_plan_of(inventory, name: str):
    """The deploy's plan of one inventory host, named in the tenant file or on the command line."""
    h = inventory.get_host(name)
    if h is None:
        raise RestoreError(f"no host {name!r} in the inventory")
    return host_plan(h)


def snapshot_age_s(snapshot_time: str) -> float:
    """Seconds since a restic snapshot time ('2026-11-30T06:12:34.123456789+01:00' or ...Z)."""
    import re
    from datetime import datetime, timezone

    text = re.sub(r"\.\d+", "", snapshot_time).replace("Z", "+00:00")
    return (datetime.now(timezone.utc) - datetime.fromisoformat(text)).total_seconds()


def age(snapshot_time: str) -> str:
    seconds = snapshot_age_s(snapshot_time)
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


@dataclass
class RestoreHosts:
    """Where one restore reads and writes: the inventory's hosts, with `target` (an object
    with .name and pyinfra-style SSH .data) in place of the host --to names, if given."""

    inventory: object
    inventory_file: str
    secrets: object
    target: object = None

    def onto(self, to_name: str):
        """(name, host) the restore writes to."""
        if self.target is not None:
            return self.target.name, self.target
        to_host = self.inventory.get_host(to_name)
        if to_host is None:
            raise RestoreError(f"no host {to_name!r} in {self.inventory_file}")
        return to_name, to_host

    def repository_setup(self, source_name: str) -> str:
        return repository_setup(source_name, self.inventory.get_host(source_name).data, self.secrets)


def specs_to_restore(platform, inventory, slug: str, app: str | None, source: str | None,
                     to: str | None) -> dict[str, tuple[str, str, BackupSpec]]:
    """app -> (source host, target host, backup spec) of what `slug` names: an association
    (its backed-up apps, or only `app`), or a shared Mattermost instance."""
    tenants = {t.slug: t for t in platform.tenants}
    # A Mattermost server shared by several associations is backed up (and restored) as one.
    shared = {i.name: i for i in platform.mattermost if i.declared and i.name not in tenants}
    if slug in shared:
        if app not in (None, "mattermost"):
            raise RestoreError(f"{slug} is a shared Mattermost instance: only APP=mattermost")
        specs = {name: (source or host, to or source or host, spec) for name, (host, spec)
                 in shared_instance_specs(shared[slug], inventory).items()}
    elif slug in tenants:
        tenant = tenants[slug]
        specs = specs_for(tenant, [app] if app else list(tenant.apps.enabled()), inventory, source, to)
    else:
        raise RestoreError(f"no tenant or shared Mattermost instance {slug!r} "
                           f"(known: {', '.join(sorted([*tenants, *shared]))})")
    if app and app not in specs:
        raise RestoreError(f"{slug} has no backed-up app {app!r} (backed up: {', '.join(specs) or 'none'})")
    return specs


def no_snapshot_problem(slug: str, app: str, snapshot: str, source: str) -> str:
    return (f"{slug}/{app}: no snapshot {snapshot!r} tagged tenant:{slug},app:{app} in "
            f"the repository of {source}; if {slug} moved, name the host that made "
            "the backups with --from (FROM=)")


def plan_restores(hosts: RestoreHosts, specs: dict[str, tuple[str, str, BackupSpec]], slug: str,
                  app: str | None, snapshot: str) -> tuple[list[Plan], list[str]]:
    """(the plan of each app whose snapshot was found, why the others have none).

    Lists the snapshots from the target host, with the source host's repository access."""
    plans: list[Plan] = []
    unbacked: list[str] = []
    for name, (from_name, to_name, spec) in specs.items():
        to_name, to_host = hosts.onto(to_name)
        result = run_remote(to_host, hosts.repository_setup(from_name) + plan_script(spec, snapshot))
        if result.returncode != 0:
            raise RestoreError(f"{name}: could not list snapshots from {to_name}:\n{result.stderr.strip()}")
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        if answer["snapshot"]:
            plans.append(Plan(name, spec, from_name, to_name, answer["snapshot"], answer["live"],
                              answer["instance_exists"]))
            continue
        problem = no_snapshot_problem(slug, name, snapshot, from_name)
        if app:  # asked for by name: nothing else to do
            raise RestoreError(problem)
        # A whole association: an app never backed up yet (just added) must not keep the
        # others from coming back; the plan says so, and `make backup-status` flags it.
        unbacked.append(problem)
    if not plans:
        raise RestoreError("nothing to restore:\n  " + "\n  ".join(unbacked))
    return plans, unbacked


def snapshot_time_text(snapshot_time: str) -> str:
    """A restic time to the second, with its offset: '2026-11-30T06:12:34+01:00', '...Z'."""
    return f"{snapshot_time[:19]}{snapshot_time[-6:] if snapshot_time[-6] in '+-' else 'Z'}"


def plan_lines(slug: str, inventory_file: str, plans: list[Plan], unbacked: list[str]) -> list[str]:
    """The restore plan as printed before anything is restored."""
    lines = [f"restore plan for {slug} ({inventory_file}):"]
    lines += [f"  - NOT RESTORED, {problem}" for problem in unbacked]
    for p in plans:
        snap = p.snapshot
        state = ("LIVE: its current data will be REPLACED" if p.live else
                 "exists, empty" if p.instance_exists else "NOT DEPLOYED there")
        lines.append(f"  - {p.app}: snapshot {snap['short_id']} of {snapshot_time_text(snap['time'])} "
                     f"(age {age(snap['time'])}) made on {p.source} -> {p.to} [{state}]")
        lines.append(f"      files: {', '.join(p.spec.paths)}")
        if p.spec.postgres_db:
            lines.append(f"      database: PostgreSQL {p.spec.postgres_db} (dropped and restored from the dump)")
        lines += [f"      database: SQLite {live} (replaced by the snapshot's VACUUM INTO copy)"
                  for live in p.spec.sqlite]
        lines += [f"      then: {hook.split(' -- ')[-1][:100]}" for hook in p.spec.after_restore]
    return lines


def refusals(slug: str, plans: list[Plan], force: bool) -> list[str]:
    """Why the plan must not be carried out: an instance not deployed, or live without force."""
    problems = [f"{p.app}: the instance is not deployed on {p.to}; deploy {slug} there first"
                for p in plans if not p.instance_exists]
    if not force:
        problems += [f"{p.app}: {slug} is live on {p.to}; run again with FORCE=1 (--force) to replace it"
                     for p in plans if p.live]
    return problems


def restore_one(hosts: RestoreHosts, p: Plan, out) -> dict:
    """Restore one app's snapshot; what was restored, how long it took, what the snapshot held."""
    start = time.monotonic()
    _, to_host = hosts.onto(p.to)
    result = run_remote(to_host, hosts.repository_setup(p.source) + restore_script(p.spec, p.snapshot["id"]))
    seconds = time.monotonic() - start
    if result.returncode != 0 or "restored" not in result.stdout:
        raise RestoreError(f"{p.app}: restore on {p.to} failed (exit {result.returncode}):\n"
                           f"{result.stderr.strip()[-3000:]}")
    print(f"  {p.app}: restored snapshot {p.snapshot['short_id']} onto {p.to} in {seconds:.1f}s", file=out)
    return {"app": p.app, "snapshot": p.snapshot["id"], "snapshot_time": p.snapshot["time"],
            "to": p.to, "seconds": round(seconds, 1), "expected": expectations(result.stdout)}


def restore(inventory_file: str, slug: str, app: str | None, snapshot: str, to: str | None,
            force: bool, dry_run: bool, out=sys.stdout, source: str | None = None,
            target=None, inventory=None) -> list[dict]:
    """Restore; `target` (an object with .name and pyinfra-style SSH .data) replaces the
    inventory host --to names: the drill restores onto a throw-away host of no inventory."""
    inventory = inventory or load_inventory_like_pyinfra(inventory_file, REPO_ROOT)
    platform = next(iter(inventory)).data.platform
    hosts = RestoreHosts(inventory, inventory_file, platform.secrets, target)
    specs = specs_to_restore(platform, inventory, slug, app, source, to)
    plans, unbacked = plan_restores(hosts, specs, slug, app, snapshot)
    for line in plan_lines(slug, inventory_file, plans, unbacked):
        print(line, file=out)
    problems = refusals(slug, plans, force)
    if problems:
        raise RestoreError("refusing to restore:\n  " + "\n  ".join(problems))
    if dry_run:
        print("dry run: nothing restored", file=out)
        return []
    return [restore_one(hosts, p, out) for p in plans]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", default="inventory/lab.py")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--app")
    parser.add_argument("--snapshot", default="latest")
    parser.add_argument("--from", dest="source",
                        help="host whose backups to restore (default: the tenant file's host of each app)")
    parser.add_argument("--to", help="host to restore onto (default: the source host)")
    parser.add_argument("--force", action="store_true", help="replace a live tenant")
    parser.add_argument("--dry-run", action="store_true", help="show the plan, restore nothing")


def run(args: argparse.Namespace) -> int:
    try:
        restore(args.inventory, args.tenant, args.app, args.snapshot, args.to, args.force, args.dry_run,
                source=args.source)
    except (RestoreError, RemoteError) as error:
        print(f"restore: {error}", file=sys.stderr)
        return 1
    return 0
