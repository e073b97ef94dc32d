"""`make bbb-check INVENTORY=...`: health of the BBB hosts of an inventory, over SSH.

For each host of group bbb: `bbb-conf --check`, and with dial-in the registration of the
SIP gateway (BBB's /opt/freeswitch/bin/fs_cli, `sofia status gateway <name>`, REGED when
registered; the ESL password read on the host, never on a command line: model.fs_cli_command). For each
host of group turn: `systemctl is-active coturn`. Read-only: it changes nothing. The
inventory is loaded as pyinfra loads it (preflight runs; nothing is written).

    python -m commands bbb-check inventory/<name>.py
"""

from __future__ import annotations

import argparse
import shlex
import subprocess

from assotic.preflight import REPO_ROOT, load_inventory_like_pyinfra
from commands.remote import ssh_argv, sudo_prefix
from roles.bbb.model import BbbSettings, gateway_status_command

TIMEOUT_S = 120


def host_commands(pyinfra_host) -> list[tuple[str, str]]:
    """(label, remote command) pairs for one host; sudo when the login is not root."""
    sudo = sudo_prefix(pyinfra_host)
    commands = []
    if "bbb" in pyinfra_host.groups:
        settings = BbbSettings.from_data(pyinfra_host.name, pyinfra_host.data)
        commands.append(("bbb-conf --check", f"{sudo}bbb-conf --check"))
        if settings.sip is not None:
            name = settings.sip.gateway_name
            commands.append((f"gateway {name}",
                             f"{sudo}sh -c {shlex.quote(gateway_status_command(settings.sip))}"))
    if "turn" in pyinfra_host.groups:
        commands.append(("coturn", f"{sudo}systemctl is-active coturn"))
    return commands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inventory", nargs="?", default="inventory/lab.py")


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory_like_pyinfra(args.inventory, REPO_ROOT)
    failures = 0
    checked = 0
    for pyinfra_host in inventory:
        for label, command in host_commands(pyinfra_host):
            checked += 1
            result = subprocess.run(ssh_argv(pyinfra_host) + [command], capture_output=True,
                                    text=True, timeout=TIMEOUT_S)
            ok = result.returncode == 0 and ("gateway" not in label or "REGED" in result.stdout)
            failures += not ok
            print(f"== {pyinfra_host.name}: {label}: {'ok' if ok else 'FAILED'}")
            print((result.stdout + result.stderr).rstrip())
    if checked == 0:
        print("bbb-check: no host of group bbb or turn in this inventory")
    return 1 if failures else 0

