"""roles/php: Debian's PHP-FPM, one pool per app instance.

Debian's PHP only: 8.2 on Debian 12 (bookworm), 8.4 on Debian 13 (trixie), chosen
from the host's release. One php-fpm master serves every pool; each pool runs as
the instance's own user with `pm = ondemand`, so an idle association has no worker
process at all. open_basedir, upload/session/temp directories and the error log
are the instance's own, set with php_admin_value (the application cannot change them).

Each pool runs as its instance's Unix user, in its folders: roles/accounts makes them,
before this role runs. See docs/backends.md.

Knobs (host data, defaults in DEFAULTS) are documented in docs/backends.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from assotic.templating import template_environment
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FindFiles
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, systemd

from assotic.needs import PhpPool
from roles.remote_files import put_text, reload_after

__all__ = [
    "DEFAULTS",
    "PHP_VERSIONS",
    "PhpSettings",
    "php",
    "php_version",
    "pool_admin_values",
    "pool_config",
    "pool_file",
]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "php"

# Debian release (major) -> the PHP its archive ships. Nothing else is reachable.
PHP_VERSIONS = {12: "8.2", 13: "8.4"}

DEFAULTS = {
    "php_opcache_memory_consumption": 256,  # MiB, shared by all pools of the master
    "php_opcache_interned_strings_buffer": 32,  # MiB; Nextcloud warns when 90 % full
    "php_opcache_max_accelerated_files": 20000,
    "php_opcache_revalidate_freq": 60,  # s; Nextcloud's admin manual suggests 60
    "php_apcu_shm_size": "32M",
    "php_memory_limit": "512M",  # per worker; Nextcloud requires 512M
    "php_upload_max_filesize": "512M",
    "php_max_requests": 500,  # recycle a worker after this many requests (leaks)
    "php_extra_packages": [],  # e.g. ["php8.2-gd"]; app roles usually bring their own
}

WEB_SERVER_GROUP = "www-data"  # owns the pools' sockets: nginx reaches PHP through them only
POOL_PREFIX = "assotic-"


@dataclass(frozen=True)
class PhpSettings:
    """What the PHP templates see as `php`."""

    version: str
    opcache_memory_consumption: int = DEFAULTS["php_opcache_memory_consumption"]
    opcache_interned_strings_buffer: int = DEFAULTS["php_opcache_interned_strings_buffer"]
    opcache_max_accelerated_files: int = DEFAULTS["php_opcache_max_accelerated_files"]
    opcache_revalidate_freq: int = DEFAULTS["php_opcache_revalidate_freq"]
    # PHP's default 0x7FFEBFFF without pass 1 (0x1) and SCCP (0x80): see assotic-fpm.ini.j2.
    opcache_optimization_level: str = "0x7FFEBF7E"
    apcu_shm_size: str = DEFAULTS["php_apcu_shm_size"]
    memory_limit: str = DEFAULTS["php_memory_limit"]
    upload_max_filesize: str = DEFAULTS["php_upload_max_filesize"]
    max_requests: int = DEFAULTS["php_max_requests"]
    extra_packages: tuple[str, ...] = ()
    web_server_group: str = WEB_SERVER_GROUP

    @classmethod
    def from_data(cls, data, version: str) -> PhpSettings:
        def get(name):
            value = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
            return DEFAULTS[name] if value is None else value

        return cls(
            version=version,
            opcache_memory_consumption=int(get("php_opcache_memory_consumption")),
            opcache_interned_strings_buffer=int(get("php_opcache_interned_strings_buffer")),
            opcache_max_accelerated_files=int(get("php_opcache_max_accelerated_files")),
            opcache_revalidate_freq=int(get("php_opcache_revalidate_freq")),
            apcu_shm_size=str(get("php_apcu_shm_size")),
            memory_limit=str(get("php_memory_limit")),
            upload_max_filesize=str(get("php_upload_max_filesize")),
            max_requests=int(get("php_max_requests")),
            extra_packages=tuple(get("php_extra_packages")),
        )

    @property
    def fpm_service(self) -> str:
        return f"php{self.version}-fpm"

    @property
    def fpm_binary(self) -> str:
        return f"/usr/sbin/php-fpm{self.version}"

    @property
    def pool_dir(self) -> str:
        return f"/etc/php/{self.version}/fpm/pool.d"

    @property
    def fpm_ini(self) -> str:
        return f"/etc/php/{self.version}/fpm/conf.d/90-assotic.ini"

    @property
    def cli_ini(self) -> str:
        return f"/etc/php/{self.version}/cli/conf.d/90-assotic.ini"

    def packages(self, extensions: Iterable[str] = ()) -> list[str]:
        """Debian packages for PHP itself and for the extensions the pools ask for."""
        v = self.version
        # php-apcu is built for the release's default PHP; libfcgi-bin (cgi-fcgi) lets
        # sysadmins and the verify checks ask a pool directly through its socket.
        return [f"php{v}-fpm", f"php{v}-cli", f"php{v}-opcache", "php-apcu", "libfcgi-bin",
                *(extension_package(e, v) for e in sorted(set(extensions))),
                *self.extra_packages]


FPM_SERVICE_DROP_IN = """\
# Managed by assotic (roles/php): what PHP creates is readable by its instance only.
#
# Sandbox, partial on purpose (docs/units.md): this drop-in is on Debian's php-fpm unit, whose
# root master starts the workers of every association's pool as that pool's user. Only what
# no PHP application ever needs is taken away: kernel settings, devices, /home, /usr, realtime,
# namespaces, other ABIs. Not set, and why: ProtectSystem=strict or full (Debian's
# ExecStartPost helper runs update-alternatives, which writes /etc and /var/lib/dpkg);
# NoNewPrivileges= (PHP's mail() runs sendmail, which is setgid under Postfix);
# CapabilityBoundingSet= and SystemCallFilter= (what the master needs follows the pools'
# options: users, rlimits, priorities, the slow log's ptrace); MemoryDenyWriteExecute= (the
# PCRE and opcache JITs).
[Service]
UMask=0027
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ProtectSystem=yes
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
"""

# Extensions Debian builds outside PHP's source, packaged for the default PHP only.
UNVERSIONED_EXTENSIONS = {"apcu", "igbinary", "imagick", "redis"}


def extension_package(extension: str, version: str) -> str:
    """'pgsql' -> 'php8.2-pgsql'; 'redis' -> 'php-redis'."""
    if extension in UNVERSIONED_EXTENSIONS:
        return f"php-{extension}"
    return f"php{version}-{extension}"


_environment = template_environment(TEMPLATES_DIR)


# -- pure functions ---------------------------------------------------------------------


def php_version(debian_major: int) -> str:
    """The PHP of a Debian release: 12 -> 8.2, 13 -> 8.4."""
    try:
        return PHP_VERSIONS[int(debian_major)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"roles/php: Debian {debian_major!r} is not supported "
                         f"(known: {', '.join(map(str, PHP_VERSIONS))})") from None


def pool_file(pool: PhpPool, settings: PhpSettings) -> str:
    return f"{settings.pool_dir}/{POOL_PREFIX}{pool.instance.user}.conf"


def pool_admin_values(pool: PhpPool, settings: PhpSettings) -> list[tuple[str, str]]:
    """php_admin_value lines of a pool: ours first, the pool's own (admin_values) override them."""
    instance = pool.instance
    for path in pool.open_basedir:
        if ":" in path or not path.startswith("/"):
            raise ValueError(f"pool {instance.user}: open_basedir entry {path!r} must be an absolute path without ':'")
    values = {
        "open_basedir": ":".join(pool.open_basedir),
        "upload_tmp_dir": instance.tmp_dir,
        "sys_temp_dir": instance.tmp_dir,
        "session.save_path": instance.session_dir,
        "error_log": f"{instance.log_dir}/php-error.log",
        "log_errors": "On",
        "display_errors": "Off",
        "memory_limit": settings.memory_limit,
        "upload_max_filesize": settings.upload_max_filesize,
        "post_max_size": settings.upload_max_filesize,
        # Only this instance's code may reset or inspect the shared OPcache.
        "opcache.restrict_api": pool.code_dirs[0] if pool.code_dirs else instance.home,
        # APCu memory is the master's and shared by every pool: off unless the pool
        # asks for it with admin_values (("apc.enabled", "1")). See docs/backends.md.
        "apc.enabled": "0",
    }
    for name, value in pool.admin_values:
        values[name] = value
    for name, value in values.items():
        if "\n" in f"{name}{value}" or "]" in name:
            raise ValueError(f"pool {instance.user}: bad php_admin_value {name!r}")
    return list(values.items())


