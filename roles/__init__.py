"""The roles, one concern each. deploy.py runs them in order.

What crosses roles lives here, so that deploy.py and the testinfra checks
compute it the same way.
"""

from __future__ import annotations

from assotic.needs import AppInstance, HostNeeds, Vhost


def firewall_openings(host_data, needs: HostNeeds | None = None) -> list:
    """Every port a host must open, gathered from the roles that run on it.

    Each role declares its openings (a list of roles.base.Opening); only the base
    role renders the nftables ruleset from this list. `needs`: what the apps on the
    host ask of the shared roles (its vhosts open 80 and 443).
    """
    from roles import base
    from roles.nginx.render import web_openings

    vhosts = needs.vhosts if needs is not None else []
    return [*base.ssh_openings(host_data), *web_openings(vhosts)]


# --- TEMPORARY (roles/nginx + roles/tls branch) ------------------------------------------
# Until the app roles (roles/nextcloud, roles/paheko, roles/standin) hand over their own
# needs, every app of every tenant on the host gets a static "standin" vhost, so that the
# web front and the certificates can be deployed and verified in the lab. The lead replaces
# this function with the app roles' needs.
STANDIN_WEB_ROOT = "/var/www/assotic-standin"


def temporary_standin_needs(host_name: str, host_data) -> HostNeeds:
    """TEMPORARY: one static standin vhost per app domain of the tenants on this host."""
    needs = HostNeeds()
    platform = getattr(host_data, "platform", None)
    if platform is None:
        return needs
    for tenant in platform.tenants_on(host_name):
        for app, placement in tenant.apps_on(host_name).items():
            if getattr(placement, "domain", None) is None:
                continue
            needs.vhosts.append(Vhost(
                domain=placement.domain,
                instance=AppInstance(tenant.slug, app),
                kind="standin",
                web_root=f"{STANDIN_WEB_ROOT}/{placement.domain}",
                php_socket=None,
            ))
    return needs
