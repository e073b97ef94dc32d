"""What an application needs from the shared platform, as plain data.

Application roles (roles/nextcloud, roles/paheko, ...) never configure nginx,
PHP-FPM, PostgreSQL or Redis themselves. They turn each tenant into lists of
needs (HostNeeds: vhosts, PHP pools, databases, Redis instances, timers, backups),
and the shared roles that own those services consume the lists (the DebOps
way). Everything here is pure data, built and tested without a host.
Firewall openings are not among them: roles/plan.py derives them (firewall_openings, kept in
each HostPlan) from the vhosts (80, 443), host data (SSH) and the host's groups (turn, bbb).

Naming, for one app of one association (an "instance"), e.g. paheko for ulap:
  Unix user, PHP pool, PostgreSQL role and database   paheko_ulap
  home (root:paheko_ulap 0750)                        /srv/assotic/ulap/paheko
  data, config, tmp, sessions, log                    <home>/data, <home>/config, ...
  PHP-FPM socket                                      /run/php/assotic-paheko_ulap.sock
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assotic.layout import tenant_secret

SRV_ROOT = "/srv/assotic"

# What an instance's processes may make of their files: nothing for other accounts. The units
# say it themselves (UMask= in templates/timers, roles/php's FPM drop-in, Mattermost's unit);
# a command run through runuser keeps its caller's umask instead (022 over SSH), so each sets it.
INSTANCE_UMASK = "0027"


def as_instance_user(user: str) -> tuple[str, ...]:
    """argv prefix running a command as `user` with INSTANCE_UMASK (then `exec`, no shell left).

    TMPDIR is dropped: over SSH, pam_tmpdir (roles/base) gives root's session its private
    /tmp/user/0, which runuser would pass on to a user who cannot write there."""
    return ("runuser", "-u", user, "--", "sh", "-c", f'umask {INSTANCE_UMASK} && unset TMPDIR && exec "$@"', "sh")


@dataclass(frozen=True)
class AppInstance:
    """One app of one association on one host."""

    slug: str
    app: str  # nextcloud, paheko, mattermost

    @property
    def user(self) -> str:
        """Unix user, PHP pool, PostgreSQL role and database name (max 31 characters)."""
        return f"{self.app}_{self.slug}"

    @property
    def home(self) -> str:
        return f"{SRV_ROOT}/{self.slug}/{self.app}"

    @property
    def data_dir(self) -> str:
        return f"{self.home}/data"

    @property
    def config_dir(self) -> str:
        return f"{self.home}/config"

    @property
    def tmp_dir(self) -> str:
        return f"{self.home}/tmp"

    @property
    def session_dir(self) -> str:
        return f"{self.home}/sessions"

    @property
    def log_dir(self) -> str:
        return f"{self.home}/log"

    @property
    def php_socket(self) -> str:
        return f"/run/php/assotic-{self.user}.sock"

    def secret(self, name: str) -> str:
        """Name of one of this instance's secrets in the store (see preflight.generated_secret_names)."""
        return tenant_secret(self.slug, self.app, name)


@dataclass(frozen=True)
class PhpPool:
    """A PHP-FPM pool of its own for one instance: pm = ondemand, so idle costs no worker."""

    instance: AppInstance
    code_dirs: tuple[str, ...]  # read-only code the pool may read (open_basedir), besides home
    env: tuple[tuple[str, str], ...] = ()  # env[NAME] = value (clear_env stays on)
    admin_values: tuple[tuple[str, str], ...] = ()  # php_admin_value[...] (cannot be overridden)
    max_children: int = 4
    idle_timeout_s: int = 10
    # PHP extensions the app needs, by their Debian name without the version ("pgsql",
    # "intl", "redis"): the php role installs them for the host's PHP.
    extensions: tuple[str, ...] = ()

    @property
    def open_basedir(self) -> tuple[str, ...]:
        return (self.instance.home, *self.code_dirs)


@dataclass(frozen=True)
class StaticAlias:
    """Static files served from a folder outside the web root, under a URL prefix, for the
    listed extensions only (everything else under the prefix goes to the app as usual)."""

    url_prefix: str  # "/custom_apps/"
    folder: str  # readable by nginx's workers (www-data)
    extensions: tuple[str, ...]  # ("css", "js", ...)


