"""roles/redis: one small redis-server per app instance, on a Unix socket only.

Why not one shared Redis for every association: its ACL key patterns cannot follow
Nextcloud's key prefixes (they depend on the Nextcloud version and instance id), and
ACLs cannot restrict which database index a client SELECTs, so a shared Redis would
not keep associations apart. One instance per app costs a few MB of RAM (measured in
docs/backends.md) and is isolated by Unix permissions on its socket.

Each instance is `assotic-redis@<user>.service` (a systemd template around Debian's
redis-server binary) running as the instance's user, listening on
/run/assotic-redis/<user>/redis.sock (0660, in a 0750 folder of that user), with
`port 0`, no persistence, a small maxmemory and an ACL user from the secrets store.
Debian's own redis-server.service (TCP 6379) is stopped and disabled.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assotic.templating import template_environment
from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import apt, files, server, systemd

from assotic.needs import SRV_ROOT, RedisInstance
from roles.prepared import not_yet_enabled_and_running
from roles.remote_files import put_text, reload_after

__all__ = ["DEFAULTS", "redis", "redis_config", "redis_unit", "unit_name", "config_path"]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "redis"
CONFIG_DIR = "/etc/assotic-redis"
UNIT_TEMPLATE = "/etc/systemd/system/assotic-redis@.service"
DEBIAN_UNIT = "/etc/systemd/system/redis-server.service"
# Debian's own instance's config, unused here: its unit is masked.
DEBIAN_CONFIG = "/etc/redis/redis.conf"
DEFAULTS = {
    # systemd's hard cap per instance, above Redis's own maxmemory (which counts data only).
    "redis_memory_max": "64M",
}
MAXMEMORY = re.compile(r"\d+(kb|mb|gb)?", re.I)
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

_environment = template_environment(TEMPLATES_DIR)


@dataclass(frozen=True)
class RedisSettings:
    memory_max: str = DEFAULTS["redis_memory_max"]
    config_dir: str = CONFIG_DIR
    srv_root: str = SRV_ROOT


class AssoticRedisUnits(FactBase[list]):
    """assotic-redis@<user>.service instances systemd knows of (enabled or loaded)."""

    def command(self) -> str:
        return ("{ ls /etc/systemd/system/multi-user.target.wants/ 2>/dev/null;"
                " systemctl list-units --all --plain --no-legend 'assotic-redis@*' 2>/dev/null"
                " | awk '{print $1}'; } | grep '^assotic-redis@.*\\.service$' | sort -u || true")

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


# -- pure functions ---------------------------------------------------------------------


def unit_name(instance: RedisInstance) -> str:
    return f"assotic-redis@{instance.instance.user}.service"


def config_path(instance: RedisInstance) -> str:
    return f"{CONFIG_DIR}/{instance.instance.user}.conf"


def redis_config(instance: RedisInstance, password: str) -> str:
    """/etc/assotic-redis/<user>.conf; the password appears only as its SHA-256."""
    user = instance.instance.user
    if not USER_NAME.fullmatch(user):
        raise ValueError(f"redis: bad instance user {user!r}")
    if not MAXMEMORY.fullmatch(instance.maxmemory):
        raise ValueError(f"redis {user}: maxmemory must look like 16mb, got {instance.maxmemory!r}")
    if not password:
        raise ValueError(f"redis {user}: empty password")
    return _environment.get_template("instance.conf.j2").render(
        instance=instance, password_sha256=hashlib.sha256(password.encode()).hexdigest())


def redis_unit(settings: RedisSettings) -> str:
    """/etc/systemd/system/assotic-redis@.service."""
    return _environment.get_template("assotic-redis@.service.j2").render(redis=settings)


# -- operations ---------------------------------------------------------------------------


@deploy("Redis", data_defaults=DEFAULTS)
def redis(instances: list[RedisInstance], platform_secrets: Any) -> None:
    """One Redis per instance that asks; `platform_secrets`: the store (HostPlan.secrets)."""
    wanted = {unit_name(i) for i in instances}
    if len(wanted) != len(instances):
        raise ValueError("roles/redis: two Redis instances for the same user")
    # Instances that left this host: stopped, disabled, config removed.
    for stale in sorted(set(host.get_fact(AssoticRedisUnits) or []) - wanted):
        user = stale.removeprefix("assotic-redis@").removesuffix(".service")
        systemd.service(name=f"Stop and disable {stale}", service=stale, running=False, enabled=False)
        files.file(name=f"Remove {CONFIG_DIR}/{user}.conf", path=f"{CONFIG_DIR}/{user}.conf", present=False)
    if not instances:
        host.noop("no Redis instance on this host")
        return
    settings = RedisSettings(memory_max=str(host.data.redis_memory_max))

    # Debian's shared instance (TCP 6379) is of no use here: masked before the package is
    # installed, so it never starts, not even once from the package's postinst.
    mask = files.link(name="Mask Debian's redis-server.service", path=DEBIAN_UNIT, target="/dev/null")
    # Also when a deploy was killed between the mask and the stop: it would still be running.
    debian_running = host.get_fact(SystemdStatus, services=["redis-server.service"]).get(
        "redis-server.service", False)
    server.shell(
        name="Stop Debian's redis-server.service",
        commands=["systemctl daemon-reload",
                  "systemctl stop redis-server.service",
                  "systemctl reset-failed redis-server.service 2>/dev/null || true"],
        _if=lambda: mask.did_change() or debian_running,
    )
    apt.packages(name="Install redis-server", packages=["redis-server"], cache_time=86400, update=True)
    # Its config is a trap: whoever unmasked redis-server.service would start a Redis with no
    # password on 127.0.0.1:6379, open to every association's PHP. Without the file that unit
    # cannot start. dpkg leaves a conffile the administrator deleted deleted, upgrades too.
    files.file(name=f"Remove Debian's unused {DEBIAN_CONFIG}", path=DEBIAN_CONFIG, present=False)

    files.directory(name=f"Create {CONFIG_DIR}", path=CONFIG_DIR, user="root", group="root", mode="0755")
    unit = put_text(UNIT_TEMPLATE, redis_unit(settings))
    # No daemon-reload of its own: each instance's restart below runs one first.

    to_start = not_yet_enabled_and_running(unit_name(i) for i in instances)
    for instance in instances:
        user = instance.instance.user
        password = platform_secrets.get(instance.password_secret)
        config = put_text(config_path(instance), redis_config(instance, password),
                          user="root", group=user, mode="0640")
        service = unit_name(instance)
        if service in to_start:
            systemd.service(name=f"Enable and start {service}", service=service, running=True, enabled=True)
        # A shell restart: systemd.service(restarted=True) skips units that were not
        # running when facts were gathered, as on the first run. Run again by the next
        # deploy if this one was killed after the files changed (reload_after).
        reload_after(f"Restart {service}", f"systemctl daemon-reload && systemctl restart {service}",
                     [config, unit], stamp=service, covers=[config_path(instance), UNIT_TEMPLATE])
