"""roles/mail: Debian's Postfix as a null client on every host (docs/mail.md).

The apps of the host (Nextcloud, Paheko, Mattermost, the stand-ins), the backup alerts and
the update reports hand their mail to Postfix on 127.0.0.1:25. Postfix accepts nothing from
outside (loopback only), delivers nothing locally, and relays every mail through an
authenticated submission server with a verified TLS certificate: the platform's relay
(data `mail_relay`), or an association's own for mail from its address (tenant
`mail.relay`). While a relay cannot be reached, mail waits in the queue (`mail_queue_lifetime`).

The relay passwords come from the secrets store into /etc/postfix/sasl_passwd (0600) and
its map (0600), written over SFTP: never on a command line or in pyinfra's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api import FactBase, deploy

from assotic.mail import RELAY_LOOKUPS, MailPlan, MailRoute
from assotic.templating import template_environment

__all__ = ["DEFAULTS", "MailSettings", "main_cf", "password_map_text",
           "sender_transport_text", "admin_map_text", "sender_canonical_text", "mail",
           "implicit_service_line", "implicit_service_commands",
           "PACKAGES", "settings_from", "stuck_mail", "MAIN_CF", "PASSWORD_MAP", "QUEUE_SPOOL"]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "mail"
POSTFIX_DIR = "/etc/postfix"
MAIN_CF = f"{POSTFIX_DIR}/main.cf"
MASTER_CF = f"{POSTFIX_DIR}/master.cf"
PASSWORD_MAP = f"{POSTFIX_DIR}/sasl_passwd"
SENDER_TRANSPORT_MAP = f"{POSTFIX_DIR}/assotic-sender-transport"
ADMIN_MAP = f"{POSTFIX_DIR}/assotic-admin"
SENDER_CANONICAL_MAP = f"{POSTFIX_DIR}/assotic-sender-canonical"
MAPS = (PASSWORD_MAP, SENDER_TRANSPORT_MAP, ADMIN_MAP, SENDER_CANONICAL_MAP)
QUEUE_SPOOL = "/var/spool/postfix"
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
RELAY_CA_FILE = f"{POSTFIX_DIR}/assotic-relay-ca.pem"
# The master.cf service for relays with TLS from the first byte (port 465).
IMPLICIT_TRANSPORT = "assotic-smtps"
# libsasl2-modules: the PLAIN and LOGIN mechanisms of Postfix's SASL client (without it,
# "no mechanism available"); bsd-mailx: `mail`, for sysadmins and cron.
PACKAGES = ["postfix", "libsasl2-modules", "bsd-mailx"]

DEFAULTS: dict[str, Any] = {
    "mail_relay": None,  # {host, port, tls, login}; password: secret mail/relay_password
    "mail_admin": None,  # who receives the hosts' own mail (root, cron, updates, backup alerts)
    "mail_host_from": None,  # the sender of the hosts' own mail; default: mail_admin
    "mail_queue_lifetime": "5d",  # how long a mail is retried before it bounces
    "mail_relay_ca": None,  # PEM of a private CA the relay's certificate is signed by (the lab)
    "mail_max_wait_minutes": 60,  # `make verify` names every mail waiting longer than this
    # How Postfix finds the relay's address (postconf(5) smtp_host_lookup): "dns", Postfix's
    # default; "native" (the system's resolver, /etc/hosts first) for a relay named only there,
    # as the lab's is.
    "mail_relay_lookup": "dns",
}


_environment = template_environment(TEMPLATES_DIR)


def _transport(route: MailRoute) -> str:
    """smtp:[host]:587 for STARTTLS, assotic-smtps:[host]:465 for implicit TLS."""
    service = IMPLICIT_TRANSPORT if route.relay.tls == "implicit" else "smtp"
    return f"{service}:{_nexthop(route)}"


def _nexthop(route: MailRoute) -> str:
    # Brackets: the relay's own address, no MX lookup.
    return f"[{route.relay.host}]:{route.relay.port}"


_environment.filters["transport"] = _transport


@dataclass(frozen=True)
class MailSettings:
    hostname: str
    plan: MailPlan
    queue_lifetime: str = DEFAULTS["mail_queue_lifetime"]
    host_from: str | None = None
    relay_ca: str | None = None  # PEM of a private CA (the lab's relay); None: the system's CAs
    relay_lookup: str = DEFAULTS["mail_relay_lookup"]
    implicit_transport: str = IMPLICIT_TRANSPORT
    password_map: str = PASSWORD_MAP
    sender_transport_map: str = SENDER_TRANSPORT_MAP
    admin_map: str = ADMIN_MAP
    sender_canonical_map: str = SENDER_CANONICAL_MAP

    @property
    def ca_file(self) -> str:
        return RELAY_CA_FILE if self.relay_ca else SYSTEM_CA_FILE


def settings_from(host_name: str, data: Any, plan: MailPlan) -> MailSettings:
    """The host's mail settings from its data (DEFAULTS) and its plan's routes."""
    def knob(name: str) -> Any:
        value = getattr(data, name, None)
        return DEFAULTS[name] if value is None else value

    return MailSettings(hostname=getattr(data, "mail_hostname", None) or host_name, plan=plan,
                        queue_lifetime=knob("mail_queue_lifetime"), host_from=knob("mail_host_from"),
                        relay_ca=knob("mail_relay_ca"), relay_lookup=_lookup(knob("mail_relay_lookup")))


def _lookup(value: Any) -> str:
    if value not in RELAY_LOOKUPS:
        raise ValueError(f"data mail_relay_lookup: expected one of {', '.join(map(repr, RELAY_LOOKUPS))}, "
                         f"got {value!r}")
    return value


# Reasons a relay gives that no retry cures: a wrong login or password, a sender it refuses.
LASTING_FAILURES = ("SASL authentication failed", "authentication failed", "Authentication failed",
                    "Sender address rejected", "certificate verification failed")


def stuck_mail(queue_json: str, now: float, max_age_s: int) -> list[str]:
    """The mails of `postqueue -j` that need a sysadmin: waiting longer than `max_age_s`, or
    deferred for a reason no retry cures (a bad relay password). One line each: queue id,
    sender, recipient, age and the relay's own words."""
    import json

    found = []
    for line in queue_json.splitlines():
        if not line.strip():
            continue
        mail = json.loads(line)
        age = int(now - mail.get("arrival_time", now))
        for recipient in mail.get("recipients") or [{}]:
            reason = recipient.get("delay_reason", "")
            if age > max_age_s or any(words in reason for words in LASTING_FAILURES):
                found.append(f"{mail.get('queue_id')} from {mail.get('sender') or '<>'} to "
                             f"{recipient.get('address', '?')}, waiting {age // 60} min: "
                             f"{reason or 'not tried yet'}")
    return found