@dataclass(frozen=True)
class Vhost:
    """An nginx server block for one public domain, and the certificate it needs."""

    domain: str
    instance: AppInstance
    kind: str  # its location template: templates/nginx/locations-<kind>.conf.j2
    web_root: str | None = None  # document root, for PHP apps
    php_socket: str | None = None  # PHP-FPM socket, for PHP apps
    upstream: str | None = None  # "127.0.0.1:8065", for proxied apps (Mattermost)
    max_body_size: str = "512M"
    static_aliases: tuple[StaticAlias, ...] = ()


@dataclass(frozen=True)
class Database:
    """A PostgreSQL database owned by its own role, reachable by that role only."""

    name: str
    owner: str
    password_secret: str  # name in the secrets store


@dataclass(frozen=True)
class RedisInstance:
    """A Redis server of its own for one instance, on a Unix socket only its user can open."""

    instance: AppInstance
    password_secret: str
    maxmemory: str = "16mb"

    @property
    def socket(self) -> str:
        return f"/run/assotic-redis/{self.instance.user}/redis.sock"

    @property
    def acl_user(self) -> str:
        """The Redis ACL user clients log in as (Redis's default user is off)."""
        return self.instance.user


@dataclass(frozen=True)
class Timer:
    """A systemd service + timer running a command as an instance's user."""

    unit: str  # e.g. assotic-paheko-cron-ulap (.service and .timer)
    description: str
    user: str
    command: tuple[str, ...]  # argv, no shell
    on_calendar: str  # systemd OnCalendar=, e.g. "*:0/5" or "daily"
    working_directory: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    # Exit statuses besides 0 that mean "done" (systemd SuccessExitStatus=), e.g. Paheko's
    # `queue run` exits 2 while mail is still waiting: not a failed unit.
    success_exit_status: tuple[int, ...] = ()
    # The only folders the job may write (ReadWritePaths=: everything else is read-only to it,
    # templates/timers), e.g. the instance's home; each must exist when the job starts.
    writable_paths: tuple[str, ...] = ()
    # False: the job talks to nothing over the network (a local copy): PrivateNetwork=.
    network: bool = True


@dataclass(frozen=True)
class BackupSpec:
    """What roles/backup saves of one instance, and how to make it consistent (docs/backup.md).

    The job runs as root: `pre_hooks` quiesce writers, the database is dumped
    (`postgres_db`: pg_dump -Fc) or copied (`sqlite`: VACUUM INTO, never the live file),
    `paths` are saved by restic (minus `excludes`), then `post_hooks` run, on failure
    too (a trap). `after_restore` runs on the host a snapshot was restored onto.
    Hooks are shell lines, run as root; they name their own users (runuser ...).
    """

    instance: AppInstance
    paths: tuple[str, ...]
    excludes: tuple[str, ...] = ()
    postgres_db: str | None = None
    sqlite: tuple[str, ...] = ()  # live SQLite files, copied consistently and excluded as such
    pre_hooks: tuple[str, ...] = ()
    post_hooks: tuple[str, ...] = ()
    after_restore: tuple[str, ...] = ()
    # What the hooks write (e.g. Nextcloud's maintenance mode: config.php and its log), the only
    # app folders the job's sandbox leaves writable (roles/backup adds its own state and the
    # folders of the `sqlite` files, where SQLite keeps its -wal/-shm).
    hook_writable_paths: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()  # printed by the job, e.g. "stand-in: no maintenance mode"
    # An instance shared by several associations (a Mattermost server): its snapshots are
    # kept as long as the most demanding of them asks. Empty: its own tenant's retention.
    retention_of: tuple[str, ...] = ()


@dataclass
class HostNeeds:
    """Everything the apps on one host ask of the shared roles. Lists keep deploy order stable."""

    vhosts: list[Vhost] = field(default_factory=list)
    pools: list[PhpPool] = field(default_factory=list)
    databases: list[Database] = field(default_factory=list)
    redis: list[RedisInstance] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    backups: list[BackupSpec] = field(default_factory=list)

    def extend(self, other: HostNeeds) -> HostNeeds:
        self.vhosts += other.vhosts
        self.pools += other.pools
        self.databases += other.databases
        self.redis += other.redis
        self.timers += other.timers
        self.backups += other.backups
        return self

    @property
    def domains(self) -> list[str]:
        return [v.domain for v in self.vhosts]