def pool_config(pool: PhpPool, settings: PhpSettings) -> str:
    """/etc/php/<v>/fpm/pool.d/assotic-<user>.conf."""
    if pool.max_children < 1 or pool.idle_timeout_s < 1:
        raise ValueError(f"pool {pool.instance.user}: max_children and idle_timeout_s must be >= 1")
    for name, value in pool.env:
        if not name.replace("_", "").isalnum() or "\n" in value:
            raise ValueError(f"pool {pool.instance.user}: bad env entry {name!r}")
    return _environment.get_template("pool.conf.j2").render(
        pool=pool, php=settings, admin_values=pool_admin_values(pool, settings))


def fpm_ini(settings: PhpSettings) -> str:
    return _environment.get_template("assotic-fpm.ini.j2").render(php=settings)


def cli_ini(settings: PhpSettings) -> str:
    return _environment.get_template("assotic-cli.ini.j2").render(php=settings)


# -- operations ---------------------------------------------------------------------------


@deploy("PHP-FPM", data_defaults=DEFAULTS)
def php(pools: list[PhpPool]) -> None:
    if not pools:
        host.noop("no PHP pool on this host: PHP is not installed")
        return
    names = [p.instance.user for p in pools]
    if len(names) != len(set(names)):
        raise ValueError(f"roles/php: duplicate pools in {names}")
    distribution = host.get_fact(LinuxDistribution)
    settings = PhpSettings.from_data(host.data, php_version(distribution["major"]))

    extensions = [e for pool in pools for e in pool.extensions]
    apt.packages(name=f"Install PHP {settings.version} with the extensions the apps need",
                 packages=settings.packages(extensions), cache_time=86400, update=True)

    changed = [
        put_text(settings.fpm_ini, fpm_ini(settings)),
        put_text(settings.cli_ini, cli_ini(settings)),
        # Debian's own pool runs as www-data with workers always up: not ours.
        files.file(name="Remove Debian's www pool", path=f"{settings.pool_dir}/www.conf", present=False),
    ]
    wanted = set()
    for pool in pools:
        path = pool_file(pool, settings)
        wanted.add(path)
        changed.append(put_text(path, pool_config(pool, settings)))
    # Pools of instances that left this host (only our assotic-*.conf files).
    for stale in sorted(set(host.get_fact(FindFiles, path=settings.pool_dir, maxdepth=1,
                                          fname=f"{POOL_PREFIX}*.conf") or []) - wanted):
        changed.append(files.file(name=f"Remove pool {stale}", path=stale, present=False))

    # Files PHP creates (logs, SQLite databases, uploads) must not be world-readable:
    # php-fpm's workers inherit the master's umask, 022 by default.
    umask_drop_in_path = f"/etc/systemd/system/{settings.fpm_service}.service.d/assotic.conf"
    umask_drop_in = put_text(umask_drop_in_path, FPM_SERVICE_DROP_IN)
    # A shell restart: systemd.service(restarted=True) skips a service that was not running
    # when facts were read, as on the first run (the package starts it with umask 022).
    # A reload keeps the old umask: only a restart applies it. Both run again on the next
    # deploy when one was killed after the files changed (roles/remote_files.reload_after).
    # The same drop-in carries the sandbox, which a restart applies too.
    reload_after(f"Restart {settings.fpm_service} with its new umask and sandbox",
                 f"systemctl daemon-reload && systemctl restart {settings.fpm_service}",
                 [umask_drop_in], stamp=f"{settings.fpm_service}-umask", covers=[umask_drop_in_path])
    systemd.service(name=f"Enable and start {settings.fpm_service}", service=settings.fpm_service,
                    running=True, enabled=True)
    # Test the whole configuration first: a bad pool never takes the others down.
    # reload = graceful: php-fpm re-executes itself and re-reads php.ini and every pool.
    reload_after(f"Check and reload {settings.fpm_service}",
                 f"{settings.fpm_binary} -t && systemctl reload-or-restart {settings.fpm_service}",
                 changed, stamp=settings.fpm_service,
                 covers=[settings.pool_dir, settings.fpm_ini, settings.cli_ini])
