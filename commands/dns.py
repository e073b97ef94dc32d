"""`make dns [TENANT=<slug>]`: the DNS records each association must create at its registrar.

A and AAAA for every domain of its apps (inventory data public_ipv4, public_ipv6 of the host
that serves it), CAA for the ACME certificate authority, SPF for the relay of its sender's
domain, and a DMARC record to start with. Read from data only: no host and no DNS server is
asked anything. Exits 1 when something could not be known (named under MISSING).
"""

from __future__ import annotations

import argparse

from assotic.dns import association_records, zone_text
from assotic.mail import parse_relay
from assotic.preflight import load_inventory_like_pyinfra
from roles.tls.model import caa_issuer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", default="inventory/lab.py", help="pyinfra inventory file")
    parser.add_argument("--tenant", default=None, help="one association's slug (default: all)")


def expected_records(inventory_file: str, tenant_slug: str | None):
    """[(tenant, records, missing)] of each association (or the one slug), as `make dns`
    prints them; None when no association has that slug. `make dns-check` checks these."""
    inventory = load_inventory_like_pyinfra(inventory_file)
    hosts = {h.name: h for h in inventory}
    first = next(iter(hosts.values()))
    platform = first.data.platform
    tenants = [t for t in platform.tenants if tenant_slug in (None, t.slug)]
    if not tenants:
        return None
    addresses = {name: (h.data.get("public_ipv4"), h.data.get("public_ipv6")) for name, h in hosts.items()}
    result = []
    for tenant in tenants:
        served_by = next((hosts[a.host] for a in tenant.apps.enabled().values() if a.host in hosts), first)
        records, missing = association_records(
            tenant, addresses, caa_issuer(served_by.data),
            parse_relay(served_by.data.get("mail_relay")))
        if caa_issuer(served_by.data) is None:
            missing.append("no CAA record: the ACME server in use (acme_directory) is not a public "
                           "certificate authority; set acme_caa_issuer if it is one")
        result.append((tenant, records, missing))
    return result


def run(args: argparse.Namespace) -> int:
    expected = expected_records(args.inventory, args.tenant)
    if expected is None:
        print(f"assotic: no association {args.tenant!r} in this inventory")
        return 2
    for tenant, records, missing in expected:
        print(zone_text(tenant, records, missing))
    return 1 if any(missing for _, _, missing in expected) else 0
