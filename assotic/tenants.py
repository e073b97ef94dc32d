"""The tenant schema: one YAML file per association, validated here and nowhere else.

This is the only module that parses YAML. Roles receive `Tenant` objects, never
dictionaries, so a typo in a tenant file can never reach a host.

Every problem is reported with the file, the dotted field and what was
expected, and all problems of all files come out together (see report.py).
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from assotic.report import Problem

# --- Field types -------------------------------------------------------------------------------

# A slug becomes part of Unix user names (max 32 chars, e.g. "nextcloud_<slug>") and
# PostgreSQL role/database names, so it is kept to a small, quote-free alphabet.
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9_]{1,19}")
SLUG_EXPECTED = (
    "2 to 20 characters: lowercase letters, digits and _, starting with a letter "
    "(it becomes a Unix user and database name)"
)

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
FQDN_PATTERN = re.compile(rf"(?=.{{4,253}}$)({_LABEL}\.)+[a-z]{{2,63}}")
FQDN_EXPECTED = "a fully qualified domain name in lowercase, like cloud.example.org"

# A host name as written in the inventory (a logical name such as web-1 or a FQDN).
HOST_PATTERN = re.compile(rf"{_LABEL}(\.{_LABEL})*")

EMAIL_PATTERN = re.compile(rf"[A-Za-z0-9._%+-]+@({_LABEL}\.)+[a-z]{{2,63}}")

QUOTA_PATTERN = re.compile(r"(?P<number>\d+(\.\d+)?) ?(?P<unit>MB|GB|TB)|unlimited")
QUOTA_EXPECTED = 'a size like "500 MB", "5 GB" or "1 TB", or "unlimited"'
_QUOTA_UNITS = {"MB": 10**6, "GB": 10**9, "TB": 10**12}


def _matching(pattern: re.Pattern[str], expected: str):
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{expected}; got {value!r}")
        return value

    return AfterValidator(check)


Slug = Annotated[str, _matching(SLUG_PATTERN, SLUG_EXPECTED)]
Fqdn = Annotated[str, _matching(FQDN_PATTERN, FQDN_EXPECTED)]
HostName = Annotated[str, _matching(HOST_PATTERN, "a host name from the inventory, like web-1")]
Email = Annotated[str, _matching(EMAIL_PATTERN, "an e-mail address like bureau@example.org")]
Quota = Annotated[str, _matching(QUOTA_PATTERN, QUOTA_EXPECTED)]


def quota_bytes(quota: str) -> int | None:
    """'5 GB' -> 5_000_000_000; 'unlimited' -> None. Decimal units, as Nextcloud counts them."""
    match = QUOTA_PATTERN.fullmatch(quota)
    if match is None:
        raise ValueError(f"{QUOTA_EXPECTED}; got {quota!r}")
    if quota == "unlimited":
        return None
    return int(float(match["number"]) * _QUOTA_UNITS[match["unit"]])


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt key silently ignored is a setting silently lost.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --- The tenant file ---------------------------------------------------------------------------


class Contact(_Strict):
    """Who the hosting team writes to about this association."""

    email: Email
    name: str | None = Field(None, max_length=100)


class Admin(_Strict):
    """An administrator of the association's apps (not of the servers)."""

    name: str = Field(min_length=1, max_length=100, description="Display name")
    email: Email
    login: Slug | None = Field(
        None, description="Login in the apps; defaults to the part of the e-mail before @, cleaned"
    )

    @property
    def username(self) -> str:
        if self.login:
            return self.login
        cleaned = re.sub(r"[^a-z0-9_]", "_", self.email.split("@")[0].lower())
        return cleaned if cleaned[:1].isalpha() else f"u_{cleaned}"


class WebApp(_Strict):
    host: HostName = Field(description="Inventory host (group web) that runs this app")
    domain: Fqdn = Field(description="Public domain name of this app for the association")


class NextcloudApp(WebApp):
    enabled_apps: list[str] = Field(
        default_factory=list, description="Nextcloud apps to enable, e.g. calendar, contacts"
    )


class PahekoApp(WebApp):
    pass


class MattermostApp(_Strict):
    """A team for the association on a Mattermost instance (assotic/mattermost.py).

    Either `instance: <name>` (an instance declared in group_data/all.py
    `mattermost_instances`, shared by several associations; it gives host and domain),
    or `host` + `domain` (an instance of the association's own, named after its slug).
    """

    instance: Slug | None = Field(
        None, description="Shared instance from group_data/all.py mattermost_instances; "
        "host and domain then come from it")
    host: HostName | None = Field(None, description="Inventory host (group web), for an instance "
                                  "of the association's own")
    domain: Fqdn | None = Field(None, description="Public domain, for an instance of the "
                                "association's own")

    @model_validator(mode="after")
    def _instance_or_host_and_domain(self) -> MattermostApp:
        if self.instance is not None and (self.host is not None or self.domain is not None):
            raise ValueError(f"either `instance: {self.instance}` (host and domain come from the "
                             "instance) or host and domain (an instance of your own), not both")
        if self.instance is None and (self.host is None or self.domain is None):
            raise ValueError("`instance: <name>` (a shared instance of group_data/all.py "
                             "mattermost_instances) or both host and domain (an instance of your own)")
        return self


