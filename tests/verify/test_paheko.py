"""Paheko instances on the web hosts: the same checks for the lab and production.

An instance is either the real release (its config.local.php exists) or the stand-in
(config/standin.json): the checks that need the real release are skipped, with the reason,
for a stand-in; the stand-in's own answer is checked through nginx instead.
"""

from __future__ import annotations

import json
import shlex

import pytest

from assotic.needs import as_instance_user
from assotic.layout import release_marker_path
from roles import paheko

pytestmark = pytest.mark.hosts_in("web")


def instances(data, pyinfra_host):
    return [paheko.instance(t) for t in data.tenants
            if t.apps.paheko and t.apps.paheko.host == pyinfra_host.name]


def is_standin(host, inst) -> bool:
    return host.file(f"{inst.config_dir}/standin.json").exists


def test_config_is_readable_by_the_instance_only(host, data, pyinfra_host):
    for inst in instances(data, pyinfra_host):
        name = "standin.json" if is_standin(host, inst) else paheko.CONFIG_NAME
        config = host.file(f"{inst.config_dir}/{name}")
        assert config.exists, config.path
        assert (config.user, config.group, config.mode) == ("root", inst.user, 0o640)


def test_real_paheko_is_initialised_and_consistent(host, data, pyinfra_host):
    checked = 0
    for inst in instances(data, pyinfra_host):
        if is_standin(host, inst):
            continue
        code = host.file(f"{inst.data_dir}/{paheko.DB_NAME}")
        assert code.exists and code.user == inst.user
        config = f"{inst.config_dir}/{paheko.CONFIG_NAME}"
        # The release this instance runs, as its marker says (an older one may still be there).
        version = host.check_output(f"jq -r .version {release_marker_path(inst.slug, 'paheko')}")
        binary = f"/opt/assotic/paheko-{version}/bin/paheko"
        # As its own user and umask, like the deploy: a check must not leave world-readable files.
        run = host.run(shlex.join([*as_instance_user(inst.user), "/usr/bin/php", binary, "--config",
                                   config, "db", "check"]))
        assert run.rc == 0 and "Integrity: ok" in run.stdout, run.stdout + run.stderr
        checked += 1
    if not checked:
        pytest.skip("every Paheko here is a stand-in: the real release was not provided "
                    "(put it in ARTIFACTS_DIR and deploy again)")


def test_release_trees_are_root_owned_and_read_only(host):
    for path in host.check_output("ls -d /opt/assotic/paheko-* 2>/dev/null || true").split():
        tree = host.file(path)
        assert tree.user == "root" and not tree.mode & 0o022
        # Symlinks always show 0777: only real files and folders count.
        assert host.run(f"find {path} ! -type l -perm /022 -print -quit").stdout.strip() == ""


def test_site_answers_through_nginx(host, data, pyinfra_host):
    for t in data.tenants:
        if not (t.apps.paheko and t.apps.paheko.host == pyinfra_host.name):
            continue
        inst = paheko.instance(t)
        domain = t.apps.paheko.domain
        curl = f"curl -sk --max-time 10 --resolve {domain}:443:127.0.0.1 https://{domain}/"
        if host.run("command -v nginx").rc != 0:
            pytest.skip("nginx is not installed (the web roles are not deployed here)")
        answer = host.run(curl)
        assert answer.rc == 0, answer.stderr
        if is_standin(host, inst):
            body = json.loads(answer.stdout)
            assert body["standin"] is True and body["app"] == "paheko" and body["tenant"] == t.slug
            assert body["user"] == inst.user
            assert body["database"] == "ok" and body["session_dir_writable"] is True
            # The stand-in's code is shared by every pool: these show that no pool is handed
            # another pool's settings (the OPcache optimizer trap, roles/php).
            assert body["open_basedir"].split(":")[0] == inst.home, body["open_basedir"]
            assert body["upload_tmp_dir"] == inst.tmp_dir
        else:
            check_real_paheko_pages(host, curl.removesuffix("/"))


def check_real_paheko_pages(host, curl: str) -> None:
    """What a member and a NextCloud client reach: the login form, and Paheko's own router
    (not nginx's 404) behind /status.php and /remote.php."""
    home = host.run(f"{curl}/ -o /dev/null -w '%{{http_code}} %{{redirect_url}}'").stdout.split()
    assert home[0] == "302" and home[1].endswith("/admin/"), home  # the site is off: to the admin
    login = host.run(f"{curl}/admin/login.php -w '\\n%{{http_code}}'").stdout
    body, status = login.rsplit("\n", 1)
    assert status == "200", login[-2000:]
    assert "<title>Connexion" in body and 'name="password"' in body, body[-2000:]
    for error in ("Fatal error", "Warning:", "Deprecated:", "Erreur interne", "Exception"):
        assert error not in body, body[-2000:]
    status_json = json.loads(host.check_output(f"{curl}/status.php"))
    assert status_json["installed"] is True and "productname" in status_json, status_json
    dav = host.run(f"{curl}/remote.php/dav/files/ -o /dev/null -w '%{{http_code}}'").stdout
    assert dav == "401", dav  # Paheko asks for a login; nginx alone would say 404


def test_queue_timer_takes_mail_still_waiting_as_success(host, data, pyinfra_host):
    checked = 0
    for t in data.tenants:
        if not (t.apps.paheko and t.apps.paheko.host == pyinfra_host.name):
            continue
        inst = paheko.instance(t)
        if is_standin(host, inst):
            continue
        unit = f"{paheko.queue_unit(inst)}.service"
        shown = host.check_output(f"systemctl show -p SuccessExitStatus -p UMask {unit}")
        assert "SuccessExitStatus=2" in shown and "UMask=0027" in shown, shown
        checked += 1
    if not checked:
        pytest.skip("every Paheko here is a stand-in: its queue timer is not deployed")