def main_cf(settings: MailSettings) -> str:
    return _environment.get_template("main.cf.j2").render(mail=settings)


# The master.cf service for port 465 relays, written with Postfix's own editor (postconf -M/-P),
# so Debian's master.cf stays Debian's. Fields: type private unpriv chroot wakeup maxproc command.
IMPLICIT_SERVICE = f"{IMPLICIT_TRANSPORT} unix - - y - - smtp"
IMPLICIT_SERVICE_OPTIONS = ("smtp_tls_wrappermode=yes",)


def implicit_service_line() -> str:
    """The entry as `postconf -Mf` prints it, whitespace-normalised: what the fact compares."""
    return " ".join([*IMPLICIT_SERVICE.split(), *(f"-o {o}" for o in IMPLICIT_SERVICE_OPTIONS)])


def implicit_service_commands(config_dir: str | None = None) -> list[str]:
    """Replace the service as a whole: remove any old entry, add it, then its options."""
    service, postconf = f"{IMPLICIT_TRANSPORT}/unix", "postconf" + (f" -c {config_dir}" if config_dir else "")
    return [f"{postconf} -MX {service}", f"{postconf} -M {service}='{IMPLICIT_SERVICE}'",
            *(f"{postconf} -P {service}/{option}" for option in IMPLICIT_SERVICE_OPTIONS)]


