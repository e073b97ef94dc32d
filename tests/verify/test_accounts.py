"""What roles/accounts promises: each instance's system user without login, in no other group,
and its folders, owned and closed as instance_directories says.

Expected instances come from host data through the same plan deploy.py uses
(the `plan` fixture: roles.plan.plan_host).
"""

from __future__ import annotations

import itertools
import shlex

import pytest

from roles import accounts, php

pytestmark = pytest.mark.hosts_in("web")


@pytest.fixture(scope="module")
def instances(plan):
    return plan.instances  # what deploy.py hands to accounts.instance_accounts


def test_each_instance_has_a_system_user_without_login(host, instances):
    for instance in instances:
        user = host.user(instance.user)
        assert user.exists, instance.user
        assert user.group == instance.user, instance.user
        assert user.groups == [instance.user], instance.user  # no other group
        assert user.shell == accounts.NOLOGIN, instance.user
        assert user.uid < 1000, f"{instance.user} is not a system account"
        assert user.home == instance.home


def test_web_server_is_in_no_instance_group(host, instances):
    groups = host.user(php.WEB_SERVER_GROUP).groups
    assert [i.user for i in instances if i.user in groups] == []


def test_instance_folders_owner_and_mode(host, instances):
    expected = {path: f"directory {owner} {group} {int(mode, 8):o}"
                for instance in instances
                for path, owner, group, mode in accounts.instance_directories(instance)}
    # One stat for every folder: a command per folder is slow over SSH.
    out = host.run("stat -c '%n|%F %U %G %a' " + " ".join(shlex.quote(p) for p in expected))
    found = dict(line.split("|", 1) for line in out.stdout.splitlines())
    assert {path: found.get(path, "missing") for path in expected} == expected


def test_nothing_under_srv_assotic_is_world_readable_or_writable(host, instances):
    if not instances:
        pytest.skip("no instance on this host")
    found = host.check_output("find /srv/assotic \\( -perm -o+r -o -perm -o+w \\) -print")
    assert found == ""


def test_an_instance_cannot_read_another_instances_folders(host, instances):
    if len(instances) < 2:
        pytest.skip("one instance on this host: nothing to cross")
    readable = []
    for a, b in itertools.permutations(instances, 2):
        for path in (b.home, b.data_dir, b.config_dir, b.tmp_dir):
            if host.run(f"runuser -u {a.user} -- ls {shlex.quote(path)}").rc == 0:
                readable.append((a.user, path))
    assert readable == []


def test_web_server_cannot_read_instance_folders(host, instances):
    readable = [i.home for i in instances
                if host.run(f"runuser -u {php.WEB_SERVER_GROUP} -- ls {shlex.quote(i.home)}").rc == 0]
    assert readable == []
