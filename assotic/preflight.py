"""Everything checked before pyinfra connects to any host.

group_data/all.py calls `load_platform(inventory)` while pyinfra builds its
inventory, which happens before the first connection. If anything is wrong in
the inventory, the tenant files or the secrets, every problem is printed and the
process stops: no host is touched. `make check` runs exactly the same code.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assotic import sip
from assotic.layout import (BACKED_UP_GROUPS, HOST_SECRETS, TURN_SECRET, bbb_api_secret, host_secret,
                            mattermost_secret, tenant_secret)
from assotic.mail import (admin_address_problems, mail_plan, mail_secret_problems, parse_relay,
                          relay_lookup_problems, relay_problems)
from assotic.report import InputError, Problem, exit_with
from assotic.tenants import APP_GROUPS, HOST_PATTERN, SLUG_PATTERN, Tenant, load_tenants

REPO_ROOT = Path(__file__).resolve().parent.parent

# Inventory groups assotic knows. A host's groups decide which roles run on it.
KNOWN_GROUPS = {
    "web": "Nextcloud, Paheko and Mattermost behind nginx",
    "bbb": "BigBlueButton, which needs a machine of its own with ports 80 and 443",
    "turn": "coturn TURN servers for BigBlueButton",
    "backup": "backup targets reached over SFTP",
}
# BigBlueButton takes over nginx, ports 80/443 and much of the machine: it shares with nothing.
EXCLUSIVE_GROUPS = {"bbb"}

SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-", "sk-ssh-ed25519@", "sk-ecdsa-sha2-")


@dataclass(frozen=True)
class InventoryView:
    """What preflight needs of an inventory: plain names and data, no pyinfra objects."""

    label: str  # the inventory file, as typed by the operator
    groups: dict[str, list[str]]  # group name -> host names
    hosts: dict[str, dict[str, Any]]  # host name -> data written in the inventory file

    def groups_of(self, host_name: str) -> set[str]:
        return {g for g, names in self.groups.items() if host_name in names}


@dataclass
class Platform:
    """The validated data every role reads: set once per pyinfra run as host data."""

    tenants: list[Tenant]
    secrets: Any  # assotic.secrets_store.SecretStore (values decrypted on demand, in memory)
    new_secrets: list[str] = field(default_factory=list)  # generated during this run
    # assotic.mattermost.MattermostInstance: every Mattermost server and its teams.
    mattermost: list = field(default_factory=list)
    mattermost_edition: str = "team"
    # Worth a look, not worth stopping a deploy (e.g. near Team Edition's user limit).
    warnings: list[str] = field(default_factory=list)

    def mattermost_on(self, host_name: str) -> list:
        return [i for i in self.mattermost if i.host == host_name]

    def tenants_on(self, host_name: str) -> list[Tenant]:
        return [t for t in self.tenants if t.apps_on(host_name)]


def inventory_view(inventory: Any, label: str) -> InventoryView:
    """Build the view from pyinfra's (fake, pre-connection) Inventory object."""
    stem = Path(label).stem
    groups = {
        name: [h.name for h in hosts]
        for name, hosts in inventory.groups.items()
        if name not in {"all", stem}  # pyinfra adds these two by itself
    }
    hosts = {h.name: dict(inventory.get_host_data(h.name) or {}) for h in inventory}
    return InventoryView(label=label, groups=groups, hosts=hosts)


def inventory_label_from_argv(argv: list[str]) -> str:
    """pyinfra does not tell group data which inventory file it loads; find it on its command line."""
    candidates = [a for a in argv[1:] if a.endswith(".py") and Path(a).is_file()]
    for arg in candidates:
        if Path(arg).parent.name == "inventory":
            return arg
    return candidates[0] if candidates else "the inventory"


# --- Inventory ---------------------------------------------------------------------------------


