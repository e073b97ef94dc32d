"""commands/update.py and commands/backup_status.py without any host: majors, order, pins, ages."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from assotic import artifacts
from assotic.artifacts import Artifact, ReleaseSet, Resolved, choose_release
from commands.backup_status import age_hours, expected_jobs, stale_jobs
from assotic.tenants import load_tenants
from commands.update import (
    Update,
    UpdateRefused,
    held_pins,
    markers_by_key,
    ordered,
    pins_fingerprint,
    plan_text,
    upgrade_steps,
)
from commands.remote import parse_json_stream
from roles.plan import AppPlan, plan_host

REPO = Path(__file__).resolve().parents[2]


def pin(version: str) -> dict:
    return {"version": version, "url": f"https://example.invalid/nextcloud-{version}.tar.bz2",
            "sha256": "0" * 64}


# -- Nextcloud majors ---------------------------------------------------------------------------


def test_one_major_or_a_patch_is_one_step():
    assert upgrade_steps("nextcloud", "33.0.2", pin("34.0.4")) == [pin("34.0.4")]
    assert upgrade_steps("nextcloud", "34.0.3", pin("34.0.4")) == [pin("34.0.4")]


def test_a_jump_of_two_majors_is_refused_with_the_way_out():
    with pytest.raises(UpdateRefused) as err:
        upgrade_steps("nextcloud", "32.0.5", pin("34.0.4"))
    assert "skips major 33" in str(err.value)
    assert "nextcloud_upgrade_path" in str(err.value)


def test_intermediate_pins_are_walked_one_major_at_a_time_newest_of_each():
    path = [pin("33.0.1"), pin("32.0.9"), pin("33.0.10"), pin("35.0.1")]
    steps = upgrade_steps("nextcloud", "31.0.7", pin("34.0.4"), path)
    assert [s["version"] for s in steps] == ["32.0.9", "33.0.10", "34.0.4"]


def test_a_missing_major_in_the_path_is_still_refused():
    with pytest.raises(UpdateRefused, match="skips major 32"):
        upgrade_steps("nextcloud", "31.0.7", pin("34.0.4"), [pin("33.0.1")])


def test_no_app_ever_goes_back_to_an_older_release():
    with pytest.raises(UpdateRefused, match="older release"):
        upgrade_steps("nextcloud", "34.0.4", pin("33.0.9"))
    with pytest.raises(UpdateRefused, match="make restore"):
        upgrade_steps("paheko", "1.3.13", pin("1.3.12"))
    assert upgrade_steps("paheko", "1.3.9", pin("1.3.12")) == [pin("1.3.12")]  # 12 > 9, not "12" < "9"


def test_other_apps_take_their_pin_in_one_step():
    assert upgrade_steps("paheko", "1.2.0", pin("1.3.12")) == [pin("1.3.12")]


def test_an_unreadable_version_is_refused():
    with pytest.raises(UpdateRefused, match="major"):
        upgrade_steps("nextcloud", "master", pin("34.0.4"))


# -- Order, holds, markers ------------------------------------------------------------------------


def update(slug: str, app: str = "paheko", host: str = "web-1") -> Update:
    return Update(host, slug, app, f"{app}.{slug}.example.org", {"version": "1.3.12", "pin": pin("1.3.12")},
                  pin("1.3.13"), [pin("1.3.13")])


def test_the_canary_goes_first_then_a_stable_order():
    updates = [update("zerodechet", host="web-2"), update("ulap", "paheko"), update("toitcommun"),
               update("ulap", "nextcloud")]
    assert [u.key for u in ordered(updates, "ulap")] == [
        "ulap/nextcloud", "ulap/paheko", "toitcommun/paheko", "zerodechet/paheko"]
    assert [u.key for u in ordered(updates, None)][0] == "toitcommun/paheko"


def test_held_pins_keep_every_other_instance_on_what_it_runs():
    markers = markers_by_key([
        {"tenant": "ulap", "app": "paheko", "version": "1.3.12", "pin": pin("1.3.12")},
        {"tenant": "ulap", "app": "nextcloud", "version": "34.0.3", "pin": pin("34.0.3")},
        {"instance": "ulap", "app": "mattermost", "version": "11.1.1", "pin": pin("11.1.1")},
    ])
    pins = held_pins(markers, "ulap/paheko", pin("1.3.13"))
    # Mattermost instances are held too: a Paheko update must not move them to a new pin.
    assert pins == {"ulap/paheko": pin("1.3.13"), "ulap/nextcloud": pin("34.0.3"),
                    "ulap/mattermost": pin("11.1.1")}


def test_markers_read_from_a_cat_of_several_files():
    text = '{"tenant": "a", "app": "paheko", "version": "1"}\n{"instance": "chat",\n "app": "mattermost"}'
    records = parse_json_stream(text)
    assert len(records) == 2
    assert set(markers_by_key(records)) == {"a/paheko", "chat/mattermost"}
    assert parse_json_stream("") == []


def test_the_plan_names_order_versions_canary_and_refusals():
    refused = update("toitcommun")
    refused.refused = "nextcloud 32 -> 34 skips major 33"
    text = plan_text([update("ulap"), refused], "ulap", ["a note"])
    assert "1. ulap/paheko on web-1 (paheko.ulap.example.org): 1.3.12 -> 1.3.13  [canary]" in text
    assert "2. toitcommun/paheko on web-1 (paheko.toitcommun.example.org): 1.3.12 -> 1.3.13" in text
    assert "REFUSED: nextcloud 32 -> 34" in text
    assert "note: a note" in text
    assert "nothing to do" in plan_text([], None, [])


def test_the_pins_fingerprint_changes_with_a_pin_only():
    releases = {"paheko": pin("1.3.12"), "nextcloud": {"12": pin("34.0.4")}}
    same = json.loads(json.dumps(releases))
    assert pins_fingerprint(releases, []) == pins_fingerprint(same, [])
    bumped = {**releases, "paheko": pin("1.3.13")}
    assert pins_fingerprint(bumped, []) != pins_fingerprint(releases, [])
    assert pins_fingerprint(releases, [pin("33.0.1")]) != pins_fingerprint(releases, [])


# -- Per-instance pins and release markers (assotic/artifacts.py, roles/plan.py) --------------


def test_instance_pins_hold_one_instance_and_leave_the_others(tmp_path, monkeypatch):
    held = Artifact("paheko", "1.3.11", "paheko-1.3.11.tar.gz", "https://example.invalid/p", "2" * 64)
    pinned = Artifact("paheko", "1.3.12", "paheko-1.3.12.tar.gz", "https://example.invalid/p", "1" * 64)
    release_set = ReleaseSet(resolved={("paheko", None): Resolved(pinned, tmp_path / "new")},
                             by_instance={"ulap/paheko": Resolved(held, tmp_path / "old")})
    assert choose_release(release_set, "paheko", "12", "fail", "web-1", "ulap/paheko")[0] is held
    assert choose_release(release_set, "paheko", "12", "fail", "web-1", "toitcommun/paheko")[0] is pinned
    pins_file = tmp_path / "pins.json"
    pins_file.write_text(json.dumps({"ulap/paheko": pin("1.3.11")}))
    assert artifacts.instance_pins({artifacts.INSTANCE_PINS_ENV: str(pins_file)}) == {"ulap/paheko": pin("1.3.11")}
    assert artifacts.instance_pins({}) == {}


def test_release_marker_records_the_pin_also_for_a_standin():
    tenant = next(t for _, t in load_tenants(REPO / "group_data" / "tenants")[0] if t.slug == "ulap")
    pinned = Artifact("paheko", "1.3.12", "paheko-1.3.12.tar.gz", "https://example.invalid/p", "1" * 64)
    path, text = AppPlan("paheko", tenant, None, None, pinned=pinned).marker
    assert path == "/var/lib/assotic/releases/ulap-paheko.json"
    record = json.loads(text)
    assert record == {"tenant": "ulap", "app": "paheko", "version": "1.3.12", "standin": True,
                      "pin": {"version": "1.3.12", "url": "https://example.invalid/p", "sha256": "1" * 64}}
    assert AppPlan("paheko", tenant, None, None).marker is None


# -- Backup freshness (commands/backup_status.py) --------------------------------------------------

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def test_age_of_a_status_file():
    assert age_hours("2026-11-30T02:00:00Z", NOW) == pytest.approx(6.0)


def test_stale_and_missing_backups_are_named_fresh_ones_are_not():
    statuses = {"ulap-paheko": {"finished_at": "2026-11-30T02:00:00Z"},
                "ulap-nextcloud": {"finished_at": "2026-11-28T02:00:00Z"}}
    problems = stale_jobs("web-1", ["ulap-paheko", "ulap-nextcloud", "host"], statuses, 26, NOW)
    assert len(problems) == 2
    assert problems[0].startswith("web-1: ulap-nextcloud: last successful backup 54.0 h ago")
    assert problems[1].startswith("web-1: host: no successful backup recorded")


def with_mattermost(lab_host_data):
    """The lab's host data with the examples' Mattermost instances (ulap's own, and chat)."""
    from test_mattermost import built

    lab_host_data.platform.mattermost = built()[0]
    return lab_host_data


def test_expected_jobs_are_the_backups_of_the_hosts_plan(lab_host_data):
    plan = plan_host("web-1", with_mattermost(lab_host_data), ["web"], "12", missing_release="standin")
    assert expected_jobs(plan) == ["ulap-nextcloud", "ulap-paheko", "chat-mattermost", "ulap-mattermost",
                                   "host"]
    assert expected_jobs(plan)[:-1] == [b.job for b in plan.backups]


def test_mattermost_instances_are_planned_one_by_one_and_follow_the_tenant_filter(monkeypatch, lab_host_data):
    import assotic.artifacts
    import commands.remote
    import commands.update as update_module

    pins = {"paheko": "1.3.12", "mattermost": "11.2.0", "nextcloud": "34.0.4"}
    monkeypatch.setattr(assotic.artifacts, "pinned_artifact",
                        lambda releases, app, debian: SimpleNamespace(version=pins[app], url="u", sha256="0"))
    monkeypatch.setattr(commands.remote, "debian_major", lambda h: "12")
    markers = {"chat/mattermost": {"instance": "chat", "version": "11.1.1", "pin": pin("11.1.1")},
               "ulap/mattermost": {"instance": "ulap", "version": "11.2.0", "pin": pin("11.2.0")},
               "ulap/nextcloud": {"tenant": "ulap", "version": "34.0.4", "pin": pin("34.0.4")},
               "ulap/paheko": {"tenant": "ulap", "version": "1.3.12", "pin": pin("1.3.12")}}
    monkeypatch.setattr(update_module, "read_markers", lambda h: markers)
    data = with_mattermost(lab_host_data)
    data.releases, data.get = {}, lambda name: None
    web = SimpleNamespace(name="web-1", groups=["web"], data=data)
    chat = next(i for i in data.platform.mattermost if i.name == "chat")

    updates, notes = update_module.find_updates([web], None)
    assert [(u.key, u.deployed["version"], u.target_pin["version"]) for u in updates] == \
        [("chat/mattermost", "11.1.1", "11.2.0")]  # ulap's instance already runs the pin
    assert updates[0].domain == "chat.example.org" and not notes
    # An association with a team on the shared instance names it too.
    assert update_module.find_updates([web], chat.tenants[0])[0][0].key == "chat/mattermost"
    assert update_module.find_updates([web], "nobody")[0] == []  # no instance of it on web-1

    # Per-association apps: the same planning; a missing marker is a note, not an update.
    markers["ulap/paheko"] = {"tenant": "ulap", "version": "1.3.11", "pin": pin("1.3.11")}
    del markers["ulap/nextcloud"]
    updates, notes = update_module.find_updates([web], "ulap")
    assert [(u.key, u.domain) for u in updates] == [("ulap/paheko", "gestion.ulap.example.org")]
    assert notes == ["ulap/nextcloud on web-1: no release marker (deployed before markers existed?); "
                     "deploy once to record it"]
