"""roles/backup: nightly restic snapshots of every association, off-site, that restore.

Pure part (no host): the app roles hand a `BackupSpec` per instance (assotic.needs); this
role turns each into a `Job` (a script from templates/backup/job.sh.j2, a systemd
service and a timer), adds one job for the host itself (/etc and the deploy's own
state) and a weekly `restic check`. The `backup` deploy function installs restic, the
root-only secrets (repository password, SSH key, env file), the scripts and the units,
and initialises the repository once. Details and every knob: docs/backup.md.

One repository per backed-up host, on its backup target (SFTP, restricted account, see
roles/backup_target) or on S3. Snapshots are tagged `tenant:<slug>`, `app:<app>` and
`host:<host>`, so one association is restored alone (commands/restore.py).
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assotic.templating import template_environment

from assotic.layout import (BACKUP_STAGING_DIR, BACKUP_STATE_DIR, BACKUP_STATUS_DIR, HOST_BACKUP_JOB,
                            LOCAL_SMTP_HOST, LOCAL_SMTP_PORT, backup_job,
                            backup_unit, host_secret)
from assotic.needs import BackupSpec
from assotic.tenants import Retention

MARKER = "# assotic-backup: managed by roles/backup"
ETC_DIR = "/etc/assotic/backup"
CACHE_DIR = "/var/cache/assotic-backup/restic"
LOCK_FILE = "/run/lock/assotic-backup.lock"  # one job at a time on a host (lib.sh take_lock)
LIB_DIR = "/usr/local/lib/assotic-backup"
LIB_PATH = f"{LIB_DIR}/lib.sh"
UNIT_DIR = "/etc/systemd/system"
SSH_ALIAS = "assotic-backup-target"
REPO_PATH = "/repo"  # inside the account's chroot on the backup target
CHECK_JOB = "check"
PACKAGES = ["restic", "sqlite3", "jq", "openssh-client", "curl"]
# The deploy's own state on a host, saved by the host job besides /etc.
HOST_PATHS = ("/etc", "/var/lib/assotic", "/usr/local/lib/assotic-backup")

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "backup"

# Host-data knobs and their defaults (docs/backup.md).
DEFAULTS: dict[str, Any] = {
    # Where the repository lives: {"host": <inventory name of a backup target>, "address":
    # <IP or name to connect to>, "port": 22, "known_hosts": [<"ssh-ed25519 AAAA..."> ...]},
    # or {"repository": "s3:https://...", "s3_access_key_secret": <name>,
    #     "s3_secret_key_secret": <name>}. None: no backups (the deploy says so loudly).
    "backup_target": None,
    "backup_window_start": 1,  # nightly jobs start between 01:00 and 01:00 + window hours
    "backup_window_hours": 4,
    "backup_check_subsets": 12,  # the weekly check reads 1/12 of the data: all of it in 12 weeks
    "backup_host_retention": {"daily": 7, "weekly": 4, "monthly": 6},
    "backup_push_url": None,  # healthchecks-style: GET <url> on success, POST <url>/fail on failure
    # E-mail alerts, through the host's Postfix (roles/mail); default: data mail_admin.
    "backup_alert_email": None,
    "backup_lock_wait_s": 7200,
}


@dataclass(frozen=True)
class Job:
    """One backup job of a host: what templates/backup/job.sh.j2 sees as `job`."""

    name: str  # <slug>-<app>, or "host"
    unit: str  # systemd unit name, without suffix
    description: str
    tags: tuple[str, ...]  # the first two select this job's snapshots (forget, restore)
    paths: tuple[str, ...]
    excludes: tuple[str, ...]
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    on_calendar: str
    user: str = "root"
    postgres_db: str | None = None
    sqlite: tuple[str, ...] = ()
    pre_hooks: tuple[str, ...] = ()
    post_hooks: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    hook_writable_paths: tuple[str, ...] = ()

    @property
    def script(self) -> str:
        return f"{LIB_DIR}/{self.name}.sh"

    @property
    def app_writable_paths(self) -> tuple[str, ...]:
        """The app folders this job writes besides roles/backup's own: its hooks', and the
        folder of each live SQLite file (even a read-only copy may touch the -shm beside it)."""
        sqlite_dirs = tuple(posixpath.dirname(live) for live in self.sqlite)
        return tuple(dict.fromkeys(self.hook_writable_paths + sqlite_dirs))


@dataclass(frozen=True)
class Target:
    """Where a host's repository is, for templates (`backup.target`)."""

    address: str
    port: int
    user: str
    known_hosts: tuple[str, ...]


