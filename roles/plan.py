"""The planner: one HostPlan per host, computed once, read by everything that acts on a host.

deploy.py, the testinfra checks (tests/verify/conftest.py) and the operator commands
(restore, update, backup status, drill) all call `plan_host` and read its answer; nothing
re-reads the tenant files behind it. It says which apps run on a host with which release,
what they need from the shared roles (vhosts, pools, databases, Redis, timers, backups), which
ports the host opens, how long each backup is kept, which release markers the deploy writes,
and where the secrets come from.

The app roles are registered in APP_ROLES, in deploy order, each behind the same small
interface (AppRole): `needs(subject, release)` says what it asks of the shared roles,
`deploy(app_plan, secrets)` deploys one instance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assotic.artifacts import Artifact, choose_release, instance_key
from assotic.layout import BACKED_UP_GROUPS, backup_job, release_marker_path
from assotic.mail import MailPlan, mail_plan, parse_relay
from assotic.mattermost import MattermostInstance
from assotic.needs import AppInstance, BackupSpec, HostNeeds
from assotic.tenants import Retention, Tenant
from roles import base, bbb, coturn, mattermost, nextcloud, paheko
from roles.nginx.render import web_openings


@dataclass(frozen=True)
class AppRole:
    """What deploy.py needs of an app role: the same two functions for every app.

    `per_instance`: planned once per Mattermost instance (one server for several
    associations), not once per association.
    """

    app: str
    needs: Callable[[Any, Artifact | None], HostNeeds]  # (tenant or instance, release)
    deploy: Callable[[AppPlan, Any], None]  # (this plan, the secrets store)
    per_instance: bool = False


# In deploy order (deploy.py reads them top to bottom through plan.apps).
APP_ROLES: tuple[AppRole, ...] = (
    AppRole("nextcloud", needs=nextcloud.nextcloud_needs, deploy=nextcloud.deploy),
    AppRole("paheko", needs=paheko.paheko_needs, deploy=paheko.deploy),
    AppRole("mattermost", needs=mattermost.mattermost_needs, deploy=mattermost.deploy, per_instance=True),
)


@dataclass(frozen=True)
class AppPlan:
    """One app instance on this host, and the release it runs (None: the stand-in)."""

    app: str
    tenant: Tenant | None  # None for a Mattermost plan: it is per instance, not per tenant
    release: Artifact | None
    release_path: Path | None
    instance: MattermostInstance | None = None  # for app "mattermost"
    pinned: Artifact | None = None  # the pin, also when the stand-in runs in its place
    tenants: tuple[Tenant, ...] = ()  # the associations it serves (Mattermost: one team each)

    @property
    def role(self) -> AppRole:
        return _role(self.app)

    @property
    def subject(self) -> Any:
        """What the role's needs() takes first: the tenant, or the Mattermost instance."""
        return self.tenant if self.instance is None else self.instance

    @property
    def marker(self) -> tuple[str, str] | None:
        """(path, JSON text) of this instance's release marker; None without a pin. No secret
        inside: root-owned, world-readable, like the code it describes."""
        if self.pinned is None:
            return None
        pin = {"version": self.pinned.version, "url": self.pinned.url, "sha256": self.pinned.sha256}
        if self.instance is not None:  # Mattermost: one server for several associations
            owner, record = self.instance.name, {"instance": self.instance.name}
        else:
            owner, record = self.tenant.slug, {"tenant": self.tenant.slug}
        record.update(app=self.app, version=self.pinned.version, standin=self.release is None, pin=pin)
        return release_marker_path(owner, self.app), json.dumps(record, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class PlannedBackup:
    """One instance's nightly backup: what to save, how long to keep it, its job name."""

    spec: BackupSpec
    retention: Retention

    @property
    def job(self) -> str:
        return backup_job(self.spec.instance.slug, self.spec.instance.app)


@dataclass(frozen=True)
class HostPlan:
    """Everything the roles and the operator commands need to know about one host."""

    host: str
    groups: tuple[str, ...]
    debian: str
    needs: HostNeeds
    apps: tuple[AppPlan, ...]
    firewall_openings: tuple[Any, ...]  # roles.base.Opening, rendered by the base role only
    backups: tuple[PlannedBackup, ...]  # one per instance, in need order
    host_backup_paths: tuple[str, ...]  # what a group role adds to the host's own backup job
    secrets: Any = field(repr=False, default=None)  # the store: the one way secrets reach roles
    # Where the host's Postfix relays mail: the platform's relay, the associations' own.
    mail: MailPlan = MailPlan(default=None, by_sender=(), admin=None)

    @property
    def backed_up(self) -> bool:
        return bool(set(self.groups) & set(BACKED_UP_GROUPS))

    @property
    def instances(self) -> list[AppInstance]:
        """Every instance that needs a Unix account and folders, in need order."""
        return instances_of(self.needs)

    @property
    def release_markers(self) -> list[tuple[str, str]]:
        return [app.marker for app in self.apps if app.marker is not None]

    def backups_of(self, owner: str, app: str | None = None) -> list[PlannedBackup]:
        """The backups of one association (or Mattermost instance), of one app or all."""
        return [b for b in self.backups if b.spec.instance.slug == owner
                and (app is None or b.spec.instance.app == app)]


def plan_host(host_name: str, host_data: Any, groups: Any, debian: str,
              missing_release: str | None = None) -> HostPlan:
    """The plan of one host. `debian` is its Debian major release ("12", "13"): Nextcloud's
    pin depends on it. A missing release becomes the stand-in or stops the deploy, as data
    `missing_release` says; `missing_release="standin"` plans without any release file
    (`make backup-status` on a machine with none: job names do not depend on releases).
    """
    groups = tuple(groups)
    policy = missing_release or host_data.missing_release
    needs, apps = HostNeeds(), []
    platform = host_data.platform
    for subject, role, tenants in _subjects(host_name, platform):
        key = instance_key(subject.name if role.per_instance else subject.slug, role.app)
        release, path = choose_release(host_data.release_set, role.app, debian, policy, host_name, key)
        needs.extend(role.needs(subject, release))
        pinned = host_data.release_set.get(role.app, debian, key)
        apps.append(AppPlan(role.app, None if role.per_instance else subject, release, path,
                            subject if role.per_instance else None, pinned and pinned.artifact,
                            tenants))
    return HostPlan(
        host=host_name, groups=groups, debian=str(debian), needs=needs, apps=tuple(apps),
        firewall_openings=tuple(firewall_openings(host_data, needs, groups)),
        backups=tuple(PlannedBackup(spec, retention_for(spec, platform.tenants)) for spec in needs.backups),
        host_backup_paths=bbb.backup_paths(host_data) if "bbb" in groups else (),
        secrets=platform.secrets,
        mail=mail_plan(parse_relay(getattr(host_data, "mail_relay", None)),
                       _served_tenants(apps), getattr(host_data, "mail_admin", None)),
    )


def _served_tenants(apps: list[AppPlan]) -> list[Tenant]:
    """Every association with an app on the host, once (a shared Mattermost serves several)."""
    served = {t.slug: t for app in apps for t in app.tenants}
    return list(served.values())


def _subjects(host_name: str, platform: Any):
    """(tenant or Mattermost instance, its role, the associations it serves), in deploy order:
    per-association apps tenant by tenant, then one Mattermost plan per instance on this host,
    whatever number of teams it serves (each runs its own release tree, so `make update`
    moves them one at a time: an instance is "<name>/mattermost" in per-instance pins)."""
    for tenant in platform.tenants_on(host_name):
        for role in APP_ROLES:
            if not role.per_instance and role.app in tenant.apps_on(host_name):
                yield tenant, role, (tenant,)
    for instance in platform.mattermost_on(host_name):
        served = tuple(t for t in platform.tenants if t.slug in instance.tenants)
        yield instance, _role("mattermost"), served


def _role(app: str) -> AppRole:
    return next(role for role in APP_ROLES if role.app == app)


def retention_for(spec: BackupSpec, tenants: list[Tenant]) -> Retention:
    """The instance's own tenant's retention; for a shared instance, the longest of each
    period among the associations on it (one of them may need a year of history)."""
    by_slug = {t.slug: t for t in tenants}
    if not spec.retention_of and spec.instance.slug in by_slug:
        return by_slug[spec.instance.slug].backup.retention
    kept = [by_slug[slug].backup.retention for slug in spec.retention_of] or [Retention()]
    return Retention(daily=max(r.daily for r in kept), weekly=max(r.weekly for r in kept),
                     monthly=max(r.monthly for r in kept))


def instances_of(needs: HostNeeds) -> list[AppInstance]:
    """Every instance that needs a Unix account and folders, in need order."""
    found = [p.instance for p in needs.pools] + [r.instance for r in needs.redis]
    found += [v.instance for v in needs.vhosts]
    return list(dict.fromkeys(found))


def firewall_openings(host_data, needs: HostNeeds | None = None, groups=()) -> list:
    """Every port a host must open, gathered from the roles that run on it.

    Each role declares its openings (a list of roles.base.Opening); only the base
    role renders the nftables ruleset from this list. `needs`: what the apps on the
    host ask of the shared roles (its vhosts open 80 and 443); `groups`: the host's
    inventory groups (a turn or bbb host opens their ports).
    """
    vhosts = needs.vhosts if needs is not None else []
    openings = [*base.ssh_openings(host_data), *web_openings(vhosts)]
    if "turn" in groups:
        openings += coturn.turn_openings(host_data)
    if "bbb" in groups:
        openings += bbb.bbb_openings(host_data)
    return openings
