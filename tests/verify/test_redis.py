"""What roles/redis promises: one Redis per Nextcloud instance, on a socket only it can open."""

from __future__ import annotations

import shlex

import pytest

from roles import redis
from roles.plan import instances_of

pytestmark = pytest.mark.hosts_in("web")


@pytest.fixture(scope="module")
def instances(needs):
    if not needs.redis:
        pytest.skip("no Redis instance on this host")
    return needs.redis


def redis_cli(host, user: str, socket: str, password: str | None = None, login: str | None = None):
    """(rc, stdout + stderr) of `redis-cli PING` run as `user`; the password travels in REDISCLI_AUTH."""
    auth = f"REDISCLI_AUTH={shlex.quote(password)} " if password else ""
    who = f"--user {login} " if login else ""
    result = host.run(f"{auth}runuser -u {user} -- redis-cli {who}-s {socket} PING")
    out = result.stdout + result.stderr
    return result.rc, out.replace(password, "***") if password else out


def test_one_running_redis_per_instance(host, instances):
    for instance in instances:
        service = host.service(redis.unit_name(instance))
        assert service.is_running and service.is_enabled, redis.unit_name(instance)
    running = host.check_output("ps -o user= -C redis-server").split()
    assert sorted(running) == sorted(i.instance.user for i in instances)


def test_debian_shared_redis_is_masked_and_nothing_listens_on_tcp(host, instances):
    assert host.run("systemctl is-enabled redis-server.service").stdout.strip() == "masked"
    tcp = host.check_output("ss -Hltnp | grep -i redis || true")
    assert tcp == ""


def test_socket_is_the_instances_own(host, instances):
    for instance in instances:
        user = instance.instance.user
        sock = host.file(instance.socket)
        folder = host.file(instance.socket.rsplit("/", 1)[0])
        assert sock.is_socket and (sock.user, sock.group, sock.mode) == (user, user, 0o660)
        assert (folder.user, folder.group, folder.mode) == (user, user, 0o750)


def test_config_is_as_rendered_and_hides_the_password(host, data, instances):
    for instance in instances:
        password = data.platform.secrets.get(instance.password_secret)
        f = host.file(redis.config_path(instance))
        assert (f.user, f.group, f.mode) == ("root", instance.instance.user, 0o640)
        content = f.content_string
        assert password not in content
        assert content == redis.redis_config(instance, password)


def test_the_instance_user_gets_pong_with_its_password(host, data, instances):
    for instance in instances:
        user = instance.instance.user
        password = data.platform.secrets.get(instance.password_secret)
        rc, out = redis_cli(host, user, instance.socket, password, login=user)
        assert rc == 0 and out.strip().endswith("PONG"), out


def test_without_password_redis_refuses(host, instances):
    for instance in instances:
        rc, out = redis_cli(host, instance.instance.user, instance.socket)
        assert "PONG" not in out and ("NOAUTH" in out or "Authentication required" in out), out


def test_another_instance_user_cannot_open_the_socket(host, data, needs, instances):
    for instance in instances:
        others = [i for i in instances_of(needs) if i != instance.instance]
        if not others:
            pytest.skip("one instance on this host: nothing to cross")
        password = data.platform.secrets.get(instance.password_secret)
        rc, out = redis_cli(host, others[0].user, instance.socket, password, login=instance.instance.user)
        assert "PONG" not in out and "Permission denied" in out, out
