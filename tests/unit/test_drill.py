"""commands/drill.py's pure parts: which apps a drill stands up, its checks and its verdict."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from commands import drill


def tenant(**apps):
    return {"slug": "asso", "name": "Asso", "apps": apps}


def test_drilled_apps_move_onto_the_drill_host_and_others_are_named():
    moved, skipped = drill.drill_tenant(tenant(
        nextcloud={"host": "web-3", "domain": "cloud.asso.org"},
        paheko={"host": "web-4", "domain": "gestion.asso.org"},
        mattermost={"instance": "shared", "team": "asso"},
        bbb={"enabled": True}))
    assert {name: app["host"] for name, app in moved["apps"].items()} == \
        {"nextcloud": "web-1", "paheko": "web-1"}
    assert moved["apps"]["nextcloud"]["domain"] == "cloud.asso.org"
    assert any(s.startswith("mattermost: a team on a shared instance") for s in skipped)
    assert any(s.startswith("bbb:") for s in skipped)


def test_a_mattermost_instance_of_its_own_is_drilled_and_disabled_apps_are_not():
    moved, _ = drill.drill_tenant(tenant(mattermost={"host": "web-2", "domain": "chat.asso.org"},
                                         paheko={"host": "web-2", "enabled": False}))
    assert list(moved["apps"]) == ["mattermost"]


def test_a_tenant_with_nothing_to_drill_gives_none():
    assert drill.drill_tenant(tenant(bbb={"enabled": True}))[0] is None


def test_ssh_data_of_another_slot():
    data = drill.slot_ssh_data(8, 1)
    assert data.ssh_port == 2281 and data.ssh_key.endswith(".lab8/ssh/id_ed25519")
    assert drill.slot_ssh_data(0, 4).ssh_known_hosts_file.endswith("/.lab/ssh/known_hosts")


def test_checks_are_parsed_and_a_failed_one_fails_the_drill():
    ok = drill.AppResult("asso", "paheko", snapshot="ab" * 32, age_hours=3.0, restore_seconds=4.2,
                         checks=drill.parse_checks("noise\nanswers=ok\ndatabase=ok\n"))
    assert ok.checks == {"answers": "ok", "database": "ok"}
    assert drill.drill_passed([ok], 26)
    bad = drill.AppResult("asso", "nextcloud", age_hours=1.0,
                          checks=drill.parse_checks("answers=fail (HTTP 502)\ndatabase=ok\n"))
    assert not drill.drill_passed([ok, bad], 26)
    assert "answers FAILED: HTTP 502" in "\n".join(drill.report_lines([bad], 26))


def test_an_old_snapshot_or_a_failed_restore_fails_the_drill():
    old = drill.AppResult("asso", "paheko", age_hours=30.0, checks={"answers": "ok"})
    assert not drill.drill_passed([old], 26)
    assert "OLDER than 26 h" in drill.report_lines([old], 26)[1]
    failed = drill.AppResult("asso", "paheko", error="restore failed: no snapshot")
    assert not drill.drill_passed([failed], 26) and not drill.drill_passed([], 26)


def test_age_in_hours():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert drill.age_hours("2026-11-30T09:30:00+00:00", now) == 2.5


def test_check_script_compares_the_database_with_the_snapshot(tmp_path):
    nc = drill.check_script("nextcloud", "asso", "cloud.asso.org", {"pg_tables": 4})
    assert "--resolve cloud.asso.org:443:127.0.0.1" in nc and "nextcloud_asso" in nc
    assert '[ "$n" = 4 ]' in nc
    pa = drill.check_script("paheko", "asso", "gestion.asso.org", {"sqlite_tables": 2})
    assert "PRAGMA integrity_check" in pa and "psql" not in pa and '[ "$n" = 2 ]' in pa
    none = drill.check_script("paheko", "asso", "gestion.asso.org", {})
    assert "database=fail (the restore reported no database)" in none
    missing = drill.check_script("paheko", "asso", "gestion.asso.org", {"sqlite_missing": 1})
    assert "the snapshot holds no copy of the SQLite database" in missing
    for script in (nc, pa, none, missing):
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_restore_reports_what_the_snapshot_held():
    from commands.restore import expectations

    out = "restored files\nexpect:pg_tables=12\nexpect:sqlite_tables=\nexpect:x=3 tables\nrestored\n"
    assert expectations(out) == {"pg_tables": 12}


def test_the_drill_writes_a_tenant_file_per_association_with_something_to_drill(tmp_path, capsys):
    import yaml

    source, written = tmp_path / "source", tmp_path / "drill"
    source.mkdir(), written.mkdir()
    (source / "asso.yml").write_text(yaml.safe_dump(tenant(paheko={"host": "web-4", "domain": "g.asso.org"},
                                                           bbb={"enabled": True})))
    (source / "other.yml").write_text(yaml.safe_dump({"slug": "other", "apps": {"bbb": {"enabled": True}}}))
    slugs = [SimpleNamespace(slug="asso"), SimpleNamespace(slug="other")]
    drilled = drill.write_drill_tenants(slugs, source, written)
    assert list(drilled) == ["asso"] and [p.name for p in written.iterdir()] == ["asso.yml"]
    assert yaml.safe_load((written / "asso.yml").read_text())["apps"]["paheko"]["host"] == "web-1"
    assert "drill: asso: skipped bbb: not restored by the drill" in capsys.readouterr().out
    with pytest.raises(drill.DrillError, match="no association has an app the drill can restore"):
        drill.write_drill_tenants(slugs[1:], source, written)


def test_the_tenants_drilled_are_all_or_the_one_asked_for():
    source = [SimpleNamespace(data=SimpleNamespace(platform=SimpleNamespace(
        tenants=[SimpleNamespace(slug="a"), SimpleNamespace(slug="b")])))]
    assert [t.slug for t in drill.tenants_to_drill(source, None, "i.py")] == ["a", "b"]
    assert [t.slug for t in drill.tenants_to_drill(source, "b", "i.py")] == ["b"]
    with pytest.raises(drill.DrillError, match="no tenant 'c' in i.py"):
        drill.tenants_to_drill(source, "c", "i.py")


def test_a_restore_s_figures_become_the_app_s_result():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    restored = [{"snapshot": "ab" * 32, "snapshot_time": "2026-11-30T09:30:00+00:00", "seconds": 4.2}]
    result = drill.restored_result("asso", "paheko", restored, now)
    assert (result.snapshot, result.age_hours, result.restore_seconds, result.error) == \
        ("ab" * 32, 2.5, 4.2, "")
    assert drill.restored_result("asso", "paheko", [], now).error == "nothing restored"


def test_results_json_holds_the_verdict_and_every_app():
    ok = drill.AppResult("asso", "paheko", snapshot="ab", age_hours=3.0, checks={"answers": "ok"})
    document = drill.results_document("inventory/prod.py", [ok], 26, 61.26,
                                      datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc))
    assert document == {"inventory": "inventory/prod.py", "finished_at": "2026-11-30T12:00:00Z",
                        "duration_s": 61.3, "max_age_hours": 26, "passed": True, "results": [vars(ok)]}
    assert not drill.results_document("i", [ok], 2, 0, datetime.now(timezone.utc))["passed"]
