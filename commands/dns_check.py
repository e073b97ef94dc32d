"""`make dns-check [TENANT=<slug>] [DNS_SERVER=host:port]`: resolve the records of `make dns`.

The expected records are those `make dns` prints (commands/dns.py, from data). Each one is
asked of the DNS server given with --server (an IP address, port 53 unless given: UDP, then
TCP when the answer is truncated), else of this machine's resolver, and nothing else. Each
record is reported ok, MISSING (no such name or no record of that type) or WRONG (expected
and got). Exits 0 when all are ok, 1 when one is missing or wrong or the server does not
answer, 2 on bad input.
"""

from __future__ import annotations

import argparse
import ipaddress

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from assotic.dns import OK, Record, compare_record
from commands.dns import expected_records

# Per query: each try waits this long, and a query gives up after TRIES tries, so a server
# that does not answer stops the check after QUERY_TIMEOUT * TRIES seconds.
QUERY_TIMEOUT = 3.0
TRIES = 2


class BadServer(ValueError):
    pass


def parse_server(text: str) -> tuple[str, int]:
    """`192.0.2.53`, `127.0.0.1:5353`, `[2001:db8::53]:53` -> (address, port). An address,
    not a name: resolving a name would ask another server first."""
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise BadServer(f"--server {text!r}: expected [IPv6]:PORT")
        port = rest[1:] if rest else "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise BadServer(f"--server {text!r}: expected an IP address, optionally with :PORT "
                        "(e.g. 127.0.0.1:5353 or [::1]:53), not a name") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise BadServer(f"--server {text!r}: the port must be a number from 1 to 65535")
    return str(address), int(port)


def make_resolver(server: tuple[str, int] | None) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=server is None)
    if server is not None:
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.timeout = QUERY_TIMEOUT
    resolver.lifetime = QUERY_TIMEOUT * TRIES
    resolver.cache = None
    return resolver


class ServerSilent(Exception):
    """The server did not answer in time: the next question would wait as long, for nothing."""


class Refused(Exception):
    """The server answered, but with an error (SERVFAIL, REFUSED): that record is unchecked."""


def answers_of(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list | None:
    """The server's records of (name, type) as compare_record wants them; None when none."""
    try:
        answer = resolver.resolve(dns.name.from_text(name), rdtype, search=False,
                                  raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.exception.Timeout:
        raise ServerSilent(f"no answer within {resolver.lifetime:g} s") from None
    except dns.resolver.NoNameservers as err:
        raise Refused(str(err)) from None
    if answer.rrset is None:
        return None
    if rdtype == "TXT":
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]
    if rdtype == "CAA":
        return [(r.flags, r.tag.decode(), r.value.decode()) for r in answer.rrset]
    return [r.to_text() for r in answer.rrset]


def check_records(resolver: dns.resolver.Resolver, records: list[Record]):
    """Each record in turn, even after a missing or wrong one: its Check, or a line saying
    why it could not be checked. Raises ServerSilent when the server does not answer."""
    for record in records:
        same = [r.value for r in records if (r.name, r.type) == (record.name, record.type)]
        try:
            yield compare_record(record, same, answers_of(resolver, record.name, record.type))
        except Refused as err:
            yield f"UNCHECKED {record.name} {record.type}: {err}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", default="inventory/lab.py", help="pyinfra inventory file")
    parser.add_argument("--tenant", default=None, help="one association's slug (default: all)")
    parser.add_argument("--server", default=None, metavar="ADDRESS[:PORT]",
                        help="the DNS server to ask, and no other (default: this machine's resolver)")


def run(args: argparse.Namespace) -> int:
    try:
        server = parse_server(args.server) if args.server else None
    except BadServer as err:
        print(f"assotic: {err}")
        return 2
    expected = expected_records(args.inventory, args.tenant)
    if expected is None:
        print(f"assotic: no association {args.tenant!r} in this inventory")
        return 2
    resolver = make_resolver(server)
    asked = f"{server[0]} port {server[1]}" if server else "this machine's resolver"
    failed = 0
    for tenant, records, missing in expected:
        print(f"; {tenant.name} ({tenant.slug}): asked {asked}")
        try:
            for result in check_records(resolver, records):
                print(result if isinstance(result, str) else result.line(), flush=True)
                failed += isinstance(result, str) or result.status != OK
        except ServerSilent as err:
            print(f"assotic: the DNS server ({asked}) did not answer: {err}; nothing more was checked")
            return 1
        for text in missing:  # what `make dns` could not tell cannot be checked either
            print(f"; not checked (not in data): {text}")
        print()
    print(f"assotic: {failed} record(s) missing, wrong or unchecked" if failed else "assotic: every record is ok")
    return 1 if failed else 0
