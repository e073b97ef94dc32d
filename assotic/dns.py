"""The DNS records each association must create at its registrar (`make dns`), from data only.

For every domain of its apps: A and AAAA to the public addresses of the host that serves it
(inventory data `public_ipv4`, `public_ipv6`), and CAA for the ACME certificate authority in
use. For the domain of its sender address (tenant `mail.from`): SPF for the relay that sends
its mail (relay data `spf`), and a DMARC record to start with (reports only, `p=none`).
What cannot be known from data is named, never guessed.

`make dns-check` resolves those same records and compares what it got with `compare_record`
(pure: the answers come in as text, commands/dns_check.py asks the DNS server).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from assotic.tenants import MailRelay, Tenant

__all__ = ["Record", "association_records", "zone_text", "TTL", "Check", "compare_record",
           "txt_text", "caa_fields", "OK", "MISSING", "WRONG"]

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


# --- make dns-check: what a DNS server answers, against the records above -------------------

OK, MISSING, WRONG = "ok", "MISSING", "WRONG"


@dataclass(frozen=True)
class Check:
    record: Record
    status: str  # OK, MISSING or WRONG
    got: str = ""  # what the server answered, for WRONG

    def line(self) -> str:
        where = f"{self.record.name} {self.record.type}"
        if self.status == OK:
            return f"ok       {where} {self.record.value}"
        if self.status == MISSING:
            return f"MISSING  {where}: expected {self.record.value}, the server has none"
        return f"WRONG    {where}: expected {self.record.value}, got {self.got}"


def txt_text(value: str) -> str:
    """The text of a TXT record as zone_line writes it: one quoted string."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def caa_fields(value: str) -> tuple[int, str, str]:
    """`0 issue "letsencrypt.org"` -> (0, "issue", "letsencrypt.org")."""
    flags, tag, rest = value.split(None, 2)
    return int(flags), tag.lower(), txt_text(rest)


def _txt_kind(text: str) -> str:
    """The version tag that tells SPF (v=spf1) and DMARC (v=DMARC1) from other TXT records."""
    return text.split(None, 1)[0].split(";", 1)[0].lower() if text.strip() else ""


def compare_record(record: Record, expected_values: list[str], answers: list | None) -> Check:
    """One record against the server's answers for its (name, type).

    `expected_values`: every value the records of that (name, type) should have (A and AAAA
    are compared as sets of addresses, IPv6 normalised). `answers`: None when the name or
    the type has no record; for A/AAAA the addresses, for TXT each record's strings joined,
    for CAA (flags, tag, value). TXT: only the answers of the record's kind (v=spf1 among
    the TXT records of a domain, v=DMARC1 at _dmarc) count, and exactly one must be the same.
    CAA: the `issue` records must be exactly the expected ones (other tags, iodef, are left).
    """
    if not answers:
        return Check(record, MISSING)
    if record.type in ("A", "AAAA"):
        want = {ipaddress.ip_address(v) for v in expected_values}
        got = set()
        for answer in answers:
            try:
                got.add(ipaddress.ip_address(answer))
            except ValueError:
                got.add(answer)
        shown = " ".join(sorted(str(a) for a in got))
        return Check(record, OK) if got == want else Check(record, WRONG, shown)
    if record.type == "TXT":
        want = txt_text(record.value)
        same_kind = [a for a in answers if _txt_kind(a) == _txt_kind(want)]
        if not same_kind:
            return Check(record, MISSING)
        if same_kind == [want]:
            return Check(record, OK)
        got = " ".join(f'"{a}"' for a in same_kind)
        return Check(record, WRONG, got + (" (more than one: receivers then ignore them all)"
                                           if len(same_kind) > 1 else ""))
    if record.type == "CAA":
        want = {caa_fields(v) for v in expected_values}
        issuers = {(f, t.lower(), v) for f, t, v in answers if t.lower() == "issue"}
        if not issuers:
            return Check(record, MISSING)
        shown = " ".join(f'{f} {t} "{v}"' for f, t, v in sorted(issuers))
        return Check(record, OK) if issuers == want else Check(record, WRONG, shown)
    raise ValueError(f"no comparison for {record.type} records")
