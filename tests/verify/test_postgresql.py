"""What roles/postgresql promises: one database and role per instance, reachable by that role only.

Passwords are read from the secrets store and reach the host in the environment of
one command (PGPASSWORD), never in an assertion message.
"""

from __future__ import annotations

import itertools
import shlex

import pytest

from roles import postgresql

pytestmark = pytest.mark.hosts_in("web")


@pytest.fixture(scope="module")
def databases(needs):
    found = needs.databases
    if not found:
        pytest.skip("no database on this host")
    return found


@pytest.fixture(scope="module")
def version(host):
    major = int(host.check_output(". /etc/os-release && echo $VERSION_ID").split(".")[0])
    return postgresql.postgresql_version(major)


def as_postgres(host, sql: str, database: str = "postgres") -> str:
    return host.check_output(f"runuser -u postgres -- psql -XAtq -d {database} -c {shlex.quote(sql)}")


def connect(host, data, role: str, database: str, secret: str, sql: str = "SELECT 1") -> tuple[int, str]:
    """(rc, stderr) of `role` connecting to `database` over TCP 127.0.0.1 with its password."""
    password = data.platform.secrets.get(secret)
    result = host.run(f"PGPASSWORD={shlex.quote(password)} psql -XAtq -h 127.0.0.1 -U {role}"
                      f" -d {database} -c {shlex.quote(sql)}")
    return result.rc, result.stderr.replace(password, "***")


def test_postgresql_is_running_and_enabled(host, databases, version):
    service = host.service(f"postgresql@{version}-main")
    assert service.is_running and service.is_enabled


def test_postgresql_listens_on_loopback_only(host, databases):
    listeners = host.check_output("ss -Hltn 'sport = :5432'").splitlines()
    addresses = [line.split()[3].rsplit(":", 1)[0].strip("[]") for line in listeners]
    assert addresses and all(a in ("127.0.0.1", "::1") for a in addresses), addresses


def test_passwords_are_scram(host, databases):
    assert as_postgres(host, "SHOW password_encryption") == "scram-sha-256"
    names = ",".join(f"'{d.owner}'" for d in databases)
    hashes = as_postgres(host, f"SELECT rolname FROM pg_authid WHERE rolname IN ({names})"
                               " AND rolpassword NOT LIKE 'SCRAM-SHA-256$%'")
    assert hashes == ""


def test_pg_hba_is_as_rendered_and_loaded_without_error(host, databases, version):
    f = host.file(f"/etc/postgresql/{version}/main/pg_hba.conf")
    assert (f.user, f.group, f.mode) == ("postgres", "postgres", 0o640)
    assert f.content_string == postgresql.pg_hba_lines(databases)
    assert as_postgres(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def test_each_database_belongs_to_its_role_with_its_public_schema(host, databases):
    for database in databases:
        owner = as_postgres(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database.name}'")
        assert owner == database.owner
        schema_owner = as_postgres(host, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace"
                                         " WHERE nspname = 'public'", database=database.name)
        assert schema_owner == database.owner
        acl = as_postgres(host, f"SELECT datacl FROM pg_database WHERE datname = '{database.name}'")
        assert acl and postgresql.public_acl_entries(acl) == [], acl
        flags = as_postgres(host, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles"
                                  f" WHERE rolname = '{database.owner}'")
        assert flags == "f|f|f"


def test_each_role_reaches_its_database_and_can_create_tables(host, data, databases):
    sql = "CREATE TABLE assotic_verify (x int); DROP TABLE assotic_verify"
    for database in databases:
        rc, err = connect(host, data, database.owner, database.name, database.password_secret, sql)
        assert rc == 0, f"{database.owner}: {err}"


def test_a_role_is_refused_on_another_database(host, data, databases):
    if len(databases) < 2:
        pytest.skip("one database on this host: nothing to cross")
    for a, b in itertools.permutations(databases, 2):
        rc, err = connect(host, data, a.owner, b.name, a.password_secret)
        assert rc != 0 and "pg_hba.conf" in err, f"{a.owner} on {b.name}: {err}"


def test_a_wrong_password_is_refused(host, data, databases):
    database = databases[0]
    result = host.run(f"PGPASSWORD=not-the-password psql -XAtq -h 127.0.0.1 -U {database.owner}"
                      f" -d {database.name} -c 'SELECT 1'")
    assert result.rc != 0 and "password authentication failed" in result.stderr
