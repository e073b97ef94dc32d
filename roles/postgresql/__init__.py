"""roles/postgresql: Debian's PostgreSQL, one database and one role per app instance.

PostgreSQL 15 on Debian 12, 17 on Debian 13. Each database is owned by its own role,
which also owns its `public` schema (since PostgreSQL 15, PUBLIC may no longer create
objects there); PUBLIC loses CONNECT and TEMPORARY on it, and pg_hba.conf lets each
role reach its own database only, with a SCRAM-SHA-256 password, from this host only.

Passwords come from the secrets store. The deploy computes the SCRAM-SHA-256 verifier
itself and compares it with the one PostgreSQL holds (re-derived with its salt and
iteration count), so a password is set only when it differs, and it is set from a
0600 file on /run (a tmpfs), read by psql on stdin and deleted at once: never on a
command line, never in pyinfra's output.

Knobs (host data, defaults in DEFAULTS): docs/backends.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from assotic.templating import template_environment
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server, systemd

from assotic.needs import Database
from roles.remote_files import put_text, reload_after

from .facts import PostgresState, parse_state

__all__ = [
    "DEFAULTS",
    "POSTGRESQL_VERSIONS",
    "pg_hba_lines",
    "postgresql",
    "postgresql_version",
    "role_sql",
    "scram_sha256_verifier",
    "verifier_matches",
]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "postgresql"
POSTGRESQL_VERSIONS = {12: "15", 13: "17"}
DEFAULTS = {
    "postgresql_max_connections": 100,
    "postgresql_shared_buffers": "128MB",
}
# PostgreSQL's own defaults for new verifiers (scram_iterations, 16-byte salt).
SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_environment = template_environment(TEMPLATES_DIR)


@dataclass(frozen=True)
class PgSettings:
    version: str
    max_connections: int = DEFAULTS["postgresql_max_connections"]
    shared_buffers: str = DEFAULTS["postgresql_shared_buffers"]

    @property
    def config_dir(self) -> str:
        return f"/etc/postgresql/{self.version}/main"

    @property
    def cluster_service(self) -> str:
        return f"postgresql@{self.version}-main"


# -- pure functions ---------------------------------------------------------------------


# What Debian's postgresql-common writes in each cluster's folder (pg_createcluster), 0644.
DEBIAN_CLUSTER_FILES = ("postgresql.conf", "pg_ctl.conf", "pg_ident.conf", "start.conf", "environment")
# The postgres account's home, its clusters inside; Debian makes it 0755.
POSTGRES_HOME = "/var/lib/postgresql"


def postgresql_version(debian_major: int) -> str:
    try:
        return POSTGRESQL_VERSIONS[int(debian_major)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"roles/postgresql: Debian {debian_major!r} is not supported") from None


def check_identifier(name: str, what: str) -> str:
    """Database and role names are used unquoted in pg_hba.conf and quoted in SQL: keep them plain."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{what} {name!r}: expected lowercase letters, digits and _, at most 63 characters")
    return name


def scram_sha256_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores in pg_authid.rolpassword (RFC 5802/7677).

    Only printable ASCII passwords are accepted: SASLprep leaves them unchanged, so this
    is exactly what PostgreSQL computes (generated secrets are URL-safe base64).
    """
    if not password or not all(32 <= ord(c) < 127 for c in password):
        raise ValueError("database passwords must be non-empty printable ASCII")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(password: str, role_state: dict | None) -> bool:
    """Does the role's stored verifier (as read by PostgresState) belong to this password?"""
    if not role_state or not role_state.get("salt") or not role_state.get("iterations"):
        return False
    try:
        salt = base64.b64decode(role_state["salt"], validate=True)
    except ValueError:
        return False
    expected = scram_sha256_verifier(password, salt, role_state["iterations"])
    return hmac.compare_digest(hashlib.sha256(expected.encode()).hexdigest(), role_state["sha256"])


def role_sql(role: str, verifier: str) -> str:
    """SQL creating or updating a login role with this verifier (the file psql reads on stdin)."""
    check_identifier(role, "role")
    if not verifier.startswith("SCRAM-SHA-256$") or "'" in verifier:
        raise ValueError("role_sql takes a SCRAM-SHA-256 verifier, never a password")
    return (
        "\\set ON_ERROR_STOP on\n"
        f"SELECT 'CREATE ROLE \"{role}\"' WHERE NOT EXISTS"
        f" (SELECT FROM pg_roles WHERE rolname = '{role}')\\gexec\n"
        f"ALTER ROLE \"{role}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
        f" PASSWORD '{verifier}';\n"
    )


def pg_hba_lines(databases: list[Database]) -> str:
    """/etc/postgresql/<v>/main/pg_hba.conf: each role reaches its own database only."""
    for database in databases:
        check_identifier(database.name, "database")
        check_identifier(database.owner, "role")
    return _environment.get_template("pg_hba.conf.j2").render(databases=databases)


def server_config(settings: PgSettings) -> str:
    return _environment.get_template("assotic.conf.j2").render(pg=settings)


