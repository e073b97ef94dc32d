"""Nextcloud instances on the web hosts: the same checks for the lab and production.

With the real release: `occ status -e` (installed, no upgrade pending, not in maintenance),
background jobs by cron, the config fragment. With the stand-in (no release provided):
those checks are skipped with the reason, and the stand-in's JSON answer through nginx
proves the vhost, pool, database and Redis the real app will use.
"""

from __future__ import annotations

import json
import shlex

import pytest

from roles import nextcloud

pytestmark = pytest.mark.hosts_in("web")


def tenants_here(data, pyinfra_host):
    return [t for t in data.tenants if t.apps.nextcloud and t.apps.nextcloud.host == pyinfra_host.name]


def is_standin(host, inst) -> bool:
    return host.file(f"{inst.config_dir}/standin.json").exists


def occ(inst, code: str, args: str) -> str:
    return (f"runuser -u {inst.user} -- env NEXTCLOUD_CONFIG_DIR={inst.config_dir} "
            f"php -d apc.enable_cli=1 {shlex.quote(code)}/occ {args}")


def real_instances(host, data, pyinfra_host):
    found = [(t, nextcloud.instance(t)) for t in tenants_here(data, pyinfra_host)]
    real = [(t, i) for t, i in found if not is_standin(host, i)]
    if found and not real:
        pytest.skip("every Nextcloud here is a stand-in: the real release was not provided "
                    "(put nextcloud-<version>.tar.bz2 in ARTIFACTS_DIR and deploy again)")
    return real


def code_dir(host) -> str:
    return host.check_output("ls -d /opt/assotic/nextcloud-*/ | sort -V | tail -1").rstrip("/")


def test_occ_status_is_healthy(host, data, pyinfra_host):
    for t, inst in real_instances(host, data, pyinfra_host):
        run = host.run(occ(inst, code_dir(host), "status -e"))
        assert run.rc == 0, f"{t.slug}: occ status -e: {run.stdout}{run.stderr}"


def test_background_jobs_run_from_the_timer(host, data, pyinfra_host):
    for _tenant, inst in real_instances(host, data, pyinfra_host):
        mode = host.check_output(occ(inst, code_dir(host), "config:app:get core backgroundjobs_mode"))
        assert mode == "cron"
        assert host.service(f"{nextcloud.cron_unit(inst)}.timer").is_enabled


def test_config_files_are_not_world_readable(host, data, pyinfra_host):
    for t in tenants_here(data, pyinfra_host):
        inst = nextcloud.instance(t)
        name = "standin.json" if is_standin(host, inst) else nextcloud.CONFIG_FRAGMENT
        config = host.file(f"{inst.config_dir}/{name}")
        assert config.exists and config.group == inst.user and not config.mode & 0o007


def test_site_answers_through_nginx(host, data, pyinfra_host):
    for t in tenants_here(data, pyinfra_host):
        inst = nextcloud.instance(t)
        domain = t.apps.nextcloud.domain
        if host.run("command -v nginx").rc != 0:
            pytest.skip("nginx is not installed (the web roles are not deployed here)")
        path = "/" if is_standin(host, inst) else "/status.php"
        answer = host.run(f"curl -sk --max-time 10 --resolve {domain}:443:127.0.0.1 https://{domain}{path}")
        assert answer.rc == 0, answer.stderr
        body = json.loads(answer.stdout)
        if is_standin(host, inst):
            assert body["standin"] is True and body["app"] == "nextcloud" and body["tenant"] == t.slug
            assert body["user"] == inst.user
            assert body["database"] == "ok", body["database"]
            assert body["redis"] == "ok", body["redis"]
            assert body["session_dir_writable"] is True
            assert body["open_basedir"].split(":")[0] == inst.home, body["open_basedir"]
            assert body["upload_tmp_dir"] == inst.tmp_dir
        else:
            assert body["installed"] is True and body["maintenance"] is False


def test_custom_apps_static_files_reach_nginx_and_nothing_else_does(host, data, pyinfra_host):
    """/custom_apps/ is served from a copy holding static files only; www-data (every vhost's
    nginx worker) can read neither the instance's config nor its apps' PHP code."""
    if host.run("id www-data").rc != 0:
        pytest.skip("no www-data here (the web roles are not deployed)")
    extensions = "|".join(nextcloud.ASSET_EXTENSIONS)
    for t in tenants_here(data, pyinfra_host):
        inst = nextcloud.instance(t)
        copy = host.file(nextcloud.assets_dir(inst))
        assert copy.is_directory and copy.user == inst.user and copy.mode == 0o755
        others = host.check_output(
            f"find {nextcloud.assets_dir(inst)} ! -type d -regextype posix-extended "
            f"! \\( -type f -regex '.*\\.({extensions})' \\) -print | head -n 5")
        assert others == "", f"{t.slug}: not a static file in the copy for nginx: {others}"
        assert host.service(f"{nextcloud.assets_unit(inst)}.timer").is_enabled
        config = f"{inst.config_dir}/{'standin.json' if is_standin(host, inst) else 'config.php'}"
        for path in (config, f"{inst.config_dir}/{nextcloud.CONFIG_FRAGMENT}", nextcloud.apps_dir(inst)):
            run = host.run(f"runuser -u www-data -- ls -l {shlex.quote(path)}")
            assert run.rc != 0, f"{t.slug}: www-data reads {path}"
        php = host.check_output(f"find {nextcloud.apps_dir(inst)} -name '*.php' -type f -print -quit")
        if php:
            assert host.run(f"runuser -u www-data -- cat {shlex.quote(php)}").rc != 0, php
        asset = host.check_output(f"cd {nextcloud.assets_dir(inst)} && find . -type f -print -quit")
        if asset and host.run("command -v nginx").rc == 0:
            domain = t.apps.nextcloud.domain
            code = host.check_output(
                f"curl -sk -o /dev/null -w '%{{http_code}}' --max-time 10 --resolve {domain}:443:127.0.0.1 "
                f"https://{domain}{nextcloud.ASSETS_URL}{shlex.quote(asset[2:])}")
            assert code == "200", f"{t.slug}: {nextcloud.ASSETS_URL}{asset[2:]} answered {code}"
