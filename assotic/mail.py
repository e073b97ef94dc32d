"""Outgoing mail: which relay each sender's mail goes through, checked before any host is touched.

Every host runs Postfix as a null client (roles/mail): the apps hand their mail to it on
loopback, and it relays everything through an authenticated submission server, keeping
mail in its queue while that server cannot be reached. This module says, from the data
only, where each mail goes:

- the platform relay, `mail_relay` in group_data/all.py (or a host's inventory data), for
  every sender;
- an association's own relay (`mail.relay` in its tenant file), for mail from its
  `mail.from` address only (Postfix's sender-dependent relay and authentication).

Passwords are in the secrets store under fixed names (assotic/layout.py), never in data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from assotic.layout import MAIL_RELAY_SECRET, tenant_mail_relay_secret
from assotic.report import Problem
from assotic.tenants import EMAIL_PATTERN, MailRelay, Tenant

__all__ = ["MailRoute", "MailPlan", "relay_problems", "parse_relay", "mail_plan",
           "mail_secret_problems", "admin_address_problems"]


def relay_problems(label: str, field: str, value: Any) -> list[Problem]:
    """Every problem of a relay mapping {host, port, tls, login} at once; none for None."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [Problem(label, field, "a mapping with host, port, tls and login (docs/mail.md); "
                        f"got {value!r}")]
    try:
        MailRelay.model_validate(value)
    except ValidationError as err:
        return [Problem(label, ".".join([field, *(str(p) for p in e["loc"])]),
                        _expected(e)) for e in err.errors()]
    return []


def _expected(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "no such key (the keys are host, port, tls, login and spf; the password is in the " \
               f"secrets store as {MAIL_RELAY_SECRET})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{message}; got {error['input']!r}" if "got " not in message else message


def parse_relay(value: Any) -> MailRelay | None:
    """The validated relay (relay_problems found nothing), or None when there is none."""
    return None if value is None else MailRelay.model_validate(value)


# Postfix's smtp_host_lookup values (postconf(5)): data mail_relay_lookup (roles/mail).
RELAY_LOOKUPS = ("dns", "native", "dns, native", "native, dns")


def relay_lookup_problems(label: str, field: str, value: Any) -> list[Problem]:
    if value is None or value in RELAY_LOOKUPS:
        return []
    return [Problem(label, field, f"one of {', '.join(map(repr, RELAY_LOOKUPS))}; got {value!r}")]


def admin_address_problems(label: str, field: str, value: Any) -> list[Problem]:
    """mail_admin: where the hosts' own mail (root's: update reports, cron) goes."""
    if value is None or (isinstance(value, str) and EMAIL_PATTERN.fullmatch(value)):
        return []
    return [Problem(label, field, f"an e-mail address like hosting@example.org, or None; got {value!r}")]


@dataclass(frozen=True)
class MailRoute:
    """Mail from `sender` goes through `relay`, logging in with the secret `password_secret`."""

    sender: str | None  # None: the default route, for every other sender
    relay: MailRelay
    password_secret: str


@dataclass(frozen=True)
class MailPlan:
    """What the Postfix of one host does with outgoing mail."""

    default: MailRoute | None  # None: no relay yet, mail waits in the queue
    by_sender: tuple[MailRoute, ...]  # associations with a relay of their own
    admin: str | None  # where root's mail goes

    @property
    def routes(self) -> tuple[MailRoute, ...]:
        return ((self.default,) if self.default else ()) + self.by_sender

    @property
    def secret_names(self) -> list[str]:
        return sorted({route.password_secret for route in self.routes})


def mail_plan(platform_relay: MailRelay | None, tenants: list[Tenant], admin: str | None) -> MailPlan:
    """The routes of a host for the associations whose apps run there."""
    default = MailRoute(None, platform_relay, MAIL_RELAY_SECRET) if platform_relay else None
    by_sender = tuple(MailRoute(t.mail_from, t.mail.relay, tenant_mail_relay_secret(t.slug))
                      for t in sorted(tenants, key=lambda t: t.slug) if t.mail.relay is not None)
    return MailPlan(default=default, by_sender=by_sender, admin=admin)


def mail_secret_problems(label: str, plan: MailPlan, store: Any) -> list[Problem]:
    """A relay password the store does not have: named, with the command that sets it."""
    if store is None:
        return []
    missing = [name for name in plan.secret_names if name not in store.names()]
    return [Problem(label, name, "the password of this mail relay in the secrets store: run "
                    f"`make secret-set NAME={name}` (docs/mail.md)") for name in missing]