class BigBlueButtonApp(_Strict):
    host: HostName = Field(description="Inventory host (group bbb) that runs BigBlueButton")
    domain: Fqdn | None = Field(None, description="Meeting domain, if not the BBB host's own")


class Apps(_Strict):
    """The apps an association picks, à la carte. Each one says where it runs."""

    nextcloud: NextcloudApp | None = None
    paheko: PahekoApp | None = None
    mattermost: MattermostApp | None = None
    bigbluebutton: BigBlueButtonApp | None = None

    def enabled(self) -> dict[str, WebApp | BigBlueButtonApp]:
        return {name: app for name in APP_NAMES if (app := getattr(self, name)) is not None}


APP_NAMES = tuple(Apps.model_fields)

# Which inventory group may run each app. BigBlueButton needs a machine of its own.
APP_GROUPS: dict[str, str] = {
    "nextcloud": "web",
    "paheko": "web",
    "mattermost": "web",
    "bigbluebutton": "bbb",
}


class Quotas(_Strict):
    per_user: Quota = Field("2 GB", description="Default storage quota for each member (Nextcloud)")


# Fields a tenant file may still hold that no app applies: refused with what to do instead.
# quotas.total: Nextcloud has no quota for a group in core (quotas are per user: files
# default_quota), and a limit on /srv/assotic/<slug> needs project quotas on that filesystem
# (XFS or ext4 mounted with prjquota), which a shared host cannot be assumed to have.
REFUSED_FIELDS = {
    ("quotas", "total"): "not applied by any app (Nextcloud's quotas are per member; no filesystem "
                         "limit is set), so it is refused: remove the line and size quotas.per_user "
                         "(x members) instead",
}


class MailRelay(_Strict):
    """An authenticated SMTP submission server that Postfix relays mail through. Its password
    is in the secrets store, never here (assotic/layout.py mail_relay_secret)."""

    host: Fqdn = Field(description="Name of the relay's submission server, e.g. smtp.example.net")
    port: int = Field(587, ge=1, le=65535, description="587 for starttls, 465 for implicit")
    # "starttls": the submission port, upgraded with STARTTLS; "implicit": TLS from the first
    # byte (submissions, 465). Never plain text: the password would cross the network in clear.
    tls: Literal["starttls", "implicit"] = Field("starttls", description="starttls or implicit")
    login: str = Field(min_length=1, max_length=200, pattern=r"^[^\s:]+$",
                       description="SASL login (often the sending address)")
    spf: str | None = Field(None, max_length=200, pattern=r"^(include:|ip4:|ip6:|a:|mx:|a$|mx$)[^\s\"]*$",
                            description="The SPF mechanism of the relay's sending servers, from its "
                            "provider, e.g. include:spf.example.net (make dns)")


