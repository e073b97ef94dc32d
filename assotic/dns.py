"""The DNS records each association must create at its registrar (`make dns`), from data only.

For every domain of its apps: A and AAAA to the public addresses of the host that serves it
(inventory data `public_ipv4`, `public_ipv6`), and CAA for the ACME certificate authority in
use. For the domain of its sender address (tenant `mail.from`): SPF for the relay that sends
its mail (relay data `spf`), and a DMARC record to start with (reports only, `p=none`).
What cannot be known from data is named, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from assotic.tenants import MailRelay, Tenant

__all__ = ["Record", "association_records", "zone_text", "TTL"]

TTL = 3600


@dataclass(frozen=True)
class Record:
    name: str  # fully qualified, without the final dot
    type: str  # A, AAAA, CAA, TXT
    value: str  # as written in a zone file
    why: str

    def zone_line(self) -> str:
        return f"{self.name}. {TTL} IN {self.type} {self.value}"


def association_records(tenant: Tenant, addresses: dict[str, tuple[str | None, str | None]],
                        caa_issuer: str | None, platform_relay: MailRelay | None
                        ) -> tuple[list[Record], list[str]]:
    """(records, what is missing) for one association. `addresses`: host -> (IPv4, IPv6)."""
    records: list[Record] = []
    missing: list[str] = []
    for app, domain in tenant.domains():
        host = tenant.apps.enabled()[app].host
        ipv4, ipv6 = addresses.get(host, (None, None))
        if ipv4:
            records.append(Record(domain, "A", ipv4, f"{app} on {host}"))
        if ipv6:
            records.append(Record(domain, "AAAA", ipv6, f"{app} on {host}"))
        if not ipv4 and not ipv6:
            missing.append(f"{domain} ({app}): host {host} has no public_ipv4 nor public_ipv6 in "
                           "the inventory")
        if caa_issuer:
            records.append(Record(domain, "CAA", f'0 issue "{caa_issuer}"',
                                  "only this certificate authority may issue for it (ACME)"))
    sender_domain = tenant.mail_from.split("@", 1)[1]
    relay = tenant.mail.relay or platform_relay
    if relay is None:
        missing.append(f"{sender_domain}: no mail relay in data (mail_relay), so no SPF record")
    elif not relay.spf:
        missing.append(f"{sender_domain}: the relay {relay.host} has no `spf` in data: ask its "
                       "provider for its SPF mechanism (often include:...)")
    else:
        records.append(Record(sender_domain, "TXT", f'"v=spf1 {relay.spf} -all"',
                              f"mail from {tenant.mail_from} is sent by {relay.host}"))
    records.append(Record(f"_dmarc.{sender_domain}", "TXT",
                          f'"v=DMARC1; p=none; rua=mailto:{tenant.mail_reply_to}"',
                          "a start: reports only; move to p=quarantine once they are clean"))
    return records, missing


def zone_text(tenant: Tenant, records: list[Record], missing: list[str]) -> str:
    """One association's records as zone-file lines, each with its reason."""
    lines = [f"; {tenant.name} ({tenant.slug}): records to create at its registrar"]
    for record in records:
        lines.append(f"{record.zone_line()}  ; {record.why}")
    lines += [f"; MISSING: {text}" for text in missing]
    return "\n".join(lines) + "\n"