@dataclass(frozen=True)
class BackupContext:
    """What every templates/backup/*.j2 sees as `backup`."""

    host: str
    repository: str
    sftp: bool
    target: Target | None
    extra_env: tuple[tuple[str, str], ...]
    push_url: str | None
    mail_to: str | None
    mail_from: str | None
    check_subsets: int
    lock_wait_s: int
    marker: str = MARKER
    etc_dir: str = ETC_DIR
    state_dir: str = BACKUP_STATE_DIR  # templates/backup: $STATE/status, $STATE/staging
    cache_dir: str = CACHE_DIR
    lib_path: str = LIB_PATH
    ssh_alias: str = SSH_ALIAS
    lock_file: str = LOCK_FILE
    smtp_url: str = f"smtp://{LOCAL_SMTP_HOST}:{LOCAL_SMTP_PORT}"  # the host's Postfix (roles/mail)

    @property
    def writable_paths(self) -> tuple[str, ...]:
        """What every job writes: its state (status, staging), restic's cache, the lock's folder."""
        return (self.state_dir, self.cache_dir, posixpath.dirname(self.lock_file))

    @property
    def known_hosts_path(self) -> str:
        return f"{self.etc_dir}/known_hosts"


class BackupDataError(ValueError):
    """Bad backup data in group_data or the inventory: says which key and what was expected."""


# -- pure functions ---------------------------------------------------------------------------


def knob(data: Any, name: str) -> Any:
    value = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
    return DEFAULTS[name] if value is None else value


def target_account(host_name: str) -> str:
    """The SFTP account of a backed-up host on its backup target: restic-<host>."""
    return "restic-" + host_name.replace(".", "-")