def inventory_problems(view: InventoryView) -> list[Problem]:
    problems: list[Problem] = []
    for group in view.groups:
        if group not in KNOWN_GROUPS:
            problems.append(Problem(view.label, group, "a known group name: "
                                    + ", ".join(sorted(KNOWN_GROUPS)) + f"; got {group!r}"))
    if not view.hosts:
        problems.append(Problem(view.label, "", "at least one host in a group such as web"))
    for name, data in view.hosts.items():
        where = f"{name}"
        if not HOST_PATTERN.fullmatch(name):
            problems.append(Problem(view.label, where, "a host name of lowercase letters, digits, "
                                    f"- and dots, like web-1; got {name!r}"))
        groups = view.groups_of(name) & set(KNOWN_GROUPS)
        if not groups:
            problems.append(Problem(view.label, where, "the host in one of the groups "
                                    + ", ".join(sorted(KNOWN_GROUPS))))
        for exclusive in EXCLUSIVE_GROUPS & groups:
            if len(groups) > 1:
                problems.append(Problem(view.label, where, f"a host of group {exclusive} in no "
                                        f"other group, since it runs {KNOWN_GROUPS[exclusive]}; "
                                        "it is also in " + ", ".join(sorted(groups - {exclusive}))))
        problems += host_data_problems(view.label, name, data)
        if "bbb" in groups:  # BigBlueButton's version line and SIP dial-in (assotic/sip.py)
            problems += sip.bbb_problems(view.label, name, data)
    return problems


def host_data_problems(label: str, host_name: str, data: dict[str, Any]) -> list[Problem]:
    """Check the host data keys assotic relies on; pyinfra's own keys are left to pyinfra."""
    problems: list[Problem] = []

    def bad(key: str, expected: str) -> None:
        problems.append(Problem(label, f"{host_name}.{key}", f"{expected}; got {data[key]!r}"))

    if "ssh_port" in data:
        port = data["ssh_port"]
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            bad("ssh_port", "a port number from 1 to 65535")
    if "ssh_hostname" in data:
        address = data["ssh_hostname"]
        if not isinstance(address, str) or not (_is_ip(address) or HOST_PATTERN.fullmatch(address)):
            bad("ssh_hostname", "an IP address or a DNS name to connect to")
    if "ssh_user" in data and not (isinstance(data["ssh_user"], str)
                                   and SLUG_PATTERN.fullmatch(data["ssh_user"])
                                   or data["ssh_user"] == "root"):
        bad("ssh_user", "a Unix login name")
    if "ssh_key" in data:
        key = data["ssh_key"]
        if not isinstance(key, str) or not Path(os.path.expanduser(key)).is_file():
            hint = " (run `make lab` to create the lab key)" if ".lab" in str(key) else ""
            bad("ssh_key", f"the path of an existing private key file{hint}")
    if "sysadmins" in data:
        problems += sysadmin_problems(label, f"{host_name}.sysadmins", data["sysadmins"])
    for key, version in (("public_ipv4", 4), ("public_ipv6", 6)):  # make dns: A and AAAA records
        if key in data and data[key] is not None and not _is_ip(str(data[key]), version):
            bad(key, f"a public IPv{version} address of the host, or None")
    return problems


def sysadmin_problems(label: str, field_name: str, sysadmins: Any) -> list[Problem]:
    """sysadmins: [{name: <unix login>, ssh_keys: [<public key line>, ...]}, ...]"""
    if not isinstance(sysadmins, list):
        return [Problem(label, field_name, f"a list of {{name, ssh_keys}}; got {sysadmins!r}")]
    problems = []
    for i, admin in enumerate(sysadmins):
        where = f"{field_name}.{i}"
        if not isinstance(admin, dict) or set(admin) != {"name", "ssh_keys"}:
            problems.append(Problem(label, where, "a mapping with exactly name and ssh_keys; "
                                    f"got {admin!r}"))
            continue
        if not isinstance(admin["name"], str) or not SLUG_PATTERN.fullmatch(admin["name"]):
            problems.append(Problem(label, f"{where}.name", "a Unix login: lowercase letters, "
                                    f"digits and _, starting with a letter; got {admin['name']!r}"))
        keys = admin["ssh_keys"]
        if not isinstance(keys, list) or not keys:
            problems.append(Problem(label, f"{where}.ssh_keys", "a non-empty list of public keys"))
            continue
        for j, key in enumerate(keys):
            if not isinstance(key, str) or not key.startswith(SSH_KEY_TYPES) or "\n" in key \
                    or len(key.split()) < 2:
                problems.append(Problem(label, f"{where}.ssh_keys.{j}", "one public key line such as "
                                        f"'ssh-ed25519 AAAA... name@laptop'; got {str(key)[:40]!r}"))
    return problems


