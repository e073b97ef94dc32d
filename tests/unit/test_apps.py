"""roles/nextcloud, roles/paheko and roles/standin without any host: needs and rendered files
for every example tenant, real release or stand-in."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from assotic.artifacts import Artifact
from assotic.tenants import load_tenants
from roles import nextcloud, paheko, standin
from assotic.templating import php_literal

REPO = Path(__file__).resolve().parents[2]
TENANTS = [t for _, t in load_tenants(REPO / "group_data" / "tenants")[0]]
NEXTCLOUD_TENANTS = [t for t in TENANTS if t.apps.nextcloud]
PAHEKO_TENANTS = [t for t in TENANTS if t.apps.paheko]
NEXTCLOUD = Artifact("nextcloud", "34.0.4", "nextcloud-34.0.4.tar.bz2",
                     "https://download.nextcloud.com/server/releases/nextcloud-34.0.4.tar.bz2", "0" * 64)
PAHEKO = Artifact("paheko", "1.3.12", "paheko-1.3.12.tar.gz",
                  "https://fossil.kd2.org/paheko/uv/paheko-1.3.12.tar.gz", "1" * 64)


class FakeSecrets:
    """Secrets store stand-in: a recognisable value per name, and a record of what was read."""

    def __init__(self):
        self.read = []

    def get(self, name: str) -> str:
        self.read.append(name)
        return f"SECRET[{name}]"


def ids(tenants):
    return [t.slug for t in tenants]


def all_needs():
    """(app, tenant, needs) for every example tenant, real and stand-in."""
    for t in NEXTCLOUD_TENANTS:
        yield "nextcloud", t, nextcloud.nextcloud_needs(t, NEXTCLOUD)
        yield "nextcloud", t, nextcloud.nextcloud_needs(t, None)
    for t in PAHEKO_TENANTS:
        yield "paheko", t, paheko.paheko_needs(t, PAHEKO)
        yield "paheko", t, paheko.paheko_needs(t, None)


def test_the_examples_cover_both_apps():
    assert len(NEXTCLOUD_TENANTS) >= 2 and len(PAHEKO_TENANTS) >= 3


# -- needs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", NEXTCLOUD_TENANTS, ids=ids(NEXTCLOUD_TENANTS))
def test_nextcloud_needs_on_shared_code(tenant):
    needs = nextcloud.nextcloud_needs(tenant, NEXTCLOUD)
    user = f"nextcloud_{tenant.slug}"
    home = f"/srv/assotic/{tenant.slug}/nextcloud"
    [vhost], [pool], [db], [redis], [timer, assets] = (needs.vhosts, needs.pools, needs.databases,
                                                       needs.redis, needs.timers)
    assert (vhost.domain, vhost.kind, vhost.web_root) == (tenant.apps.nextcloud.domain, "nextcloud",
                                                          "/opt/assotic/nextcloud-34.0.4")
    assert vhost.php_socket == f"/run/php/assotic-{user}.sock" == pool.instance.php_socket
    assert pool.instance.user == user and pool.instance.home == home
    assert dict(pool.env) == {"NEXTCLOUD_CONFIG_DIR": f"{home}/config"}
    assert (db.name, db.owner, db.password_secret) == (user, user, f"tenants/{tenant.slug}/nextcloud/db_password")
    assert redis.password_secret == f"tenants/{tenant.slug}/nextcloud/redis_password"
    assert redis.socket == f"/run/assotic-redis/{user}/redis.sock"
    assert timer.user == user and timer.on_calendar == "*:0/5"
    assert timer.command[-1] == "/opt/assotic/nextcloud-34.0.4/cron.php"
    assert "apc.enable_cli=1" in timer.command
    assert dict(timer.environment) == {"NEXTCLOUD_CONFIG_DIR": f"{home}/config"}
    # The app-store apps' static files, copied by the instance's user outside its home for nginx.
    [alias] = vhost.static_aliases
    assert (alias.url_prefix, alias.folder) == ("/custom_apps/", f"/var/www/assotic-assets/{user}")
    assert assets.user == user and assets.command[0] == "/usr/bin/rsync"
    assert assets.command[-2:] == (f"{home}/apps/", f"/var/www/assotic-assets/{user}/")
    assert "--include=*.php" not in assets.command and assets.command[-3] == "--exclude=*"


@pytest.mark.parametrize("tenant", PAHEKO_TENANTS, ids=ids(PAHEKO_TENANTS))
def test_paheko_needs_on_shared_code(tenant):
    needs = paheko.paheko_needs(tenant, PAHEKO)
    user = f"paheko_{tenant.slug}"
    config = f"/srv/assotic/{tenant.slug}/paheko/config/config.local.php"
    [vhost], [pool] = needs.vhosts, needs.pools
    assert (vhost.kind, vhost.web_root) == ("paheko", "/opt/assotic/paheko-1.3.12/www")
    assert dict(pool.env) == {"PAHEKO_CONFIG_FILE": config}
    assert dict(pool.admin_values)["variables_order"] == "EGPCS"  # $_ENV is how init.php reads it
    assert needs.databases == [] and needs.redis == []  # SQLite in <home>/data
    cron, queue = needs.timers
    assert cron.command == ("/usr/bin/php", "/opt/assotic/paheko-1.3.12/bin/paheko", "--config", config, "cron")
    assert queue.command[-3:] == ("queue", "run", "--quiet") and queue.on_calendar == "*:*:00"
    assert cron.on_calendar.startswith("*-*-* 04:") and cron.user == queue.user == user
    # Same time on every deploy (derived, not drawn at random).
    assert paheko.paheko_needs(tenant, PAHEKO).timers[0].on_calendar == cron.on_calendar


@pytest.mark.parametrize("app, tenant, needs", list(all_needs()))
def test_open_basedir_never_reaches_another_tenant(app, tenant, needs):
    [pool] = needs.pools
    own_home = f"/srv/assotic/{tenant.slug}/{app}"
    assert pool.open_basedir[0] == own_home
    for path in pool.open_basedir:
        assert path == own_home or path.startswith("/opt/assotic/"), path
        for other in TENANTS:
            for other_app in ("nextcloud", "paheko", "mattermost"):
                other_home = f"/srv/assotic/{other.slug}/{other_app}"
                if other_home != own_home:
                    assert not (path + "/").startswith(other_home + "/")
                    assert not (other_home + "/").startswith(path + "/")


@pytest.mark.parametrize("app, tenant, needs", list(all_needs()))
def test_timers_and_pools_run_as_the_instance_user(app, tenant, needs):
    user = f"{app}_{tenant.slug}"
    assert all(t.user == user for t in needs.timers)
    assert all(t.unit.startswith(f"assotic-{app}-") and t.unit.endswith(f"-{tenant.slug}") for t in needs.timers)
    assert [p.instance.user for p in needs.pools] == [user]
    assert [v.instance.user for v in needs.vhosts] == [user]


def test_standin_needs_keep_the_same_user_database_redis_and_timer_names():
    for t in NEXTCLOUD_TENANTS:
        real, stand = nextcloud.nextcloud_needs(t, NEXTCLOUD), nextcloud.nextcloud_needs(t, None)
        assert stand.vhosts[0].kind == "standin" and stand.vhosts[0].web_root == standin.STANDIN_ROOT
        assert stand.vhosts[0].domain == real.vhosts[0].domain
        assert stand.databases == real.databases and stand.redis == real.redis
        assert [x.unit for x in stand.timers] == [x.unit for x in real.timers]
        assert stand.timers[0].command == ("/usr/bin/php", "/opt/assotic/standin/cron.php",
                                           f"/srv/assotic/{t.slug}/nextcloud/config/standin.json")
        assert dict(stand.pools[0].env) == {"ASSOTIC_STANDIN_CONFIG":
                                            f"/srv/assotic/{t.slug}/nextcloud/config/standin.json"}
    for t in PAHEKO_TENANTS:
        stand = paheko.paheko_needs(t, None)
        assert stand.vhosts[0].kind == "standin"
        assert stand.timers[0].unit == paheko.paheko_needs(t, PAHEKO).timers[0].unit


def test_domains_are_unique_across_all_needs():
    domains = [d for _, _, n in all_needs() for d in n.domains]
    assert len(set(domains)) == len(NEXTCLOUD_TENANTS) + len(PAHEKO_TENANTS)


# -- rendered files ------------------------------------------------------------------------------


def php_lint(tmp_path: Path, name: str, text: str) -> None:
    """`php -l` when PHP is installed here (it is in the lab, maybe not on a laptop)."""
    if shutil.which("php") is None:
        return
    path = tmp_path / name
    path.write_text(text)
    run = subprocess.run(["php", "-l", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("tenant", NEXTCLOUD_TENANTS, ids=ids(NEXTCLOUD_TENANTS))
def test_nextcloud_config_fragment(tenant, tmp_path):
    secrets = FakeSecrets()
    context = nextcloud.config_context(tenant, NEXTCLOUD, secrets.get("tenants/x/nextcloud/redis_password"))
    text = nextcloud.config_fragment(context)
    home = f"/srv/assotic/{tenant.slug}/nextcloud"
    for expected in (
        f"'trusted_domains' => ['{tenant.apps.nextcloud.domain}']",
        f"'overwrite.cli.url' => 'https://{tenant.apps.nextcloud.domain}'",
        "'memcache.local' => '\\\\OC\\\\Memcache\\\\Redis'",
        f"'host' => '/run/assotic-redis/nextcloud_{tenant.slug}/redis.sock'",
        "'port' => 0",
        f"'user' => 'nextcloud_{tenant.slug}'",  # the ACL user roles/redis creates
        "'password' => 'SECRET[tenants/x/nextcloud/redis_password]'",
        "'default_phone_region' => 'FR'",
        "'maintenance_window_start' => 1",
        "'updatechecker' => false",
        "'upgrade.disable-web' => true",
        f"'path' => '{home}/apps', 'url' => '/custom_apps', 'writable' => true",
        "'path' => '/opt/assotic/nextcloud-34.0.4/apps', 'url' => '/apps', 'writable' => false",
        f"'mail_domain' => '{tenant.apps.nextcloud.domain}'",  # the default sender no-reply@<domain>
        "'mail_from_address' => 'no-reply'",
        "'mail_smtpmode' => 'smtp'",
        "'mail_smtphost' => '127.0.0.1'",
        f"'logfile' => '{home}/log/nextcloud.log'",
    ):
        assert expected in text, expected
    # Locks in PostgreSQL, never in the evicting cache Redis (templates/nextcloud, item 7 of issue 8).
    assert "memcache.locking" not in nextcloud.fragment_keys(text)
    php_lint(tmp_path, "assotic.config.php", text)


def test_nextcloud_knobs_come_from_host_data():
    t = NEXTCLOUD_TENANTS[0]
    context = nextcloud.config_context(t, NEXTCLOUD, "pw", {"nextcloud_phone_region": "BE",
                                                            "nextcloud_mail_smtpport": 2525})
    text = nextcloud.config_fragment(context)
    assert "'default_phone_region' => 'BE'" in text and "'mail_smtpport' => 2525" in text


@pytest.mark.parametrize("tenant", NEXTCLOUD_TENANTS, ids=ids(NEXTCLOUD_TENANTS))
def test_nextcloud_install_job_keeps_secrets_off_the_command_line(tenant):
    job = json.loads(nextcloud.install_job(tenant, NEXTCLOUD, "DBPW", "ADMINPW"))
    user = f"nextcloud_{tenant.slug}"
    assert job["occ"] == "/opt/assotic/nextcloud-34.0.4/occ"
    assert job["env"] == {"NEXTCLOUD_CONFIG_DIR": f"/srv/assotic/{tenant.slug}/nextcloud/config"}
    assert "--database=pgsql" in job["args"] and f"--database-user={user}" in job["args"]
    assert "--database-pass=DBPW" in job["args"] and "--admin-pass=ADMINPW" in job["args"]
    assert f"--data-dir=/srv/assotic/{tenant.slug}/nextcloud/data" in job["args"]
    assert f"--admin-user={tenant.admins[0].username}" in job["args"]
    # What does go on a command line: the prefix, with no secret.
    prefix = nextcloud.occ_prefix(nextcloud.instance(tenant), NEXTCLOUD)
    assert prefix.startswith(f"runuser -u {user} -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh env NEXTCLOUD_CONFIG_DIR=")


def test_occ_secrets_script_takes_everything_from_the_job_file(tmp_path):
    script = nextcloud.occ_secrets_script()
    assert "$_SERVER['argv'] = array_merge([$occ], $job['args'])" in script
    assert "putenv(" in script
    php_lint(tmp_path, "occ-secrets.php", script)


def test_occ_secrets_script_really_hands_argv_and_env_to_the_command(tmp_path):
    if shutil.which("php") is None:
        pytest.skip("php is not installed here")
    fake_occ = tmp_path / "occ"
    fake_occ.write_text("<?php echo json_encode([$_SERVER['argv'], getenv('OC_PASS')]);\n")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"occ": str(fake_occ), "args": ["user:add", "--password-from-env", "bob"],
                               "env": {"OC_PASS": "s3cret"}}))
    script = tmp_path / "occ-secrets.php"
    script.write_text(nextcloud.occ_secrets_script())
    run = subprocess.run(["php", str(script), str(job)], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout) == [[str(fake_occ), "user:add", "--password-from-env", "bob"], "s3cret"]


def test_admin_and_app_steps_only_do_what_is_missing():
    t = next(t for t in NEXTCLOUD_TENANTS if len(t.admins) > 1)
    first, second = t.admins[0].username, t.admins[1].username
    assert nextcloud.admin_steps(t, {first: "", second: ""}, {"admin": [first, second]}) == []
    steps = nextcloud.admin_steps(t, {first: ""}, {"admin": [first]})
    assert steps == [["user:add", "--generate-password", f"--email={t.admins[1].email}",
                      f"--display-name={t.admins[1].name}", "--group=admin", second]]
    assert nextcloud.admin_steps(t, {first: "", second: ""}, {"admin": [first]}) == [
        ["group:adduser", "admin", second]]
    wanted = t.apps.nextcloud.enabled_apps
    assert nextcloud.app_steps(t, {"enabled": {a: "1" for a in wanted}, "disabled": {}}) == []
    assert nextcloud.app_steps(t, {"enabled": {}, "disabled": {wanted[0]: "1"}})[0] == ["app:enable", wanted[0]]
    assert nextcloud.app_steps(t, {})[0] == ["app:install", wanted[0]]


def test_default_quota_is_the_tenant_per_user_quota():
    for t in NEXTCLOUD_TENANTS:
        assert nextcloud.default_quota(t) == t.quotas.per_user


@pytest.mark.parametrize("tenant", PAHEKO_TENANTS, ids=ids(PAHEKO_TENANTS))
def test_paheko_config_local(tenant, tmp_path, capsys):
    secrets = FakeSecrets()
    name = f"tenants/{tenant.slug}/paheko/secret_key"
    text = paheko.config_local(tenant, secrets.get(name), PAHEKO)
    assert secrets.read == [name]
    assert f"const SECRET_KEY = 'SECRET[{name}]';" in text
    assert f"const DATA_ROOT = '/srv/assotic/{tenant.slug}/paheko/data';" in text
    assert f"const WWW_URL = 'https://{tenant.apps.paheko.domain}/';" in text
    for line in ("const SHOW_ERRORS = false;", "const ENABLE_UPGRADES = false;",
                 "const DISABLE_INSTALL_FORM = true;", "const USE_CRON = true;", "namespace Paheko;"):
        assert line in text
    php_lint(tmp_path, "config.local.php", text)
    # Rendering prints nothing: the secret only goes into the file.
    assert "SECRET[" not in capsys.readouterr().out + capsys.readouterr().err


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed here")
def test_paheko_sends_through_the_hosts_postfix_from_the_associations_sender(tmp_path):
    """PHP itself reads the rendered constants: Emails.php sends over SMTP when SMTP_HOST is set,
    and resolves SMTP_SECURITY as a \\KD2\\SMTP constant ('NONE' -> NONE, no TLS on loopback)."""
    tenant = PAHEKO_TENANTS[0]
    config = tmp_path / "config.local.php"
    config.write_text(paheko.config_local(tenant, "key", PAHEKO))
    probe = ("include $argv[1]; echo json_encode([\\Paheko\\SMTP_HOST, \\Paheko\\SMTP_PORT, "
             "\\Paheko\\SMTP_SECURITY, \\Paheko\\SMTP_USER, \\Paheko\\MAIL_SENDER, "
             "\\Paheko\\MAIL_RETURN_PATH]);")
    out = subprocess.run(["php", "-r", probe, str(config)], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["127.0.0.1", 25, "NONE", None, tenant.mail_from, tenant.mail_from]
    assert tenant.mail_from == f"no-reply@{tenant.domains()[0][1]}"  # the default: no mail section


def test_php_literals_cannot_break_out_of_their_string():
    assert php_literal("it's \\ fine") == "'it\\'s \\\\ fine'"
    assert php_literal(["a", 1, True, None]) == "['a', 1, true, null]"


@pytest.mark.parametrize("tenant", PAHEKO_TENANTS, ids=ids(PAHEKO_TENANTS))
def test_paheko_init_runs_as_the_user_with_a_password_file(tenant):
    command = paheko.init_command(tenant, PAHEKO, "/srv/x/tmp/pw")
    assert command.startswith(f"runuser -u paheko_{tenant.slug} -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh "
                              "/usr/bin/php /opt/assotic/paheko-1.3.12/bin/paheko "
                              f"--config /srv/assotic/{tenant.slug}/paheko/config/config.local.php init ")
    assert "--password-file /srv/x/tmp/pw" in command and "--country FR" in command
    assert command.endswith("rm -f /srv/x/tmp/pw; exit $rc")


# -- stand-in ----------------------------------------------------------------------------------


def test_standin_code_says_what_it_is(tmp_path):
    code = standin.code_files()
    assert set(code) == {"index.php", "cron.php", "mail.php"}
    for name, text in code.items():
        assert "NOT the real application" in text
        php_lint(tmp_path, name, text)
    assert "'standin' => true" in code["index.php"]
    assert "the real release was not provided" in code["index.php"]


@pytest.mark.skipif(shutil.which("php") is None, reason="php-cli is not installed here")
def test_the_standin_sends_one_mail_over_smtp_from_the_associations_sender(tmp_path):
    """mail.php as the lab runs it, against a loopback SMTP listener: the envelope and the
    headers carry the association's sender, the server's answer is printed."""
    from test_backup import smtp_listener

    port, thread, received = smtp_listener()
    (tmp_path / "mail.php").write_text(standin.code_files()["mail.php"])
    config = tmp_path / "standin.json"
    config.write_text(json.dumps({"app": "paheko", "tenant": "ulap", "mail": {
        "host": "127.0.0.1", "port": port, "from": "no-reply@gestion.ulap.example.org",
        "reply_to": "bureau@ulap.example.org"}}))
    result = subprocess.run(["php", str(tmp_path / "mail.php"), str(config), "test@lab.example.org"],
                            capture_output=True, text=True, timeout=60)
    thread.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("250")
    assert received["from"] == "<no-reply@gestion.ulap.example.org>"
    assert received["to"] == "<test@lab.example.org>"
    assert "Reply-To: bureau@ulap.example.org" in received["body"]
    assert "Subject: assotic stand-in test mail: paheko of ulap" in received["body"]


@pytest.mark.parametrize("app, tenant, needs", list(all_needs()))
def test_standin_config_per_instance(app, tenant, needs):
    inst = needs.pools[0].instance
    database = ({"driver": "pgsql", "host": "127.0.0.1", "port": 5432, "name": inst.user,
                 "user": inst.user, "password": "pw"} if app == "nextcloud"
                else {"driver": "sqlite", "path": f"{inst.data_dir}/standin.sqlite"})
    config = json.loads(standin.standin_config(inst, database, {"socket": "/s", "password": "r"}
                                               if app == "nextcloud" else None))
    assert (config["app"], config["tenant"], config["user"]) == (app, tenant.slug, inst.user)
    assert config["data_dir"] == f"/srv/assotic/{tenant.slug}/{app}/data"
    assert ("redis" in config) == (app == "nextcloud")


def test_standin_page_and_cron_really_run(tmp_path):
    """Run the stand-in with php-cli against a SQLite config: JSON out, cron stamp written."""
    if shutil.which("php") is None:
        pytest.skip("php is not installed here")
    code = standin.code_files()
    for name, text in code.items():
        (tmp_path / name).write_text(text)
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "standin.json"
    config.write_text(json.dumps({"app": "paheko", "tenant": "ulap", "user": "paheko_ulap",
                                  "data_dir": str(data),
                                  "database": {"driver": "sqlite", "path": str(data / "s.sqlite")}}))
    subprocess.run(["php", str(tmp_path / "cron.php"), str(config)], check=True)
    assert (data / "standin-cron.txt").read_text().strip()
    run = subprocess.run(["php", str(tmp_path / "index.php")], capture_output=True, text=True,
                         env={"ASSOTIC_STANDIN_CONFIG": str(config), "PATH": "/usr/bin:/bin"})
    answer = json.loads(run.stdout)
    assert answer["standin"] is True and answer["app"] == "paheko" and answer["tenant"] == "ulap"
    assert answer["cron_last_run"]
    assert answer["database"] in ("ok", "error: the sqlite3 extension is not loaded")
