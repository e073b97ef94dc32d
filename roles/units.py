"""The systemd units the roles write or change on a host, read from its plan, and how exposed
each kind may be (docs/units.md).

The roles write whole units (assotic-redis@, assotic-mattermost@, the timers' and the backups'
services, the lab's pebble) and drop-ins on Debian's units (php-fpm, coturn). The verify check
tests/verify/test_unit_sandbox.py asks `systemd-analyze security` about each one on the host,
and tests/unit/test_unit_sandbox.py about each rendered file, against MAX_EXPOSURE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The highest overall exposure `systemd-analyze security` may give each kind of unit (its
# scale: 0.0 most sandboxed ... 10.0 not at all; it calls above 9.0 UNSAFE). One place for the
# verify check and the unit tests. Each limit is the figure measured on the lab, the same on
# Debian 12 (systemd 252) and 13 (systemd 257), online and offline (docs/units.md): any
# loosening of a sandbox fails the checks. Lower a limit when a unit gets safer; never raise
# one without saying why in docs/units.md.
# What is left, besides what no unit here takes (PrivateUsers=, RootDirectory=, ProcSubset=,
# IPAddressDeny=, docs/units.md):
# - redis: nothing more (its own user, no network at all);
# - mattermost, timer, pebble: IP sockets (they serve or call over the network); pebble runs
#   as root (without any capability), the PHP timers may map memory writable and executable;
# - backup: root, with the capabilities to read everybody's files and to run steps as their
#   users (runuser), so no ~@privileged filter, and IP sockets to reach the repository;
# - coturn: Debian's unit with our drop-in: a capability to bind port 443, netlink;
# - php-fpm: Debian's unit with our partial drop-in; its root master keeps its capabilities
#   and has no syscall filter (roles/php FPM_SERVICE_DROP_IN says why).
MAX_EXPOSURE: dict[str, float] = {
    "redis": 0.6,
    "mattermost": 1.2,
    "timer": 1.3,
    "pebble": 1.6,
    "coturn": 1.5,
    "backup": 2.6,
    "php-fpm": 5.9,
}


@dataclass(frozen=True)
class ProjectUnit:
    name: str  # as systemctl knows it: "assotic-redis@nextcloud_ulap.service"
    kind: str  # a key of MAX_EXPOSURE


def project_units(plan: Any, data: Any) -> list[ProjectUnit]:
    """Every unit the deploy of this plan (roles.plan.HostPlan) writes or changes, in deploy
    order; `data`: the host's data, for the knobs that decide on the backups and on pebble."""
    from roles import backup, mattermost, php, redis
    from roles.tls.model import PEBBLE_UNIT, TlsSettings

    units = []
    if plan.needs.redis:
        units += [ProjectUnit(redis.unit_name(r), "redis") for r in plan.needs.redis]
    if plan.needs.pools:
        settings = php.PhpSettings.from_data(data, php.php_version(plan.debian))
        units.append(ProjectUnit(f"{settings.fpm_service}.service", "php-fpm"))
    if plan.needs.vhosts and TlsSettings.from_data(data).acme_lab_server:
        units.append(ProjectUnit(PEBBLE_UNIT, "pebble"))
    units += [ProjectUnit(mattermost.unit_name(a.instance), "mattermost")
              for a in plan.apps if a.app == mattermost.APP]
    units += [ProjectUnit(f"{t.unit}.service", "timer") for t in plan.needs.timers]
    if "turn" in plan.groups:
        units.append(ProjectUnit("coturn.service", "coturn"))
    if plan.backed_up and backup.backup_context(plan.host, data) is not None:
        jobs = backup.jobs_for(list(plan.backups), plan.host, data, plan.host_backup_paths)
        units += [ProjectUnit(f"{u.name}.service", "backup") for u in backup.units_for(jobs, plan.host, data)]
    return units