class Mail(_Strict):
    """Who the association's mails come from. Every app sends through the host's Postfix."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              populate_by_name=True)

    from_address: Email | None = Field(
        None, alias="from",
        description="Sender of the apps' mails; default no-reply@ the first app's domain")
    reply_to: Email | None = Field(None, description="Where replies go; default contact.email")
    relay: MailRelay | None = Field(
        None, description="The association's own relay, for mail from its from address "
        "(default: the platform's mail_relay)")


class Retention(_Strict):
    daily: int = Field(7, ge=1, le=366)
    weekly: int = Field(4, ge=0, le=520)
    monthly: int = Field(6, ge=0, le=240)


class Backup(_Strict):
    retention: Retention = Retention()


class Tenant(_Strict):
    """One association: which apps it uses, where, for whom, and how long backups are kept."""

    slug: Slug = Field(description="Short technical name; must equal the file name")
    name: str = Field(min_length=1, max_length=100, description="Display name of the association")
    contact: Contact
    apps: Apps = Field(description="At least one of nextcloud, paheko, mattermost, bigbluebutton")
    admins: list[Admin] = Field(min_length=1, description="Administrators of the association's apps")
    members: int = Field(
        0, ge=0, le=100_000, description="Expected number of member accounts (capacity planning)"
    )
    quotas: Quotas = Quotas()
    backup: Backup = Backup()
    mail: Mail = Mail()
    notes: str = Field("", description="Free-form notes for the hosting team")

    def domains(self) -> list[tuple[str, str]]:
        """(app, domain) for every app that has a domain."""
        return [
            (name, app.domain) for name, app in self.apps.enabled().items() if app.domain is not None
        ]

    @property
    def mail_from(self) -> str:
        """The sender of the association's mails: its own choice, or no-reply@ the domain of
        its first app (a domain the association controls, where its SPF record goes)."""
        if self.mail.from_address:
            return self.mail.from_address
        domains = [domain for _, domain in self.domains()]
        return f"no-reply@{domains[0]}" if domains else self.contact.email

    @property
    def mail_reply_to(self) -> str:
        return self.mail.reply_to or self.contact.email

    def apps_on(self, host_name: str) -> dict[str, WebApp | BigBlueButtonApp]:
        return {name: app for name, app in self.apps.enabled().items() if app.host == host_name}


# --- Loading -----------------------------------------------------------------------------------

TENANT_FILE_SUFFIXES = (".yml", ".yaml")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a volunteer would lose the first without a word."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _field_path(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed at a place of the tenant file, to suggest the one a typo meant."""
    model: type[BaseModel] = Tenant
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _explain(error: dict) -> str:
    """Turn one pydantic error into 'what was expected' in a volunteer's words."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "extra_forbidden":
        if tuple(loc) in REFUSED_FIELDS:
            return REFUSED_FIELDS[tuple(loc)]
        if len(loc) == 2 and loc[0] == "apps":
            return f"unknown app; expected one of {', '.join(APP_NAMES)}"
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}expected one of {', '.join(known)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in {"int_type", "int_parsing"}:
        return f"a whole number; got {value!r}"
    if kind in {"string_type"}:
        return f"text; got {value!r}"
    if kind in {"list_type"}:
        return f"a list (lines starting with '- '); got {value!r}"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"a mapping (key: value lines); got {value!r}"
    if kind == "too_short" and isinstance(value, list):
        return "at least one entry"
    return f"{error['msg']}; got {value!r}"


def parse_tenant_file(path: Path, label: str | None = None) -> tuple[Tenant | None, list[Problem]]:
    """Read and validate one tenant file. Returns the tenant or the problems, never raises."""
    label = label or str(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, [
            Problem(label, "", f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                    f"{err.start}); save the file as UTF-8")
        ]
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        reason = getattr(err, "problem", None) or str(err)
        return None, [Problem(label, "", f"YAML syntax error at {where}: {reason}")]
    if data is None:
        return None, [Problem(label, "", "the file is empty; expected one association "
                              "(slug, name, contact, apps, admins)")]
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        return None, [Problem(label, "", f"the top level is {kind}; expected a mapping "
                              "(key: value lines) describing one association")]
    problems: list[Problem] = []
    tenant = None
    try:
        tenant = Tenant.model_validate(data)
    except ValidationError as err:
        problems += [Problem(label, _field_path(e["loc"]), _explain(e)) for e in err.errors()]
    slug = data.get("slug")
    if isinstance(slug, str) and SLUG_PATTERN.fullmatch(slug) and slug != path.stem:
        problems.append(Problem(label, "slug", f"must equal the file name {path.stem!r}; "
                                f"got {slug!r} (rename the file or fix the slug)"))
    if tenant is not None and not tenant.apps.enabled():
        problems.append(Problem(label, "apps", "at least one app; expected one of "
                                + ", ".join(APP_NAMES)))
    return (None if problems else tenant), problems


def tenant_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in TENANT_FILE_SUFFIXES)


def load_tenants(
    directory: Path, label_root: Path | None = None
) -> tuple[list[tuple[str, Tenant]], list[Problem]]:
    """Validate every tenant file of a directory, then the rules that span several files.

    Returns (file label, tenant) pairs for the valid files, and every problem found.
    """

    def label(path: Path) -> str:
        if label_root is not None:
            try:
                return str(path.resolve().relative_to(label_root.resolve()))
            except ValueError:
                pass
        return str(path)

    if not directory.is_dir():
        return [], [Problem(str(directory), "", "a directory of tenant files (*.yml); not found")]
    tenants: list[tuple[str, Tenant]] = []
    problems: list[Problem] = []
    for path in tenant_files(directory):
        tenant, found = parse_tenant_file(path, label(path))
        problems += found
        if tenant is not None:
            tenants.append((label(path), tenant))
    problems += cross_tenant_problems(tenants)
    return tenants, problems


def cross_tenant_problems(tenants: list[tuple[str, Tenant]]) -> list[Problem]:
    """Slugs and domains must be unique across all associations."""
    problems: list[Problem] = []
    slug_owner: dict[str, str] = {}
    domain_owner: dict[str, str] = {}
    for label, tenant in tenants:
        if tenant.slug in slug_owner:
            problems.append(Problem(label, "slug", f"a slug no other association uses; "
                                    f"{tenant.slug!r} is already used by {slug_owner[tenant.slug]}"))
        else:
            slug_owner[tenant.slug] = label
        for app, domain in tenant.domains():
            where = f"{label} (apps.{app}.domain)"
            if domain in domain_owner:
                problems.append(Problem(label, f"apps.{app}.domain", f"a domain nothing else uses; "
                                        f"{domain!r} is already used by {domain_owner[domain]}"))
            else:
                domain_owner[domain] = where
    return problems


# --- JSON Schema, for editors ------------------------------------------------------------------


def json_schema() -> dict:
    schema = Tenant.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "assotic tenant (one association)"
    return schema


def print_json_schema(argv: list[str]) -> int:
    json.dump(json_schema(), sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")
    return 0
