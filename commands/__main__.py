"""Command line behind the Makefile: `python -m commands <command> ...`.

  check    validate an inventory and a tenants directory (no host is touched)
  schema   print the tenant JSON Schema
  secrets  manage the encrypted secrets store (init, list, show, set, rotate)
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "check":
        from commands.check import run
    elif command == "schema":
        from assotic.tenants import print_json_schema as run
    elif command == "secrets":
        from commands.secrets import run
    else:
        print(f"assotic: unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
