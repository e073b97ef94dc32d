"""Mattermost instances, as data: declared in group_data/all.py or implied by tenant files.

Pure (no host, no pyinfra): preflight builds the instances once, before connecting, and
reports every problem with the file and field; roles/mattermost and the verify checks
read the same objects from host data (`platform.mattermost`).

An instance is one Mattermost server: one Unix user, one loopback port, one PostgreSQL
database, one nginx vhost. Associations join it with one team each.

Two ways for a tenant file to get a team (docs/mattermost.md):
- `mattermost: {instance: chat}`: a team on instance "chat", declared by the hosting
  team in group_data/all.py `mattermost_instances = {"chat": {"host": "web-1",
  "domain": "chat.example.org", "port": 8065}}`; host and domain are the instance's.
- `mattermost: {host: web-1, domain: chat.ulap.example.org}` (the older form, kept): an
  instance of its own, named after the tenant's slug, on a port derived from that name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from assotic.layout import mattermost_secret
from assotic.needs import AppInstance
from assotic.report import Problem
from assotic.tenants import FQDN_EXPECTED, FQDN_PATTERN, HOST_PATTERN, SLUG_PATTERN, Tenant

APP = "mattermost"

# Editions (data `mattermost_edition`). "team": Mattermost Team Edition as pinned in
# `releases["mattermost"]`; it stops serving new sign-ups above TEAM_EDITION_USER_LIMIT
# registered users per server. "unlimited": any other build of the same layout (a fork
# without that limit), given by url + sha256 in `releases["mattermost"]`; no user-count
# warning then.
EDITIONS = ("team", "unlimited")
TEAM_EDITION_USER_LIMIT = 250
# `make check` warns above this many declared members on one Team Edition instance.
WARN_ABOVE_USERS = 200

# Own instances (tenant files with host + domain) get a port in this range, from a hash
# of their name: stable across deploys, whatever other instances come and go.
OWN_PORT_BASE = 18065
OWN_PORT_SPAN = 900
INSTANCE_KEYS = {"host", "domain", "port"}
DATA_FILE = "group_data/all.py"


@dataclass(frozen=True)
class MattermostInstance:
    """One Mattermost server and the associations that have a team on it."""

    name: str  # Unix user mattermost_<name>, unit assotic-mattermost@<name>
    host: str
    domain: str
    port: int
    tenants: tuple[str, ...]  # slugs, in file order: one team each
    declared: bool  # True: in data `mattermost_instances`; False: a tenant's own

    @property
    def app_instance(self) -> AppInstance:
        """Account and folders: user mattermost_<name>, home /srv/assotic/<name>/mattermost."""
        return AppInstance(self.name, APP)

    @property
    def user(self) -> str:
        return self.app_instance.user

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.domain}"

    def secret(self, name: str) -> str:
        """Secrets of the instance itself (not of one tenant): mattermost/<instance>/<name>."""
        return mattermost_secret(self.name, name)

    def mail_sender(self, tenants: list) -> tuple[str, str | None]:
        """(From, Reply-To) of the instance's mails. An association's own instance sends as that
        association (its tenant file's mail section); a shared one serves several, so it sends
        from no-reply@ its own domain, with no Reply-To (Mattermost has one per server)."""
        if not self.declared:
            own = next((t for t in tenants if t.slug in self.tenants), None)
            if own is not None:
                return own.mail_from, own.mail_reply_to
        return f"no-reply@{self.domain}", None


def own_port(name: str) -> int:
    digest = int(hashlib.sha256(f"mattermost-port/{name}".encode()).hexdigest(), 16)
    return OWN_PORT_BASE + digest % OWN_PORT_SPAN


def team_name(slug: str) -> str:
    """Mattermost team names allow lowercase letters, digits and '-' (a single '_' is refused)."""
    return slug.replace("_", "-")


def _problem(field: str, expected: str) -> Problem:
    return Problem(DATA_FILE, field, expected)


def declared_instance_problems(declared: Any, web_hosts: Iterable[str],
                               inventory_label: str) -> list[Problem]:
    """Check data `mattermost_instances`: {name: {host, domain, port}}."""
    if declared is None:
        return []
    if not isinstance(declared, Mapping):
        return [_problem("mattermost_instances", "a mapping {name: {host, domain, port}}; "
                         f"got {declared!r}")]
    web_hosts = sorted(web_hosts)
    problems = []
    for name, spec in declared.items():
        where = f"mattermost_instances.{name}"
        if not isinstance(name, str) or not SLUG_PATTERN.fullmatch(name):
            problems.append(_problem(where, "an instance name of 2 to 20 characters: lowercase "
                                     "letters, digits and _, starting with a letter (it becomes "
                                     f"the Unix user mattermost_<name>); got {name!r}"))
            continue
        if not isinstance(spec, Mapping):
            problems.append(_problem(where, f"a mapping with host, domain and port; got {spec!r}"))
            continue
        unknown = set(spec) - INSTANCE_KEYS
        if unknown:
            problems.append(_problem(where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                                     "expected host, domain, port"))
        for key in sorted(INSTANCE_KEYS - set(spec)):
            problems.append(_problem(f"{where}.{key}", "required field is missing"))
        host, domain, port = spec.get("host"), spec.get("domain"), spec.get("port")
        if host is not None and (not isinstance(host, str) or not HOST_PATTERN.fullmatch(host)
                                 or host not in web_hosts):
            problems.append(_problem(f"{where}.host", f"a host of group web in {inventory_label} "
                                     f"({', '.join(web_hosts) or 'none'}); got {host!r}"))
        if domain is not None and (not isinstance(domain, str) or not FQDN_PATTERN.fullmatch(domain)):
            problems.append(_problem(f"{where}.domain", f"{FQDN_EXPECTED}; got {domain!r}"))
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 1024 <= port <= 65535):
            problems.append(_problem(f"{where}.port", "a port number from 1024 to 65535 (Mattermost "
                                     f"listens on 127.0.0.1 only); got {port!r}"))
    return problems


def build_instances(declared: Mapping[str, Mapping[str, Any]] | None,
                    tenants: list[tuple[str, Tenant]]) -> tuple[list[MattermostInstance], list[Problem]]:
    """Every instance (declared ones first, then tenants' own), with the tenants on each.

    `declared` must have passed declared_instance_problems. Tenants' `mattermost.instance`
    must name a declared instance; an own instance takes the tenant's slug as its name.
    """
    declared = dict(declared or {})
    members: dict[str, list[str]] = {name: [] for name in declared}
    own: dict[str, MattermostInstance] = {}
    problems: list[Problem] = []
    for label, tenant in tenants:
        app = tenant.apps.mattermost
        if app is None:
            continue
        if app.instance is not None:
            if app.instance not in declared:
                known = ", ".join(sorted(declared)) or "none declared"
                problems.append(Problem(label, "apps.mattermost.instance", "an instance of "
                                        f"{DATA_FILE} mattermost_instances ({known}); got {app.instance!r}"))
                continue
            members[app.instance].append(tenant.slug)
        else:
            if tenant.slug in declared:
                problems.append(Problem(label, "apps.mattermost", f"an instance of its own is named "
                                        f"after the slug, but {DATA_FILE} already declares an instance "
                                        f"{tenant.slug!r}: write `instance: {tenant.slug}` instead of "
                                        "host and domain"))
                continue
            own[tenant.slug] = MattermostInstance(tenant.slug, app.host, app.domain,
                                                  own_port(tenant.slug), (tenant.slug,), False)
    instances = [MattermostInstance(name, spec["host"], spec["domain"], spec["port"],
                                    tuple(members[name]), True) for name, spec in declared.items()]
    instances += list(own.values())
    return instances, problems


def instance_conflicts(instances: list[MattermostInstance], tenants: list[tuple[str, Tenant]]) -> list[Problem]:
    """Ports unique per host; domains unique across instances and tenants' other apps; a
    declared instance's name must not be another association's slug (its folder would be
    /srv/assotic/<slug>/mattermost, inside that association's folder)."""
    problems = []
    slugs = {t.slug for _, t in tenants}
    by_port: dict[tuple[str, int], str] = {}
    domain_owner: dict[str, str] = {}
    for label, tenant in tenants:
        for app, domain in tenant.domains():
            if app != APP:
                domain_owner[domain] = f"{label} (apps.{app}.domain)"
    for inst in instances:
        where = f"mattermost_instances.{inst.name}" if inst.declared else "apps.mattermost"
        file = DATA_FILE if inst.declared else _label_of(tenants, inst.name)
        if inst.declared and inst.name in slugs:
            problems.append(Problem(file, where, f"an instance name that is no association's slug; "
                                    f"{inst.name!r} is one (name the instance e.g. 'chat')"))
        key = (inst.host, inst.port)
        if key in by_port:
            hint = "" if inst.declared else (" (an instance of its own gets a port from its name: "
                                             f"declare it in {DATA_FILE} mattermost_instances with a port)")
            problems.append(Problem(file, where, f"a port no other Mattermost instance uses on "
                                    f"{inst.host}; {inst.port} is used by {by_port[key]}{hint}"))
        else:
            by_port[key] = f"instance {inst.name!r}"
        if inst.domain in domain_owner:
            problems.append(Problem(file, where, f"a domain nothing else uses; {inst.domain!r} is "
                                    f"already used by {domain_owner[inst.domain]}"))
        else:
            domain_owner[inst.domain] = f"Mattermost instance {inst.name!r}"
    return problems


def _label_of(tenants: list[tuple[str, Tenant]], slug: str) -> str:
    return next((label for label, t in tenants if t.slug == slug), DATA_FILE)


def placed_tenants(instances: list[MattermostInstance], tenants: list[Tenant]) -> list[Tenant]:
    """Tenants whose `mattermost` gets the host and domain of its instance, so that
    everything that asks where an app runs (apps_on, release resolution) needs no special case."""
    by_tenant = {slug: inst for inst in instances for slug in inst.tenants}
    out = []
    for tenant in tenants:
        inst = by_tenant.get(tenant.slug)
        if inst is None or tenant.apps.mattermost is None:
            out.append(tenant)
            continue
        app = tenant.apps.mattermost.model_copy(update={"host": inst.host, "domain": inst.domain,
                                                        "instance": inst.name})
        out.append(tenant.model_copy(update={"apps": tenant.apps.model_copy(update={"mattermost": app})}))
    return out


def edition_problems(edition: Any) -> list[Problem]:
    if edition not in EDITIONS:
        return [_problem("mattermost_edition", f"one of {', '.join(EDITIONS)}; got {edition!r}")]
    return []


def user_count_warnings(instances: list[MattermostInstance], tenants: list[Tenant],
                        edition: str) -> list[str]:
    """Team Edition stops taking new users above 250 per server: warn well before that."""
    if edition != "team":
        return []
    members = {t.slug: t.members for t in tenants}
    warnings = []
    for inst in instances:
        total = sum(members.get(slug, 0) for slug in inst.tenants)
        if total > TEAM_EDITION_USER_LIMIT:
            warnings.append(f"Mattermost instance {inst.name!r} ({inst.domain}): the associations on it "
                            f"declare {total} members, above Team Edition's limit of "
                            f"{TEAM_EDITION_USER_LIMIT} registered users per server. Move an association "
                            "to an instance of its own, or choose mattermost_edition \"unlimited\".")
        elif total > WARN_ABOVE_USERS:
            warnings.append(f"Mattermost instance {inst.name!r} ({inst.domain}): the associations on it "
                            f"declare {total} members, near Team Edition's limit of "
                            f"{TEAM_EDITION_USER_LIMIT} registered users per server.")
    return warnings

