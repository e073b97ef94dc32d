"""`make check`: load an inventory exactly as pyinfra does, which runs every preflight check.

No host is contacted and nothing is written: generated secrets that are missing
are listed, and will be created by the next deploy.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from assotic.preflight import Platform, load_inventory_like_pyinfra


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", default="inventory/lab.py", help="pyinfra inventory file")
    parser.add_argument("--tenants", default=None, help="directory of tenant files")


def run(args: argparse.Namespace) -> int:
    if not Path(args.inventory).is_file():
        print(f"assotic: {args.inventory}: inventory file not found", flush=True)
        return 2
    if args.tenants:
        os.environ["ASSOTIC_TENANTS_DIR"] = args.tenants
    inventory = load_inventory_like_pyinfra(args.inventory)
    first_host = next(iter(inventory))
    platform: Platform = first_host.data.platform
    hosts = ", ".join(h.name for h in inventory)
    print(f"assotic: {args.inventory} and {len(platform.tenants)} association(s) are valid "
          f"(hosts: {hosts}).")
    for tenant in platform.tenants:
        apps = ", ".join(f"{name} on {app.host}" for name, app in tenant.apps.enabled().items())
        print(f"  - {tenant.slug}: {apps}")
    for inst in platform.mattermost:
        teams = ", ".join(inst.tenants) or "no team yet"
        print(f"  - mattermost instance {inst.name}: {inst.domain} on {inst.host}, "
              f"127.0.0.1:{inst.port}, teams: {teams}")
    # Warnings do not stop a deploy (exit 0), but they are printed apart, where nobody misses them.
    if platform.warnings:
        print(f"assotic: {len(platform.warnings)} warning(s):")
        for warning in platform.warnings:
            print(f"  ! {warning}")
    if platform.new_secrets:
        print(f"assotic: {len(platform.new_secrets)} generated secret(s) are not in the store yet; "
              "the next deploy creates them.")
    return 0
