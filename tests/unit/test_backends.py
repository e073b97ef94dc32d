"""The backend roles' pure functions (roles/php, postgresql, redis, timers): no host needed."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from assotic.needs import AppInstance, Database, PhpPool, RedisInstance, Timer
from assotic.preflight import generated_secret_names
from assotic.tenants import load_tenants
from roles import php, postgresql, redis, timers
from roles.plan import plan_host
from roles.postgresql.facts import parse_state

EXAMPLES = Path(__file__).resolve().parents[2] / "group_data" / "tenants"
ULAP_NC = AppInstance("ulap", "nextcloud")
ULAP_PAHEKO = AppInstance("ulap", "paheko")
PHP82 = php.PhpSettings(version="8.2")


@pytest.fixture(scope="module")
def tenants():
    loaded, problems = load_tenants(EXAMPLES)
    assert problems == []
    return [t for _, t in loaded]


# -- roles/php ------------------------------------------------------------------------------


@pytest.mark.parametrize(("major", "version"), [(12, "8.2"), (13, "8.4"), ("12", "8.2")])
def test_php_version_follows_debian(major, version):
    assert php.php_version(major) == version


def test_php_version_refuses_unknown_release():
    with pytest.raises(ValueError, match="Debian 11"):
        php.php_version(11)


def test_pool_is_ondemand_with_its_own_socket_dirs_and_basedir():
    pool = PhpPool(ULAP_NC, code_dirs=("/opt/assotic/nextcloud-31",), max_children=6, idle_timeout_s=20)
    text = php.pool_config(pool, PHP82)
    assert text.startswith("; nextcloud_ulap") and "\n[nextcloud_ulap]\n" in text
    for line in (
        "user = nextcloud_ulap", "group = nextcloud_ulap",
        "listen = /run/php/assotic-nextcloud_ulap.sock",
        "listen.owner = nextcloud_ulap", "listen.group = www-data", "listen.mode = 0660",
        "pm = ondemand", "pm.max_children = 6", "pm.process_idle_timeout = 20s",
        "php_admin_value[open_basedir] = /srv/assotic/ulap/nextcloud:/opt/assotic/nextcloud-31",
        "php_admin_value[upload_tmp_dir] = /srv/assotic/ulap/nextcloud/tmp",
        "php_admin_value[sys_temp_dir] = /srv/assotic/ulap/nextcloud/tmp",
        "php_admin_value[session.save_path] = /srv/assotic/ulap/nextcloud/sessions",
        "php_admin_value[opcache.restrict_api] = /opt/assotic/nextcloud-31",
        "php_admin_value[apc.enabled] = 0",
        "env[TMPDIR] = /srv/assotic/ulap/nextcloud/tmp",
    ):
        assert f"\n{line}\n" in text, line
    assert "pm = dynamic" not in text and "pm.start_servers" not in text


def test_pool_admin_values_override_ours_once():
    pool = PhpPool(ULAP_NC, code_dirs=(), admin_values=(("apc.enabled", "1"), ("memory_limit", "1G")),
                   env=(("PAHEKO_CONFIG_FILE", "/srv/x/config.local.php"),))
    text = php.pool_config(pool, PHP82)
    assert text.count("php_admin_value[apc.enabled]") == 1 and "php_admin_value[apc.enabled] = 1\n" in text
    assert "php_admin_value[memory_limit] = 1G\n" in text
    assert "env[PAHEKO_CONFIG_FILE] = /srv/x/config.local.php\n" in text


@pytest.mark.parametrize("pool", [
    PhpPool(ULAP_NC, code_dirs=("relative/code",)),
    PhpPool(ULAP_NC, code_dirs=("/a:/b",)),
    PhpPool(ULAP_NC, code_dirs=(), env=(("BAD NAME", "x"),)),
    PhpPool(ULAP_NC, code_dirs=(), admin_values=(("x", "a\nb"),)),
    PhpPool(ULAP_NC, code_dirs=(), max_children=0),
])
def test_bad_pools_are_refused(pool):
    with pytest.raises(ValueError, match="nextcloud_ulap"):
        php.pool_config(pool, PHP82)


def test_pool_files_live_in_the_versions_pool_dir():
    assert php.pool_file(PhpPool(ULAP_NC, ()), php.PhpSettings(version="8.4")) == \
        "/etc/php/8.4/fpm/pool.d/assotic-nextcloud_ulap.conf"


def test_ini_files_carry_nextclouds_opcache_and_apcu_settings():
    fpm = php.fpm_ini(PHP82)
    for line in ("opcache.enable = 1", "opcache.save_comments = 1", "opcache.interned_strings_buffer = 32",
                 "opcache.memory_consumption = 256", "opcache.validate_permission = 1"):
        assert f"\n{line}\n" in fpm, line
    assert "\napc.enable_cli = 1\n" in php.cli_ini(PHP82)


def test_settings_take_knobs_from_host_data():
    settings = php.PhpSettings.from_data({"php_opcache_memory_consumption": 128,
                                          "php_extra_packages": ["php8.2-gd"]}, "8.2")
    assert settings.opcache_memory_consumption == 128
    assert settings.packages()[:3] == ["php8.2-fpm", "php8.2-cli", "php8.2-opcache"]
    assert "php8.2-gd" in settings.packages()


def test_extensions_the_pools_ask_for_become_debian_packages():
    packages = php.PhpSettings.from_data({}, "8.4").packages(["pgsql", "redis", "pgsql", "intl"])
    assert [p for p in packages if p.endswith(("pgsql", "redis", "intl"))] == \
        ["php8.4-intl", "php8.4-pgsql", "php-redis"]


# -- roles/postgresql -------------------------------------------------------------------------

# Made by PostgreSQL 15 (Debian 12): CREATE ROLE ... PASSWORD 'correct horse battery staple'.
PG_VERIFIER = ("SCRAM-SHA-256$4096:VvzLJvGIGSyddAZbP8GEuQ==$zsVm+bI2RLdqJrqdwSwB7xz17O4i3qmkZwAn3K1ZY34="
               ":P/DqrIY0hxTd7WruGnI1LkgpHt2MvE6SkxqcY5mRy2Q=")
PG_PASSWORD = "correct horse battery staple"


def test_scram_verifier_is_the_one_postgresql_computes():
    salt = base64.b64decode("VvzLJvGIGSyddAZbP8GEuQ==")
    assert postgresql.scram_sha256_verifier(PG_PASSWORD, salt, 4096) == PG_VERIFIER


def fact_of(verifier: str, login: bool = True) -> dict:
    """What PostgresState reports for a role: salt, iterations and a SHA-256, not the verifier."""
    line = "role|r|{}|{}|{}|f".format(verifier.split("$")[1], hashlib.sha256(verifier.encode()).hexdigest(),
                                     "t" if login else "f")
    return parse_state([line])["roles"]["r"]


def test_verifier_matches_only_the_right_password():
    assert postgresql.verifier_matches(PG_PASSWORD, fact_of(PG_VERIFIER))
    assert not postgresql.verifier_matches("another password", fact_of(PG_VERIFIER))
    assert not postgresql.verifier_matches(PG_PASSWORD, None)
    assert not postgresql.verifier_matches(PG_PASSWORD, parse_state(["role|r||abc|t|f"])["roles"]["r"])


def test_verifier_refuses_non_ascii_and_empty_passwords():
    for bad in ("", "mot de passe é", "tab\there"):
        with pytest.raises(ValueError):
            postgresql.scram_sha256_verifier(bad, b"0" * 16)


def test_role_sql_takes_a_verifier_never_a_password():
    sql = postgresql.role_sql("paheko_ulap", PG_VERIFIER)
    assert f"PASSWORD '{PG_VERIFIER}'" in sql and PG_PASSWORD not in sql
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in sql and "ON_ERROR_STOP" in sql
    with pytest.raises(ValueError):
        postgresql.role_sql("paheko_ulap", PG_PASSWORD)
    with pytest.raises(ValueError):
        postgresql.role_sql('x"; DROP', PG_VERIFIER)


def test_pg_hba_lets_each_role_reach_its_own_database_only():
    text = postgresql.pg_hba_lines([Database("nextcloud_ulap", "nextcloud_ulap", "s"),
                                    Database("paheko_ulap", "paheko_ulap", "s")])
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules[0] == ["local", "all", "postgres", "peer"]
    allowed = [r for r in rules if r[-1] == "scram-sha-256"]
    assert all(r[1] == r[2] for r in allowed)  # database == its own role
    assert {r[1] for r in allowed} == {"nextcloud_ulap", "paheko_ulap"}
    assert {tuple(r[3:4]) for r in allowed if r[0] == "host"} == {("127.0.0.1/32",), ("::1/128",)}
    assert rules[-2:] == [["local", "all", "all", "reject"], ["host", "all", "all", "all", "reject"]]
    assert not any(r[-1] in ("trust", "md5", "password") for r in rules)


def test_pg_hba_refuses_strange_names():
    with pytest.raises(ValueError):
        postgresql.pg_hba_lines([Database("all", "x y", "s")])


def test_database_steps_from_the_hosts_state():
    db = Database("paheko_ulap", "paheko_ulap", "s")
    empty = parse_state([])
    assert postgresql.database_ops_needed(db, empty) == ["create", "revoke_public", "own_public_schema"]
    fresh = parse_state(["db|paheko_ulap|paheko_ulap|", "schema|paheko_ulap|pg_database_owner"])
    assert postgresql.database_ops_needed(db, fresh) == ["revoke_public", "own_public_schema"]
    done = parse_state(["db|paheko_ulap|paheko_ulap|{paheko_ulap=CTc/paheko_ulap}",
                        "schema|paheko_ulap|paheko_ulap"])
    assert postgresql.database_ops_needed(db, done) == []
    public = parse_state(["db|paheko_ulap|postgres|{=Tc/postgres,postgres=CTc/postgres}",
                          "schema|paheko_ulap|paheko_ulap"])
    assert postgresql.database_ops_needed(db, public) == ["set_owner", "revoke_public"]


@pytest.mark.parametrize(("major", "version"), [(12, "15"), (13, "17")])
def test_postgresql_version_follows_debian(major, version):
    assert postgresql.postgresql_version(major) == version


# -- roles/redis ----------------------------------------------------------------------------


def test_redis_config_socket_only_no_persistence_hashed_password():
    instance = RedisInstance(ULAP_NC, password_secret="tenants/ulap/nextcloud/redis_password")
    text = redis.redis_config(instance, "s3cret-pw")
    lines = set(text.splitlines())
    assert {"port 0", "unixsocket /run/assotic-redis/nextcloud_ulap/redis.sock", "unixsocketperm 660",
            'save ""', "appendonly no", "maxmemory 16mb", "user default off"} <= lines
    assert "s3cret-pw" not in text
    assert f"#{hashlib.sha256(b's3cret-pw').hexdigest()}" in text
    assert "bind" not in text


def test_redis_config_refuses_bad_values():
    with pytest.raises(ValueError):
        redis.redis_config(RedisInstance(ULAP_NC, "s", maxmemory="lots"), "pw")
    with pytest.raises(ValueError):
        redis.redis_config(RedisInstance(ULAP_NC, "s"), "")


def test_redis_unit_runs_as_the_instance_user_with_its_runtime_dir():
    unit = redis.redis_unit(redis.RedisSettings())
    for line in ("User=%i", "Group=%i", "Type=notify", "RuntimeDirectory=assotic-redis/%i",
                 "RuntimeDirectoryMode=0750", "ExecStart=/usr/bin/redis-server /etc/assotic-redis/%i.conf",
                 "RestrictAddressFamilies=AF_UNIX", "PrivateNetwork=yes", "MemoryMax=64M"):
        assert line in unit.splitlines(), line
    assert redis.unit_name(RedisInstance(ULAP_NC, "s")) == "assotic-redis@nextcloud_ulap.service"


# -- roles/timers ---------------------------------------------------------------------------


def test_timer_units():
    timer = Timer(unit="assotic-paheko-cron-ulap", description="Paheko cron of ulap", user="paheko_ulap",
                  command=("/usr/bin/php", "/opt/paheko/bin/cron.php", "--root=/srv/assotic/ulap/paheko"),
                  on_calendar="*:0/5", working_directory="/srv/assotic/ulap/paheko",
                  environment=(("PAHEKO_ROOT", "/srv/assotic/ulap/paheko"),),
                  writable_paths=("/srv/assotic/ulap/paheko",))
    service, timer_text = timers.timer_units(timer)
    for line in ("Type=oneshot", "User=paheko_ulap", "Group=paheko_ulap",
                 "WorkingDirectory=/srv/assotic/ulap/paheko",
                 "Environment=PAHEKO_ROOT=/srv/assotic/ulap/paheko",
                 "ExecStart=/usr/bin/php /opt/paheko/bin/cron.php --root=/srv/assotic/ulap/paheko",
                 "PrivateTmp=yes", "ProtectSystem=strict", "ReadWritePaths=/srv/assotic/ulap/paheko",
                 "NoNewPrivileges=yes", "CapabilityBoundingSet="):
        assert line in service.splitlines(), line
    assert service.splitlines()[0] == timers.MARKER == timer_text.splitlines()[0]
    for line in ("OnCalendar=*:0/5", "Persistent=true", "Unit=assotic-paheko-cron-ulap.service",
                 "WantedBy=timers.target"):
        assert line in timer_text.splitlines(), line
    assert "RandomizedDelaySec" not in timer_text


@pytest.mark.parametrize(("argument", "quoted"), [
    ("/usr/bin/touch", "/usr/bin/touch"),
    ("a b", '"a b"'),
    ("100%", '"100%%"'),
    ("$HOME", '"$$HOME"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("", '""'),
])
def test_systemd_quote(argument, quoted):
    assert timers.systemd_quote(argument) == quoted


@pytest.mark.parametrize("timer", [
    Timer("paheko-cron", "d", "u", ("/bin/true",), "daily"),  # no assotic- prefix
    Timer("assotic-x", "d", "u", ("true",), "daily"),  # relative command
    Timer("assotic-x", "d", "u", (), "daily"),
    Timer("assotic-x", "d", "u", ("/bin/true",), "daily\nExecStartPre=/bin/sh"),
    Timer("assotic-x", "d", "u", ("/bin/true",), "daily", environment=(("A B", "x"),)),
])
def test_bad_timers_are_refused(timer):
    with pytest.raises(ValueError):
        timers.timer_units(timer)


# -- the example tenants, planned as deploy.py plans them (no release here: stand-ins) ------


def test_host_plan_for_the_examples(lab_host_data):
    data = lab_host_data
    plan = plan_host("web-1", data, ["web"], "12")
    web1 = plan.needs
    assert [(p.app, p.tenant.slug, p.release) for p in plan.apps] == [("nextcloud", "ulap", None),
                                                                 ("paheko", "ulap", None)]
    assert [p.instance.user for p in web1.pools] == ["nextcloud_ulap", "paheko_ulap"]
    assert [r.instance.user for r in web1.redis] == ["nextcloud_ulap"]  # Mattermost gets none
    assert [d.password_secret for d in web1.databases] == ["tenants/ulap/nextcloud/db_password"]
    assert {i.user for i in plan_host("web-2", data, ["web"], "12").instances} == {"nextcloud_toitcommun", "paheko_toitcommun",
                                                     "nextcloud_zerodechet", "paheko_zerodechet"}


@pytest.mark.parametrize("host_name", ["web-1", "web-2"])
def test_every_example_renders(lab_host_data, host_name):
    """Each backend file of each example need renders, and names that need (not another's)."""
    needs = plan_host(host_name, lab_host_data, ["web"], "12").needs
    assert needs.pools and needs.databases and needs.redis and needs.timers  # nothing skipped unseen
    for pool in needs.pools:
        user = pool.instance.user
        for version in php.PHP_VERSIONS.values():
            text = php.pool_config(pool, php.PhpSettings(version=version))
            assert f"\n[{user}]\n" in text and f"\nuser = {user}\n" in text
            assert f"\nlisten = {pool.instance.php_socket}\n" in text
    hba = [line.split() for line in postgresql.pg_hba_lines(needs.databases).splitlines()
           if line and not line.startswith("#")]
    for database in needs.databases:
        assert ["local", database.name, database.owner, "scram-sha-256"] in hba
    for instance in needs.redis:
        text = redis.redis_config(instance, "pw")
        assert f"\nunixsocket {instance.socket}\n" in text
        assert f"\nuser {instance.acl_user} on #{hashlib.sha256(b'pw').hexdigest()} " in text
    for timer in needs.timers:
        service, timer_text = timers.timer_units(timer)
        assert f"\nUser={timer.user}\n" in service
        assert f"\nOnCalendar={timer.on_calendar}\n" in timer_text
        assert f"\nUnit={timer.unit}.service\n" in timer_text


def test_redis_password_is_generated_for_nextcloud_only(tenants):
    names = generated_secret_names(tenants)
    assert "tenants/ulap/nextcloud/redis_password" in names
    assert not any(n.endswith("redis_password") and "/nextcloud/" not in n for n in names)