class PostfixServiceEntry(FactBase):
    """A master.cf service as `postconf -Mf` prints it, whitespace-normalised ('' when absent)."""

    def command(self, service: str) -> str:
        return f"postconf -Mf {service} 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return " ".join(" ".join(output).split())


def password_map_text(plan: MailPlan, password_of) -> str:
    """sasl_passwd: `<key> <login>:<password>`, keyed by sender for an association's relay
    (smtp_sender_dependent_authentication) and by [host]:port for the platform's."""
    lines = ["# managed by assotic (roles/mail): relay logins, from the secrets store"]
    for route in plan.by_sender:
        lines.append(f"{route.sender} {route.relay.login}:{password_of(route.password_secret)}")
    if plan.default:
        lines.append(f"{_nexthop(plan.default)} {plan.default.relay.login}:"
                     f"{password_of(plan.default.password_secret)}")
    return "\n".join(lines) + "\n"


def sender_transport_text(plan: MailPlan) -> str:
    lines = ["# managed by assotic (roles/mail): mail from these senders takes their own relay"]
    lines += [f"{route.sender} {_transport(route)}" for route in plan.by_sender]
    return "\n".join(lines) + "\n"


def admin_map_text(settings: MailSettings) -> str:
    """Every local recipient of the host (root, cron's mail) goes to mail_admin."""
    lines = ["# managed by assotic (roles/mail): the host's own mail goes to the hosting team"]
    if settings.plan.admin:
        lines.append(f"@{settings.hostname} {settings.plan.admin}")
    return "\n".join(lines) + "\n"


def sender_canonical_text(settings: MailSettings) -> str:
    """root@<host> and the other local senders are rewritten to an address the relay accepts."""
    lines = ["# managed by assotic (roles/mail): the host's own mail is sent from this address"]
    sender = settings.host_from or settings.plan.admin
    if sender:
        lines.append(f"@{settings.hostname} {sender}")
    return "\n".join(lines) + "\n"


@deploy("Mail: Postfix null client")
def mail(settings: MailSettings, secrets: Any) -> None:
    """Install Postfix as a null client with this host's routes; reload it when a file changed."""
    from pyinfra import host
    from pyinfra.facts.deb import DebPackages
    from pyinfra.operations import apt, server

    from roles.prepared import enable_and_start
    from roles.remote_files import put_text, reload_after

    if "postfix" not in (host.get_fact(DebPackages) or {}):
        # "No configuration": the package writes no main.cf of its own and starts nothing
        # before ours is in place.
        server.shell(name="Preseed Postfix: no configuration of its own",
                     commands=["echo 'postfix postfix/main_mailer_type select No configuration' "
                               "| debconf-set-selections"])
    apt.packages(name="Install Postfix (null client)", packages=PACKAGES, no_recommends=True)

    changed = [put_text(MAIN_CF, main_cf(settings))]
    if host.get_fact(PostfixServiceEntry, service=f"{IMPLICIT_TRANSPORT}/unix") != implicit_service_line():
        changed.append(server.shell(name=f"Declare the {IMPLICIT_TRANSPORT} service in {MASTER_CF} (postconf -M)",
                                    commands=[" && ".join(implicit_service_commands())]))
    if settings.relay_ca:
        changed.append(put_text(RELAY_CA_FILE, settings.relay_ca))
    maps_changed = [
        put_text(PASSWORD_MAP, password_map_text(settings.plan, secrets.get), mode="0600"),
        put_text(SENDER_TRANSPORT_MAP, sender_transport_text(settings.plan)),
        put_text(ADMIN_MAP, admin_map_text(settings)),
        put_text(SENDER_CANONICAL_MAP, sender_canonical_text(settings)),
    ]
    # postmap writes <map>.db next to each map; the password map's stays root-only.
    reload_after("Build the Postfix maps",
                 " && ".join(f"postmap {m}" for m in MAPS) + f" && chmod 0600 {PASSWORD_MAP}.db",
                 maps_changed, stamp="postfix-maps", covers=MAPS)
    enable_and_start(["postfix.service"])
    reload_after("Reload Postfix", "postfix check && systemctl reload postfix",
                 changed + maps_changed, stamp="postfix-reload", covers=(MAIN_CF, MASTER_CF, *MAPS))
