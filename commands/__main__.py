"""Command line behind the Makefile: `python -m commands <command> ...`.

  check             validate an inventory and a tenants directory (no host is touched)
  schema            print the tenant JSON Schema
  secrets           manage the encrypted secrets store (init, list, show, set, rotate, reseal, rekey)
  restore           restore one association from its restic snapshots
  update            apply changed release pins: backup, upgrade, health check, rollback
  pins-fingerprint  print the sha256 of the release pins (touches no host)
  drill             restore drill of the latest snapshots onto a throw-away lab host
  backup-status     fail naming each backup job whose last success is missing or too old
  bbb-check         BBB and TURN health over SSH (read-only)
  audit             Lynis on every host, testssl.sh on every vhost; fail under a hardening index
  dns               the DNS records each association must create at its registrar
  dns-check         resolve those records and name each one missing or wrong

`python -m commands <command> --help` gives the options of one command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple


class Command(NamedTuple):
    """One subcommand: `add_arguments(parser)` fills its argparse parser and `run(args)`
    carries it out; without `add_arguments`, `run` gets the raw argument list (the secrets
    command parses its own: it must refuse a value given on the command line)."""

    module: str
    run: str = "run"
    add_arguments: str | None = "add_arguments"
    whole_doc: bool = False  # its --help describes it with the module's docstring, else its first paragraph


COMMANDS: dict[str, Command] = {
    "check": Command("commands.check", whole_doc=True),
    "schema": Command("assotic.tenants", run="print_json_schema", add_arguments=None),
    "secrets": Command("commands.secrets", add_arguments=None),
    "restore": Command("commands.restore"),
    "update": Command("commands.update"),
    "pins-fingerprint": Command("commands.update", run="run_pins_fingerprint",
                                add_arguments="add_fingerprint_arguments"),
    "drill": Command("commands.drill"),
    "backup-status": Command("commands.backup_status"),
    "bbb-check": Command("commands.bbb_check"),
    "audit": Command("commands.audit"),
    "dns": Command("commands.dns"),
    "dns-check": Command("commands.dns_check"),
}


def parser_of(name: str, command: Command, module) -> argparse.ArgumentParser:
    doc = module.__doc__ or ""
    description = doc if command.whole_doc else doc.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=f"python -m commands {name}", description=description)
    getattr(module, command.add_arguments)(parser)
    return parser


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"assotic: unknown command {name!r}\n{__doc__}", file=sys.stderr)
        return 2
    # Only the module of the command asked for is imported.
    module = importlib.import_module(command.module)
    run = getattr(module, command.run)
    if command.add_arguments is None:
        return run(rest)
    return run(parser_of(name, command, module).parse_args(rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