def public_acl_entries(acl: str) -> list[str]:
    """Entries of a datacl ("{=Tc/postgres,x=CTc/x}") that grant something to PUBLIC."""
    return [entry for entry in acl.strip("{}").split(",") if entry.startswith("=")]


def database_ops_needed(database: Database, state: dict) -> list[str]:
    """What must be done for one database, given the host's PostgresState: pure, unit-tested."""
    current = state["databases"].get(database.name)
    needed = []
    if current is None or "owner" not in current:
        return ["create", "revoke_public", "own_public_schema"]
    if current["owner"] != database.owner:
        needed.append("set_owner")
    if not current.get("acl") or public_acl_entries(current["acl"]):
        needed.append("revoke_public")  # an empty datacl means the defaults: PUBLIC may connect
    if current.get("public_owner") != database.owner:
        needed.append("own_public_schema")
    return needed


# -- operations ---------------------------------------------------------------------------


def _psql(sql: str, database: str | None = None) -> str:
    target = f" -d {database}" if database else ""
    return f"runuser -u postgres -- psql -Xq -v ON_ERROR_STOP=1{target} -c '{sql}'"


@deploy("PostgreSQL", data_defaults=DEFAULTS)
def postgresql(databases: list[Database], platform_secrets: Any) -> None:
    """One role and one database per need; `platform_secrets`: the store (HostPlan.secrets)."""
    if not databases:
        host.noop("no database on this host: PostgreSQL is not installed")
        return
    names = [d.name for d in databases]
    if len(names) != len(set(names)):
        raise ValueError(f"roles/postgresql: duplicate databases in {names}")
    major = host.get_fact(LinuxDistribution)["major"]
    settings = PgSettings(
        version=postgresql_version(major),
        max_connections=int(host.data.postgresql_max_connections),
        shared_buffers=str(host.data.postgresql_shared_buffers),
    )

    apt.packages(name=f"Install PostgreSQL {settings.version}", packages=["postgresql"],
                 cache_time=86400, update=True)

    config_path, hba_path = f"{settings.config_dir}/conf.d/assotic.conf", f"{settings.config_dir}/pg_hba.conf"
    # Not world-readable, like Debian's files below: only PostgreSQL and root need them (Lynis DBS-1828).
    config = put_text(config_path, server_config(settings), user="postgres", group="postgres", mode="0640")
    for name in DEBIAN_CLUSTER_FILES:
        files.file(name=f"Set mode 0640 on {settings.config_dir}/{name}", path=f"{settings.config_dir}/{name}",
                   user="postgres", group="postgres", mode="0640")
    files.directory(name=f"Set mode 0750 on {POSTGRES_HOME}", path=POSTGRES_HOME, user="postgres",
                    group="postgres", mode="0750")
    hba = put_text(hba_path, pg_hba_lines(databases), user="postgres", group="postgres", mode="0640")
    systemd.service(name=f"Enable and start {settings.cluster_service}",
                    service=settings.cluster_service, running=True, enabled=True)
    # Both run again on the next deploy if this one was killed after the file changed.
    reload_after(f"Restart {settings.cluster_service}", f"systemctl restart {settings.cluster_service}",
                 [config], stamp=f"{settings.cluster_service}-config", covers=[config_path])
    reload_after(f"Reload {settings.cluster_service} (pg_hba.conf)",
                 f"systemctl reload-or-restart {settings.cluster_service}",
                 [hba], stamp=f"{settings.cluster_service}-hba", covers=[hba_path])

    # Read at prepare time: before the run, PostgreSQL may not be installed yet (first
    # deploy): then every role and database is created.
    state = host.get_fact(PostgresState) or parse_state([])
    for database in databases:
        role = check_identifier(database.owner, "role")
        name = check_identifier(database.name, "database")
        password = platform_secrets.get(database.password_secret)
        if not verifier_matches(password, state["roles"].get(role)) or not state["roles"][role]["login"]:
            verifier = scram_sha256_verifier(password, secrets.token_bytes(SCRAM_SALT_BYTES))
            sql_file = f"/run/assotic-pg-role-{role}.sql"
            files.put(name=f"Upload the password of role {role} (0600, tmpfs)",
                      src=StringIO(role_sql(role, verifier)), dest=sql_file,
                      user="root", group="root", mode="0600")
            server.shell(
                name=f"Create or update role {role}",
                commands=[f"runuser -u postgres -- psql -Xq < {sql_file}; rc=$?; rm -f {sql_file}; exit $rc"],
            )
        for step in database_ops_needed(database, state):
            if step == "create":
                server.shell(name=f"Create database {name}", commands=[
                    f"runuser -u postgres -- createdb --owner={role} --encoding=UTF8 --template=template0 {name}"])
            elif step == "set_owner":
                server.shell(name=f"Give database {name} to {role}",
                             commands=[_psql(f'ALTER DATABASE "{name}" OWNER TO "{role}"')])
            elif step == "revoke_public":
                server.shell(name=f"Revoke PUBLIC's access to database {name}",
                             commands=[_psql(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')])
            elif step == "own_public_schema":
                server.shell(name=f"Give schema public of {name} to {role}",
                             commands=[_psql(f'ALTER SCHEMA public OWNER TO "{role}"', database=name)])
