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
    for t, inst in real_instances(host, data, pyinfra_host):
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
