"""What roles/postgresql reads from a host: roles, databases and public schema owners."""

from __future__ import annotations

from pyinfra.api import FactBase

# One line per item, fields separated by '|':
#   role|<name>|<iterations>:<salt>|<sha256 of rolpassword>|<can login t/f>|<superuser t/f>
#   db|<name>|<owner>|<datacl or empty>
#   schema|<database>|<owner of its public schema>
# rolpassword itself never leaves the host: its SHA-256 is enough to compare it with
# the verifier the deploy derives again from the same salt and iteration count.
# chr(36) is '$', kept out of the shell command.
_ROLES_SQL = (
    "SELECT 'role', rolname, split_part(COALESCE(rolpassword, ''), chr(36), 2),"
    " encode(sha256(convert_to(COALESCE(rolpassword, ''), 'UTF8')), 'hex'),"
    " rolcanlogin, rolsuper FROM pg_authid ORDER BY 1, 2"
)
_DATABASES_SQL = (
    "SELECT 'db', datname, pg_get_userbyid(datdba), COALESCE(datacl::text, '')"
    " FROM pg_database WHERE NOT datistemplate ORDER BY 2"
)
_SCHEMA_SQL = (
    "SELECT 'schema', current_database(), pg_get_userbyid(nspowner)"
    " FROM pg_namespace WHERE nspname = 'public'"
)
_PSQL = "runuser -u postgres -- psql -XAtq -F '|'"


class PostgresState(FactBase[dict]):
    """{"roles": {name: {...}}, "databases": {name: {...}}}; empty when PostgreSQL is not running."""

    def command(self) -> str:
        return (
            f"if command -v psql >/dev/null && {_PSQL} -c 'SELECT 1' >/dev/null 2>&1; then "
            f"{_PSQL} -c \"{_ROLES_SQL}\" && {_PSQL} -c \"{_DATABASES_SQL}\" && "
            f"for db in $({_PSQL} -c \"SELECT datname FROM pg_database"
            f" WHERE datallowconn AND NOT datistemplate\"); do "
            f"{_PSQL} -d \"$db\" -c \"{_SCHEMA_SQL}\" || exit 1; done; fi"
        )

    def process(self, output: list[str]) -> dict:
        return parse_state(output)


def parse_state(lines: list[str]) -> dict:
    state: dict = {"roles": {}, "databases": {}}
    for line in lines:
        fields = line.strip().split("|")
        if fields[0] == "role" and len(fields) == 6:
            _, name, salt, digest, login, superuser = fields
            iterations, _, salt = salt.partition(":")
            state["roles"][name] = {
                "iterations": int(iterations) if iterations.isdigit() else None,
                "salt": salt or None,
                "sha256": digest,
                "login": login == "t",
                "superuser": superuser == "t",
            }
        elif fields[0] == "db" and len(fields) == 4:
            _, name, owner, acl = fields
            state["databases"].setdefault(name, {}).update(owner=owner, acl=acl)
        elif fields[0] == "schema" and len(fields) == 3:
            _, name, owner = fields
            state["databases"].setdefault(name, {})["public_owner"] = owner
    return state
