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


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory_like_pyinfra(args.inventory)
    hosts = {h.name: h for h in inventory}
    first = next(iter(hosts.values()))
    platform = first.data.platform
    tenants = [t for t in platform.tenants if args.tenant in (None, t.slug)]
    if not tenants:
        print(f"assotic: no association {args.tenant!r} in this inventory")
        return 2
    addresses = {name: (h.data.get("public_ipv4"), h.data.get("public_ipv6")) for name, h in hosts.items()}
    missing_any = False
    for tenant in tenants:
        served_by = next((hosts[a.host] for a in tenant.apps.enabled().values() if a.host in hosts), first)
        records, missing = association_records(
            tenant, addresses, caa_issuer(served_by.data),
            parse_relay(served_by.data.get("mail_relay")))
        if caa_issuer(served_by.data) is None:
            missing.append("no CAA record: the ACME server in use (acme_directory) is not a public "
                           "certificate authority; set acme_caa_issuer if it is one")
        print(zone_text(tenant, records, missing))
        missing_any = missing_any or bool(missing)
    return 1 if missing_any else 0
