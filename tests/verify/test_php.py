"""What roles/php promises: one idle-free PHP-FPM pool per instance, run as its account
(the accounts and folders themselves: test_accounts.py).

Expected instances come from host data through the same needs deploy.py uses
(the `needs` fixture: roles.plan.plan_host).
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from roles import php
from roles.plan import instances_of

pytestmark = pytest.mark.hosts_in("web")


@pytest.fixture(scope="module")
def pools(needs):
    if not needs.pools:
        pytest.skip("no PHP pool on this host")
    return needs.pools


@pytest.fixture(scope="module")
def instances(needs):
    return instances_of(needs)


@pytest.fixture(scope="module")
def settings(host, data):
    major = int(host.check_output(". /etc/os-release && echo $VERSION_ID").split(".")[0])
    return php.PhpSettings.from_data(data, php.php_version(major))


# -- PHP-FPM ------------------------------------------------------------------------------


def test_php_fpm_is_running_and_enabled(host, pools, settings):
    service = host.service(settings.fpm_service)
    assert service.is_running and service.is_enabled
    assert host.run(f"{settings.fpm_binary} -t").rc == 0


def test_idle_pools_have_no_worker(host, pools, settings):
    """pm = ondemand: only the master runs once the pools have been idle for their timeout.

    Other checks (and timers) send requests: a worker may live for up to idle_timeout_s
    after its last one, so wait that long (plus a margin) before calling it a leak."""
    deadline = time.monotonic() + max(p.idle_timeout_s for p in pools) + 5
    while True:
        lines = host.check_output(f"ps -o user=,args= -C php-fpm{settings.version}").splitlines()
        if len(lines) == 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(lines) == 1 and lines[0].split()[0] == "root" and "master process" in lines[0], lines


def test_one_pool_file_per_instance_exactly_as_rendered(host, pools, settings):
    for pool in pools:
        f = host.file(php.pool_file(pool, settings))
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
        assert f.content_string == php.pool_config(pool, settings)
        assert "\npm = ondemand\n" in f.content_string
    listed = host.check_output(f"ls {settings.pool_dir}").split()
    assert sorted(listed) == sorted(php.pool_file(p, settings).rsplit("/", 1)[1] for p in pools)


def test_pool_sockets_belong_to_the_instance_and_the_web_server(host, pools):
    for pool in pools:
        sock = host.file(pool.instance.php_socket)
        assert sock.is_socket, pool.instance.php_socket
        assert (sock.user, sock.group, sock.mode) == (pool.instance.user, php.WEB_SERVER_GROUP, 0o660)


def _ini(lines: str) -> dict[str, str]:
    """'name => local => master' lines of `php -i` as {name: local value}."""
    values = {}
    for line in lines.splitlines():
        parts = [p.strip() for p in line.split("=>")]
        if len(parts) >= 2:
            values[parts[0]] = parts[1]
    return values


def test_fpm_opcache_as_nextcloud_expects(host, pools, settings):
    ini = _ini(host.check_output(f"{settings.fpm_binary} -i"))
    assert ini["opcache.enable"] == "On"
    assert ini["opcache.save_comments"] == "On"
    assert ini["opcache.validate_permission"] == "On"
    assert int(ini["opcache.interned_strings_buffer"]) == settings.opcache_interned_strings_buffer
    assert int(ini["opcache.memory_consumption"]) == settings.opcache_memory_consumption
    assert int(ini["opcache.max_accelerated_files"]) >= 10000
    assert int(ini["opcache.revalidate_freq"]) == settings.opcache_revalidate_freq
    assert "apcu" in host.check_output(f"{settings.fpm_binary} -m").split()


def test_cli_has_apcu_for_occ(host, pools, instances):
    code = "echo json_encode([ini_get('apc.enable_cli'), function_exists('apcu_store') && apcu_enabled()]);"
    for instance in instances:
        out = host.check_output(f"runuser -u {instance.user} -- php -r {shlex.quote(code)}")
        assert json.loads(out) == ["1", True], instance.user


PROBE = """<?php
$others = array_filter(explode(':', (string) getenv('ASSOTIC_PROBE_OTHERS')));
echo json_encode([
  'user' => posix_getpwuid(posix_geteuid())['name'],
  'open_basedir' => ini_get('open_basedir'),
  'tmp' => sys_get_temp_dir(),
  'upload_tmp' => ini_get('upload_tmp_dir'),
  'session' => session_save_path(),
  'apcu' => function_exists('apcu_enabled') && apcu_enabled(),
  'opcache' => function_exists('opcache_get_status') && is_array(@opcache_get_status(false)),
  'reads_other' => array_values(array_filter($others, fn($path) => @scandir($path) !== false)),
  'reads_etc_passwd' => @file_get_contents('/etc/passwd') !== false,
]);
"""


def test_each_pool_runs_as_its_user_inside_its_home(host, pools, instances):
    """A real request through each pool's socket (cgi-fcgi, as nginx would send it)."""
    for pool in pools:
        instance = pool.instance
        others = [i for i in instances if i != instance]
        script = f"{instance.tmp_dir}/assotic-verify-probe.php"
        host.check_output(f"printf %s {shlex.quote(PROBE)} > {script} && chown {instance.user}: {script}")
        try:
            # Every other instance's home, config and data folder on this host.
            other_paths = ":".join(p for o in others for p in (o.home, o.config_dir, o.data_dir))
            env = f"SCRIPT_FILENAME={script} REQUEST_METHOD=GET ASSOTIC_PROBE_OTHERS={other_paths}"
            out = host.check_output(f"env {env} cgi-fcgi -bind -connect {instance.php_socket}")
        finally:
            host.run(f"rm -f {script}")
        body = json.loads(out.split("\r\n\r\n", 1)[1])
        assert body == {
            "user": instance.user,
            "open_basedir": ":".join(pool.open_basedir),
            "tmp": instance.tmp_dir,
            "upload_tmp": instance.tmp_dir,
            "session": instance.session_dir,
            "apcu": False,  # shared between pools: off unless asked for (docs/backends.md)
            # opcache.restrict_api opens the OPcache API to the app's code folder only: this
            # probe, written in the instance's tmp, must be refused when the app has code.
            "opcache": not pool.code_dirs,
            "reads_other": [],
            "reads_etc_passwd": False,
        }, instance.user