def _is_ip(text: str, version: int | None = None) -> bool:
    """An IP address (of this version, when given)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


# --- Tenants against the inventory -------------------------------------------------------------


def placement_problems(view: InventoryView, tenants: list[tuple[str, Tenant]]) -> list[Problem]:
    """Each app must run on a host of the inventory, in the group that serves that app."""
    problems: list[Problem] = []
    for label, tenant in tenants:
        for app, placement in tenant.apps.enabled().items():
            if placement.host is None:  # a shared Mattermost instance: checked with the instance
                continue
            field_name = f"apps.{app}.host"
            wanted = APP_GROUPS[app]
            if placement.host not in view.hosts:
                problems.append(Problem(label, field_name, f"a host of {view.label} "
                                        f"(group {wanted}: {', '.join(view.groups.get(wanted, [])) or 'none'}); "
                                        f"got {placement.host!r}"))
            elif wanted not in view.groups_of(placement.host):
                problems.append(Problem(label, field_name, f"a host of group {wanted} in "
                                        f"{view.label}; {placement.host!r} is in "
                                        + (", ".join(sorted(view.groups_of(placement.host))) or "no group")))
    return problems


# --- Secrets -----------------------------------------------------------------------------------


# The secrets assotic generates for each app of each association, stored as
# tenants/<slug>/<app>/<name>. Paheko keeps its data in SQLite: no database password.
APP_SECRETS: dict[str, tuple[str, ...]] = {
    "nextcloud": ("db_password", "admin_password", "redis_password"),
    "paheko": ("admin_password", "secret_key"),
    # The first admin's password of the association's team; the database is the instance's.
    "mattermost": ("admin_password",),
    "bigbluebutton": (),
}


# Platform-level secrets generated once per backed-up host (roles/backup, docs/backup.md):
# the password of its restic repository and the seed of its SSH key to the backup target
# (assotic/layout.py HOST_SECRETS), on hosts of BACKED_UP_GROUPS.


def backed_up_hosts(view: InventoryView) -> list[str]:
    """Hosts whose data roles/backup saves (every host of groups web and bbb), in inventory order."""
    return [name for name in view.hosts if view.groups_of(name) & set(BACKED_UP_GROUPS)]


# Secrets of a shared app instance rather than of one association (one Mattermost server
# serves several associations), stored as <app>/<instance>/<name>.
INSTANCE_SECRETS: dict[str, tuple[str, ...]] = {
    "mattermost": ("db_password",),
}


def generated_secret_names(tenants: list[Tenant], mattermost_instances: list | None = None) -> list[str]:
    """Secrets assotic creates itself: one set per association and app, one per shared instance."""
    names = [tenant_secret(tenant.slug, app, name)
             for tenant in tenants for app in tenant.apps.enabled() for name in APP_SECRETS[app]]
    names += [mattermost_secret(inst.name, name)
              for inst in mattermost_instances or [] for name in INSTANCE_SECRETS["mattermost"]]
    return names


def platform_secret_names(view: InventoryView) -> list[str]:
    """Secrets of the platform itself, not of an association: generated too.

    One TURN secret shared by every coturn host and every BBB host (BBB hands out
    credentials for all the TURN servers it knows), one API secret per BBB host, and per
    backed-up host its restic password and the seed of its SSH key to the backup target.
    """
    names = [TURN_SECRET] if view.groups.get("turn") else []
    names += [bbb_api_secret(name) for name in view.groups.get("bbb", [])]
    return names + [host_secret(host, name) for host in backed_up_hosts(view) for name in HOST_SECRETS]


def open_secrets(create_missing: list[str], write: bool):
    """Open the store; returns (store, newly generated names, problems)."""
    from assotic import secrets_store

    store_path = secrets_store.default_store_path()
    try:
        store = secrets_store.SecretStore.open()
    except secrets_store.MissingKeyError as err:
        return None, [], [Problem(str(err.key_path), "", str(err))]
    except secrets_store.SecretsError as err:
        return None, [], [Problem(str(store_path), "", str(err))]
    missing = store.missing(create_missing)
    if write and missing:
        store.ensure_generated(missing)
        store.save()
    return store, missing, []


# --- The whole preflight -----------------------------------------------------------------------


def tenants_dir() -> Path:
    return Path(os.environ.get("ASSOTIC_TENANTS_DIR") or REPO_ROOT / "group_data" / "tenants")


def mattermost_checks(view: InventoryView, loaded: list[tuple[str, Tenant]], declared: Any,
                      edition: Any) -> tuple[list[tuple[str, Tenant]], list, list[Problem], list[str]]:
    """Mattermost instances from data and tenant files (assotic/mattermost.py).

    Returns the tenants with their instance's host and domain filled in, the instances,
    the problems and the warnings (Team Edition's user limit).
    """
    from assotic import mattermost as model

    problems = model.edition_problems(edition)
    problems += model.declared_instance_problems(declared, view.groups.get("web", []), view.label)
    if problems:
        return loaded, [], problems, []
    instances, found = model.build_instances(declared, loaded)
    problems += found + model.instance_conflicts(instances, loaded)
    placed = model.placed_tenants(instances, [t for _, t in loaded])
    loaded = [(label, tenant) for (label, _), tenant in zip(loaded, placed, strict=True)]
    return loaded, instances, problems, model.user_count_warnings(instances, placed, edition)


GROUP_DATA_LABEL = "group_data/all.py"


def mail_data_problems(view: InventoryView, mail_relay: Any, mail_admin: Any) -> list[Problem]:
    """The platform relay and the hosting team's address (group_data/all.py), and a relay
    given to one host in the inventory instead."""
    problems = relay_problems(GROUP_DATA_LABEL, "mail_relay", mail_relay)
    problems += admin_address_problems(GROUP_DATA_LABEL, "mail_admin", mail_admin)
    for name, data in view.hosts.items():
        problems += relay_problems(view.label, f"{name}.mail_relay", data.get("mail_relay"))
        problems += admin_address_problems(view.label, f"{name}.mail_admin", data.get("mail_admin"))
        problems += relay_lookup_problems(view.label, f"{name}.mail_relay_lookup",
                                          data.get("mail_relay_lookup"))
    return problems


def mail_plan_of(view: InventoryView, mail_relay: Any, tenants: list[Tenant]):
    """Every relay of the platform: whose passwords the store must hold (set by the operator,
    never generated). A host's own mail_relay in the inventory counts as the platform's."""
    relays = [mail_relay] + [data.get("mail_relay") for data in view.hosts.values()]
    return mail_plan(parse_relay(next((r for r in relays if r is not None), None)), tenants, None)


def secrets_store_path() -> Path:
    from assotic import secrets_store

    return secrets_store.default_store_path()


def check_everything(view: InventoryView, directory: Path, write_secrets: bool,
                     mattermost_instances: Any = None, mattermost_edition: Any = "team",
                     mail_relay: Any = None, mail_admin: Any = None) -> Platform:
    """Run every check; raise InputError with all problems, or return the validated platform."""
    loaded, problems = load_tenants(directory, label_root=Path.cwd())
    problems += inventory_problems(view)
    problems += mail_data_problems(view, mail_relay, mail_admin)
    loaded, instances, found, warnings = mattermost_checks(view, loaded, mattermost_instances,
                                                           mattermost_edition)
    problems += found
    problems += placement_problems(view, loaded)
    tenants = [t for _, t in loaded]
    if problems:
        # Secrets are only generated for data that is known to be good.
        store, new, secret_problems = open_secrets([], write=False)
    else:
        store, new, secret_problems = open_secrets(
            generated_secret_names(tenants, instances) + platform_secret_names(view), write_secrets)
    problems += secret_problems
    problems += sip.sip_secret_problems(view.label, view.hosts, view.groups.get("bbb", []), store)
    if not problems:
        problems += mail_secret_problems(str(secrets_store_path()),
                                         mail_plan_of(view, mail_relay, tenants), store)
    if problems:
        raise InputError(problems)
    return Platform(tenants=tenants, secrets=store, new_secrets=new, mattermost=instances,
                    mattermost_edition=mattermost_edition, warnings=warnings)


# --- Release pins -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseFloor:
    """The oldest release of an app that works with assotic's layout, and why."""

    version: str
    debian: str | None  # the Debian release it applies to; None: every one
    why: str


# Read in the upstream sources (docs/apps.md, "Paheko").
RELEASE_FLOORS: dict[str, tuple[ReleaseFloor, ...]] = {
    "paheko": (
        ReleaseFloor("1.3.13", None,
                     "include/init.php turns PAHEKO_* entries of $_ENV into constants only from "
                     "1.3.13 on; before, the pool's env[PAHEKO_CONFIG_FILE] is ignored and every "
                     "web page fails"),
        ReleaseFloor("1.3.13", "13",
                     "PHP 8.4 (Debian 13) deprecates E_STRICT, which the KD2 ErrorManager bundled "
                     "before 1.3.13 still uses, and that deprecation is fatal under it: "
                     "`bin/paheko init` fails"),
    ),
}


def _release_number(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def release_pin_problems(releases: dict[str, Any], tenants: list[Tenant],
                         host_debian: dict[str, str | None]) -> list[Problem]:
    """Pins (data `releases`, or the $ASSOTIC_RELEASES_OVERRIDE file for this run) older than
    RELEASE_FLOORS for a Debian release one of the app's hosts runs (undeclared: any)."""
    from assotic.artifacts import OVERRIDE_ENV, apply_override

    problems = []
    for app, floors in RELEASE_FLOORS.items():
        hosts = {t.apps.enabled()[app].host for t in tenants if app in t.apps.enabled()}
        if not hosts or app not in releases:
            continue
        pin = apply_override(app, releases[app])
        overridden = pin is not releases[app]
        where = (os.environ[OVERRIDE_ENV], f"{app}.version") if overridden \
            else ("group_data/all.py", f"releases.{app}.version")
        version = str(pin.get("version", ""))
        number = _release_number(version)
        debians = {host_debian.get(h) for h in hosts}
        for floor in floors:
            if floor.debian is not None and None not in debians and floor.debian not in debians:
                continue
            if number is None or number < _release_number(floor.version):
                on = f" on Debian {floor.debian}" if floor.debian else ""
                problems.append(Problem(*where, f"{app} {floor.version} or later{on}: {floor.why}; "
                                                f"got {version!r}"))
    return problems


# The Nextcloud app "bbb" (cloud_bbb, now github.com/littleredbutton/cloud_bbb; sualko/cloud_bbb
# stopped at 1.4.2) release checked, and the Nextcloud majors its appinfo/info.xml admits.
# `occ app:install bbb` takes the newest release the app store offers for the host's Nextcloud;
# none exists for a major outside this range, so preflight refuses it up front.
NEXTCLOUD_BBB_APP = {
    "version": "2.9.3",
    "min_nextcloud": 33,
    "max_nextcloud": 34,
    "source": "littleredbutton/cloud_bbb tag v2.9.3 (c51ed7bb), appinfo/info.xml "
              '<nextcloud min-version="33" max-version="34"/>',
}


def nextcloud_app_problems(tenants: list[tuple[str, Any]], nextcloud_pins: Mapping[str, Any],
                           host_debian: Mapping[str, str | None]) -> list[Any]:
    """Associations with BigBlueButton whose Nextcloud pin the app "bbb" does not admit.

    `nextcloud_pins`: data `releases["nextcloud"]` ({"12": pin, "13": pin}); a host that does
    not say its `debian_release` may get any of them, so each is checked.
    """
    app, problems = NEXTCLOUD_BBB_APP, []
    for label, tenant in tenants:
        if tenant.apps.bigbluebutton is None or tenant.apps.nextcloud is None:
            continue
        nc_host = tenant.apps.nextcloud.host
        declared = host_debian.get(nc_host)
        for debian in ([declared] if declared in nextcloud_pins else sorted(nextcloud_pins)):
            version = str(nextcloud_pins[debian].get("version", ""))
            major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else None
            if major is None or not app["min_nextcloud"] <= major <= app["max_nextcloud"]:
                problems.append(Problem(label, "apps.bigbluebutton", (
                    f"a Nextcloud the app bbb {app['version']} runs on (Nextcloud "
                    f"{app['min_nextcloud']}-{app['max_nextcloud']}: {app['source']}); "
                    f"{nc_host} (Debian {debian}) gets Nextcloud {version} from data `releases`. "
                    "Remove apps.bigbluebutton, or pin a cloud_bbb release that admits it in "
                    "assotic/preflight.py NEXTCLOUD_BBB_APP")))
    return problems


def check_release_pins(releases: dict[str, Any], tenants: list[Tenant], inventory: Any) -> None:
    """For group_data/all.py, once `releases` is known: stop, with every problem at once, on
    what the pins cannot run (a pin older than this layout works with; the Nextcloud app bbb
    outside its Nextcloud range), before any host is touched."""
    from assotic.artifacts import host_debian_releases

    problems = pinned_release_problems(releases, tenants, host_debian_releases(inventory))
    if problems:
        exit_with(problems)


def pinned_release_problems(releases: Any, tenants: list[Tenant], host_debian: Any) -> list[Problem]:
    directory = tenants_dir()
    labelled = [(_label(directory / f"{tenant.slug}.yml"), tenant) for tenant in tenants]
    return [*release_pin_problems(releases or {}, tenants, host_debian or {}),
            *nextcloud_app_problems(labelled, (releases or {}).get("nextcloud", {}), host_debian or {})]


def load_platform(inventory: Any, argv: list[str] | None = None, mattermost_instances: Any = None,
                  mattermost_edition: Any = "team", mail_relay: Any = None,
                  mail_admin: Any = None) -> Platform:
    """Entry point for group_data/all.py: validate, or print every problem and stop pyinfra."""
    label = os.environ.get("ASSOTIC_INVENTORY_LABEL") or inventory_label_from_argv(argv or sys.argv)
    write = os.environ.get("ASSOTIC_CHECK_ONLY") != "1"
    try:
        platform = check_everything(inventory_view(inventory, label), tenants_dir(), write,
                                    mattermost_instances, mattermost_edition, mail_relay, mail_admin)
    except InputError as err:
        exit_with(err.problems)
    if write:  # `make check` prints the warnings itself, and says which secrets are missing
        for warning in platform.warnings:
            print(f"assotic: WARNING: {warning}", file=sys.stderr)
    if write and platform.new_secrets:
        print(f"assotic: generated {len(platform.new_secrets)} new secret(s) in the encrypted store; "
              "commit it so the whole team has them.", file=sys.stderr)
    return platform


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_inventory_like_pyinfra(inventory_file: str | Path, cwd: str | Path = REPO_ROOT,
                                override_data: dict | None = None):
    """Load an inventory and its group_data exactly as `pyinfra <inventory> ...` run from cwd does.

    Used by `make check` and `make verify`: preflight runs (a problem exits with 2), nothing
    connects and no secret is written. `override_data`: what pyinfra's `--data key=value`
    sets, above every group's data. Returns pyinfra's Inventory.
    """
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    os.environ["ASSOTIC_INVENTORY_LABEL"] = str(inventory_file)
    os.environ["ASSOTIC_CHECK_ONLY"] = "1"
    # pyinfra's loader records the file it executes on the current State, so set one up.
    state = State()
    state.cwd = str(cwd)
    ctx_state.set(state)
    previous = os.getcwd()
    os.chdir(cwd)  # group_data files may use paths relative to it, as under pyinfra
    try:
        return make_inventory(str(Path(inventory_file).resolve()), override_data=override_data, cwd=str(cwd))
    finally:
        os.chdir(previous)
