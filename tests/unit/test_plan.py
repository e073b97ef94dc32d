"""roles/plan.py: one HostPlan per host, as deploy.py, the verify checks and the commands read it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from assotic.artifacts import ArtifactMissing
from assotic.tenants import Retention
from roles import mattermost, nextcloud, paheko
from roles.plan import APP_ROLES, plan_host, retention_for


@pytest.fixture
def web_data(lab_host_data):
    """The lab's host data with the examples' Mattermost instances (ulap's own, and chat)."""
    from test_mattermost import built

    lab_host_data.platform.mattermost = built()[0]
    return lab_host_data


def test_the_app_roles_are_one_list_in_deploy_order():
    assert [(r.app, r.needs, r.deploy, r.per_instance) for r in APP_ROLES] == [
        ("nextcloud", nextcloud.nextcloud_needs, nextcloud.deploy, False),
        ("paheko", paheko.paheko_needs, paheko.deploy, False),
        ("mattermost", mattermost.mattermost_needs, mattermost.deploy, True),
    ]


def test_a_web_host_plan_holds_apps_needs_openings_backups_and_markers(web_data):
    plan = plan_host("web-1", web_data, ["web"], "12")
    assert [(a.app, a.subject.slug if a.tenant else a.instance.name) for a in plan.apps] == [
        ("nextcloud", "ulap"), ("paheko", "ulap"), ("mattermost", "chat"), ("mattermost", "ulap")]
    assert all(a.role.app == a.app for a in plan.apps)
    chat = next(a for a in plan.apps if a.instance is not None and a.instance.name == "chat")
    assert {t.slug for t in chat.tenants} == set(chat.instance.tenants) and chat.tenants
    assert [t.slug for t in plan.apps[0].tenants] == ["ulap"]
    assert sorted({o.port for o in plan.firewall_openings}) == [22, 80, 443]
    assert plan.backed_up and plan.host_backup_paths == ()
    assert [b.job for b in plan.backups] == ["ulap-nextcloud", "ulap-paheko", "chat-mattermost",
                                             "ulap-mattermost"]
    assert [b.spec for b in plan.backups] == plan.needs.backups
    assert [path for path, _ in plan.release_markers] == [
        "/var/lib/assotic/releases/ulap-nextcloud.json", "/var/lib/assotic/releases/ulap-paheko.json",
        "/var/lib/assotic/releases/mattermost-instance-chat.json",
        "/var/lib/assotic/releases/mattermost-instance-ulap.json"]
    assert all(json.loads(text)["standin"] for _, text in plan.release_markers)  # no release here
    assert {i.user for i in plan.instances} >= {"nextcloud_ulap", "paheko_ulap"}
    assert plan.secrets is web_data.platform.secrets


def test_each_backup_keeps_its_own_retention(web_data):
    plan = plan_host("web-1", web_data, ["web"], "12")
    tenants = {t.slug: t for t in web_data.platform.tenants}
    (ulap_nextcloud,) = plan.backups_of("ulap", "nextcloud")
    assert ulap_nextcloud.retention == tenants["ulap"].backup.retention
    (chat,) = plan.backups_of("chat", "mattermost")
    kept = [tenants[slug].backup.retention for slug in chat.spec.retention_of]
    assert chat.spec.retention_of and chat.retention == Retention(
        daily=max(r.daily for r in kept), weekly=max(r.weekly for r in kept),
        monthly=max(r.monthly for r in kept))
    # An instance of no known association: the defaults.
    assert retention_for(replace(chat.spec, retention_of=()), []) == Retention()


def test_a_host_of_no_backed_up_group_is_not_backed_up(web_data):
    plan = plan_host("backup-1", web_data, ["backup"], "12")
    assert not plan.backed_up and plan.apps == () and plan.backups == ()


def test_a_missing_release_stops_the_plan_unless_planning_without_releases(web_data):
    web_data.missing_release = "fail"
    with pytest.raises(ArtifactMissing):
        plan_host("web-1", web_data, ["web"], "12")
    # `make backup-status` and `make update` plan without release files: same apps, same jobs.
    plan = plan_host("web-1", web_data, ["web"], "12", missing_release="standin")
    assert [b.job for b in plan.backups][:2] == ["ulap-nextcloud", "ulap-paheko"]