def stable_time(window_start: int, window_hours: int, *parts: str) -> tuple[int, int]:
    """(hour, minute) in the night window, from a hash of the names: spread, never moving."""
    digest = int(hashlib.sha256("/".join(parts).encode()).hexdigest(), 16)
    minutes = digest % (60 * window_hours)
    return (window_start + minutes // 60) % 24, minutes % 60


def nightly(data: Any, host_name: str, job_name: str) -> str:
    hour, minute = stable_time(int(knob(data, "backup_window_start")),
                               int(knob(data, "backup_window_hours")), host_name, job_name)
    return f"*-*-* {hour:02d}:{minute:02d}:00"


def weekly_check(data: Any, host_name: str) -> str:
    """Sundays, after the night window, at a minute derived from the host name."""
    hour, minute = stable_time(int(knob(data, "backup_window_start"))
                               + int(knob(data, "backup_window_hours")), 1, host_name, CHECK_JOB)
    return f"Sun *-*-* {hour:02d}:{minute:02d}:00"


def sqlite_excludes(live: str) -> tuple[str, ...]:
    return (live, f"{live}-wal", f"{live}-shm", f"{live}-journal")


def tenant_job(spec: BackupSpec, retention: Retention, host_name: str, data: Any) -> Job:
    inst = spec.instance
    name = backup_job(inst.slug, inst.app)
    excludes = tuple(spec.excludes) + tuple(e for live in spec.sqlite for e in sqlite_excludes(live))
    return Job(
        name=name,
        unit=backup_unit(name),
        description=f"assotic backup of {inst.app} for {inst.slug}",
        tags=(f"tenant:{inst.slug}", f"app:{inst.app}", f"host:{host_name}"),
        paths=tuple(spec.paths),
        excludes=excludes,
        keep_daily=retention.daily,
        keep_weekly=retention.weekly,
        keep_monthly=retention.monthly,
        on_calendar=nightly(data, host_name, name),
        user=inst.user,
        postgres_db=spec.postgres_db,
        sqlite=tuple(spec.sqlite),
        pre_hooks=tuple(spec.pre_hooks),
        post_hooks=tuple(spec.post_hooks),
        notices=tuple(spec.notices),
        hook_writable_paths=tuple(spec.hook_writable_paths),
    )


def host_job(host_name: str, data: Any, extra_paths: tuple[str, ...] = ()) -> Job:
    """The host's own job: /etc and the deploy's state, plus what a group role adds
    (a BBB host: FreeSWITCH's configuration, recordings if data asks)."""
    retention = knob(data, "backup_host_retention")
    return Job(
        name=HOST_BACKUP_JOB,
        unit=backup_unit(HOST_BACKUP_JOB),
        description=f"assotic backup of {host_name} itself (/etc, the deploy's state)",
        tags=("kind:host", "app:host", f"host:{host_name}"),
        paths=HOST_PATHS + tuple(extra_paths),
        excludes=(BACKUP_STAGING_DIR, f"{BACKUP_STATE_DIR}/restore*"),
        keep_daily=int(retention["daily"]),
        keep_weekly=int(retention["weekly"]),
        keep_monthly=int(retention["monthly"]),
        on_calendar=nightly(data, host_name, HOST_BACKUP_JOB),
    )


def jobs_for(backups: list, host_name: str, data: Any, extra_host_paths: tuple[str, ...] = ()) -> list[Job]:
    """Every nightly job of a host: one per planned backup (roles.plan.PlannedBackup: a spec
    and its retention), in need order, then the host itself."""
    jobs = [tenant_job(b.spec, b.retention, host_name, data) for b in backups]
    names = [j.name for j in jobs]
    if len(names) != len(set(names)):
        raise ValueError(f"roles/backup: duplicate backup jobs {names}")
    return [*jobs, host_job(host_name, data, extra_host_paths)]


def _data(data: Any, name: str) -> Any:
    """A knob another role owns (roles/mail's mail_admin, mail_host_from), None when unset."""
    return data.get(name) if isinstance(data, dict) else getattr(data, name, None)


def backup_context(host_name: str, data: Any, secrets: Any = None) -> BackupContext | None:
    """The repository settings of a host, or None when data names no backup target."""
    if _data(data, "backup_smtp") is not None:
        raise BackupDataError("backup_smtp is gone: alerts go through the host's Postfix, which "
                              "relays with data mail_relay (docs/mail.md); remove backup_smtp")
    target = knob(data, "backup_target")
    if not target:
        return None
    if not isinstance(target, dict):
        raise BackupDataError(f"backup_target: a mapping (docs/backup.md); got {target!r}")
    extra_env: list[tuple[str, str]] = []
    if "repository" in target:  # S3 (or any other restic URL with credentials in data)
        repository, sftp, tgt = str(target["repository"]).format(host=host_name), False, None
        if secrets is not None:
            for key, env in (("s3_access_key_secret", "AWS_ACCESS_KEY_ID"),
                             ("s3_secret_key_secret", "AWS_SECRET_ACCESS_KEY")):
                if target.get(key):
                    extra_env.append((env, secrets.get(target[key])))
    else:
        missing = [k for k in ("address",) if not target.get(k)]
        if missing:
            raise BackupDataError(f"backup_target: needs {', '.join(missing)}; got {target!r}")
        tgt = Target(address=str(target["address"]), port=int(target.get("port", 22)),
                     user=target_account(host_name),
                     known_hosts=tuple(target.get("known_hosts") or ()))
        repository, sftp = f"sftp:{SSH_ALIAS}:{REPO_PATH}", True
    return BackupContext(
        host=host_name, repository=repository, sftp=sftp, target=tgt,
        extra_env=tuple(extra_env), push_url=knob(data, "backup_push_url"),
        mail_to=knob(data, "backup_alert_email") or _data(data, "mail_admin"),
        # The host's own sender (roles/mail); Postfix rewrites root@<host> to it anyway.
        mail_from=_data(data, "mail_host_from") or _data(data, "mail_admin") or f"root@{host_name}",
        check_subsets=int(knob(data, "backup_check_subsets")),
        lock_wait_s=int(knob(data, "backup_lock_wait_s")),
    )


_environment = template_environment(TEMPLATES_DIR)
_environment.filters["basename"] = lambda path: Path(path).name
_environment.filters["q"] = shlex.quote


def render(template: str, **context: Any) -> str:
    return _environment.get_template(template).render(**context)


def known_hosts_text(context: BackupContext) -> str:
    """known_hosts lines for the target: '[address]:port key' (plain address on port 22)."""
    t = context.target
    where = t.address if t.port == 22 else f"[{t.address}]:{t.port}"
    return "".join(f"{where} {' '.join(k.split()[:2])}\n" for k in t.known_hosts)


def rendered_files(context: BackupContext, jobs: list[Job]) -> dict[str, tuple[str, str]]:
    """path -> (content, mode) of every non-secret file the role writes."""
    out = {
        LIB_PATH: (render("lib.sh.j2", backup=context), "0644"),
        f"{LIB_DIR}/init.sh": (render("init.sh.j2", backup=context), "0755"),
        f"{LIB_DIR}/{CHECK_JOB}.sh": (render("check.sh.j2", backup=context), "0755"),
    }
    for job in jobs:
        out[job.script] = (render("job.sh.j2", backup=context, job=job), "0755")
    if context.sftp:
        out[f"{ETC_DIR}/ssh_config"] = (render("ssh_config.j2", backup=context), "0644")
        if context.target.known_hosts:
            out[context.known_hosts_path] = (known_hosts_text(context), "0644")
    return out


@dataclass(frozen=True)
class Unit:
    name: str
    description: str
    script: str
    on_calendar: str
    app_writable_paths: tuple[str, ...] = ()  # besides BackupContext.writable_paths


def units_for(jobs: list[Job], host_name: str, data: Any) -> list[Unit]:
    units = [Unit(j.unit, j.description, j.script, j.on_calendar, j.app_writable_paths) for j in jobs]
    units.append(Unit("assotic-backup-check", f"assotic weekly check of {host_name}'s backups",
                      f"{LIB_DIR}/{CHECK_JOB}.sh", weekly_check(data, host_name)))
    return units


def unit_files(context: BackupContext, unit: Unit) -> tuple[str, str]:
    return (render("unit.service.j2", backup=context, unit=unit),
            render("unit.timer.j2", backup=context, unit=unit))


# -- deploy -----------------------------------------------------------------------------------


def backup(plan: Any) -> None:
    """Install and schedule this host's backup jobs (after the apps are deployed), from its
    plan (roles.plan.HostPlan): its backups with their retention, what group roles add to the
    host's own job, and the secrets store."""
    from pyinfra import host

    secrets = plan.secrets
    data = host.data  # the backup_* knobs (DEFAULTS)
    context = backup_context(host.name, data, secrets)
    _install_packages(context)
    if context is None:
        host.noop(f"!!! {host.name}: no backup_target in data: NOTHING on this host is backed up "
                  "(docs/backup.md)")
        return
    jobs = jobs_for(list(plan.backups), host.name, data, plan.host_backup_paths)
    _create_folders()
    _install_secrets(context, secrets, data)
    _install_scripts(context, jobs)
    _install_units(context, units_for(jobs, host.name, data))
    _initialise_repository(context)


def _install_packages(context: BackupContext | None) -> None:
    """restic and its tools (curl also sends the alert mails). Installed even without a backup
    target: any web host can be a restore target (commands/restore.py runs restic there),
    the drill's throw-away host included."""
    from pyinfra.operations import apt

    apt.packages(name="Install restic and the backup tools", packages=PACKAGES, cache_time=86400,
                 update=True)


def _create_folders() -> None:
    """Settings and secrets (root only), run state and status, the restore staging area,
    restic's cache, the scripts."""
    from pyinfra.operations import files

    for path, mode in ((ETC_DIR, "0700"), (BACKUP_STATE_DIR, "0755"), (BACKUP_STATUS_DIR, "0755"),
                       (BACKUP_STAGING_DIR, "0711"), (CACHE_DIR, "0700"), (LIB_DIR, "0755")):
        files.directory(name=f"Create {path}", path=path, user="root", group="root", mode=mode,
                        present=True)


def _put_secret(path: str, text: str) -> None:
    """A root-only file (0600): secrets go in files, never on a command line."""
    from io import StringIO

    from pyinfra.operations import files

    files.put(name=f"Install {path} (0600)", src=StringIO(text), dest=path, user="root",
              group="root", mode="0600")


def _install_secrets(context: BackupContext, secrets: Any, data: Any) -> None:
    """The repository's password and environment, and the SSH key of an SFTP target."""
    from pyinfra import host
    from pyinfra.operations import files

    from .sshkey import private_key_text

    _put_secret(f"{ETC_DIR}/restic.password", secrets.get(host_secret(host.name, "restic_password")) + "\n")
    _put_secret(f"{ETC_DIR}/restic.env", render("restic.env.j2", backup=context))
    if context.sftp:
        _put_secret(f"{ETC_DIR}/id_ed25519", private_key_text(
            secrets.get(host_secret(host.name, "backup_ssh_key")), f"assotic-backup@{host.name}"))
    # An msmtp configuration of earlier deploys held a relay password: alerts use Postfix now.
    files.file(name=f"Remove {ETC_DIR}/msmtprc (alerts go through Postfix)", path=f"{ETC_DIR}/msmtprc",
               present=False)


def _install_scripts(context: BackupContext, jobs: list[Job]) -> None:
    """The shared library, init and check scripts, one script per job, the SSH settings."""
    from roles.remote_files import put_text

    for path, (content, mode) in rendered_files(context, jobs).items():
        put_text(path, content, mode=mode)


def _install_units(context: BackupContext, units: list[Unit]) -> None:
    """Each job's service and timer (the weekly check's too), stale ones removed; systemd
    reloads after any change, even one a killed deploy left (reload_after); every timer is
    enabled and started."""
    from roles.prepared import enable_and_start
    from roles.remote_files import put_text, reload_after

    changed = []
    for unit in units:
        service_text, timer_text = unit_files(context, unit)
        changed.append(put_text(f"{UNIT_DIR}/{unit.name}.service", service_text))
        changed.append(put_text(f"{UNIT_DIR}/{unit.name}.timer", timer_text))
    changed += _remove_stale_units({u.name for u in units})
    reload_after("Reload systemd units (backup)", "systemctl daemon-reload", changed,
                 stamp="daemon-reload-backup",
                 covers=[f"{UNIT_DIR}/{u.name}.{suffix}" for u in units for suffix in ("service", "timer")])
    enable_and_start(f"{unit.name}.timer" for unit in units)


def _remove_stale_units(wanted: set[str]) -> list:
    """Stop and remove the units (and scripts) of jobs this host no longer has: an association
    or app that left. Only units with roles/backup's marker are considered. Returns the
    operations that removed unit files, for the reload."""
    from pyinfra import host
    from pyinfra.operations import files, systemd

    from .facts import ManagedBackupUnits

    changed = []
    for stale in [u for u in host.get_fact(ManagedBackupUnits) or [] if u not in wanted]:
        systemd.service(name=f"Stop and disable {stale}.timer", service=f"{stale}.timer",
                        running=False, enabled=False)
        for suffix in ("service", "timer"):
            changed.append(files.file(name=f"Remove {UNIT_DIR}/{stale}.{suffix}",
                                      path=f"{UNIT_DIR}/{stale}.{suffix}", present=False))
        files.file(name=f"Remove {LIB_DIR}/{stale.removeprefix('assotic-backup-')}.sh",
                   path=f"{LIB_DIR}/{stale.removeprefix('assotic-backup-')}.sh", present=False)
    return changed


def _initialise_repository(context: BackupContext) -> None:
    """Create the repository once. Read before the run: on a first deploy the repository
    cannot be reached yet, so the init step runs (and creates it only if it is really missing)."""
    from pyinfra import host
    from pyinfra.operations import server

    from .facts import ResticRepositoryReady

    if not host.get_fact(ResticRepositoryReady, lib=LIB_PATH):
        server.shell(name=f"Initialise the restic repository of {host.name} ({context.repository})",
                     commands=[f"{LIB_DIR}/init.sh"])
