"""The roles, one concern each. deploy.py runs them in order.

What crosses roles lives here, so that deploy.py and the testinfra checks
compute it the same way: which apps run on a host with which release, what
they need from the shared roles, and which ports the host opens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assotic.artifacts import Artifact, choose_release, instance_key
from assotic.needs import AppInstance, HostNeeds
from assotic.tenants import Tenant


@dataclass(frozen=True)
class AppPlan:
    """One app of one association on this host, and the release it runs (None: the stand-in)."""

    app: str
    tenant: Tenant | None  # None for a Mattermost plan: it is per instance, not per tenant
    release: Artifact | None
    release_path: Path | None
    instance: Any = None  # assotic.mattermost.MattermostInstance, for app "mattermost"
    pinned: Artifact | None = None  # the pin, also when the stand-in runs in its place

    @property
    def subject(self) -> Any:
        """What the app role's deploy function takes first: the tenant, or the instance."""
        return self.tenant if self.instance is None else self.instance


# Release markers: one small JSON file per app instance saying which pin it runs, so that
# `make update` (commands/update.py) compares what is deployed with the pins in the repository.
RELEASE_MARKER_DIR = "/var/lib/assotic/releases"


def release_marker(plan: AppPlan) -> tuple[str, str] | None:
    """(path, JSON text) of a plan's release marker; None without a pin. No secret inside:
    root-owned, world-readable, like the code it describes."""
    if plan.pinned is None:
        return None
    pin = {"version": plan.pinned.version, "url": plan.pinned.url, "sha256": plan.pinned.sha256}
    if plan.instance is not None:  # Mattermost: one server for several associations
        name, record = f"mattermost-instance-{plan.instance.name}", {"instance": plan.instance.name}
    else:
        name, record = f"{plan.tenant.slug}-{plan.app}", {"tenant": plan.tenant.slug}
    record.update(app=plan.app, version=plan.pinned.version, standin=plan.release is None, pin=pin)
    return f"{RELEASE_MARKER_DIR}/{name}.json", json.dumps(record, indent=2, sort_keys=True) + "\n"


def app_roles() -> dict[str, Any]:
    """The app roles that hand needs to the shared roles, in deploy order.

    Mattermost is planned per instance (several tenants on one server), see host_plan.
    """
    from roles import mattermost, nextcloud, paheko

    return {"nextcloud": nextcloud, "paheko": paheko, "mattermost": mattermost}


def host_plan(host_name: str, host_data: Any, debian: str) -> tuple[HostNeeds, list[AppPlan]]:
    """What the apps on a host need from the shared roles, and what each app role deploys.

    `debian` is the host's Debian major release ("12", "13"): Nextcloud's pin depends on it.
    A missing release becomes the stand-in or stops the deploy, as data `missing_release` says.
    """
    needs, plans = HostNeeds(), []
    for tenant in host_data.platform.tenants_on(host_name):
        for app, role in app_roles().items():
            if app == "mattermost" or app not in tenant.apps_on(host_name):
                continue
            key = instance_key(tenant.slug, app)
            release, path = choose_release(host_data.release_set, app, debian,
                                           host_data.missing_release, host_name, key)
            needs.extend(getattr(role, f"{app}_needs")(tenant, release))
            pinned = host_data.release_set.get(app, debian, key)
            plans.append(AppPlan(app, tenant, release, path, pinned=pinned and pinned.artifact))
    # Mattermost: one plan per instance on this host, whatever number of teams it serves.
    # Each instance runs its own release tree (a drop-in per unit), so `make update` moves
    # them one at a time: an instance is "<name>/mattermost" in per-instance pins.
    for instance in host_data.platform.mattermost_on(host_name):
        key = instance_key(instance.name, "mattermost")
        release, path = choose_release(host_data.release_set, "mattermost", debian,
                                       host_data.missing_release, host_name, key)
        needs.extend(app_roles()["mattermost"].mattermost_needs(instance, release))
        pinned = host_data.release_set.get("mattermost", debian, key)
        plans.append(AppPlan("mattermost", None, release, path, instance,
                             pinned=pinned and pinned.artifact))
    return needs, plans


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
    from roles import base
    from roles.nginx.render import web_openings

    vhosts = needs.vhosts if needs is not None else []
    openings = [*base.ssh_openings(host_data), *web_openings(vhosts)]
    if "turn" in groups:
        from roles.coturn import turn_openings

        openings += turn_openings(host_data)
    if "bbb" in groups:
        from roles.bbb import bbb_openings

        openings += bbb_openings(host_data)
    return openings

