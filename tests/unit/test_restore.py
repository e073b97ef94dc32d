"""commands/restore.py without any host: what is restored, the printed plan, the refusals, and
one whole run on fake hosts (the order of what is sent, what is printed, what is returned)."""

from __future__ import annotations

import io
import json
import subprocess
from types import SimpleNamespace

import pytest

from commands import restore as restore_cli
from commands.restore import Plan, RestoreError, plan_lines, refusals, snapshot_time_text, specs_to_restore
from test_backup import NEXTCLOUD, PAHEKO, TENANTS, specs

SPECS = {s.instance.app: s for s in specs(NEXTCLOUD, PAHEKO)}
SNAPSHOT = {"id": "f" * 64, "short_id": "ffffffff", "time": "2026-11-30T06:12:34.123456789+01:00"}


def plan(app: str, live: bool = False, exists: bool = True, to: str = "web-1") -> Plan:
    return Plan(app, SPECS[app], "web-1", to, SNAPSHOT, live, exists)


def platform(mattermost=()):
    return SimpleNamespace(tenants=TENANTS, mattermost=list(mattermost), secrets="SECRETS")


def test_snapshot_times_are_printed_to_the_second_with_their_offset():
    assert snapshot_time_text("2026-11-30T06:12:34.123456789+01:00") == "2026-11-30T06:12:34+01:00"
    assert snapshot_time_text("2026-11-30T05:12:34.5Z") == "2026-11-30T05:12:34Z"


def test_the_plan_names_snapshot_paths_databases_and_after_restore_steps(monkeypatch):
    monkeypatch.setattr(restore_cli, "age", lambda time: "2.0 h")
    lines = plan_lines("ulap", "inventory/prod.py", [plan("nextcloud", live=True), plan("paheko", exists=False)],
                       ["ulap/mattermost: no snapshot"])
    assert lines[:3] == [
        "restore plan for ulap (inventory/prod.py):",
        "  - NOT RESTORED, ulap/mattermost: no snapshot",
        "  - nextcloud: snapshot ffffffff of 2026-11-30T06:12:34+01:00 (age 2.0 h) made on web-1 -> web-1 "
        "[LIVE: its current data will be REPLACED]"]
    assert lines[3] == f"      files: {', '.join(SPECS['nextcloud'].paths)}"
    assert "      database: PostgreSQL nextcloud_ulap (dropped and restored from the dump)" in lines
    assert lines[-3].endswith("[NOT DEPLOYED there]")
    assert lines[-1] == ("      database: SQLite /srv/assotic/ulap/paheko/data/association.sqlite "
                         "(replaced by the snapshot's VACUUM INTO copy)")
    assert sum(line.startswith("      then: ") for line in lines) == len(SPECS["nextcloud"].after_restore)


def test_refusals_an_instance_not_deployed_always_a_live_one_without_force():
    plans = [plan("nextcloud", live=True), plan("paheko", exists=False, to="web-2")]
    assert refusals("ulap", plans, force=True) == [
        "paheko: the instance is not deployed on web-2; deploy ulap there first"]
    assert refusals("ulap", plans, force=False)[1] == \
        "nextcloud: ulap is live on web-1; run again with FORCE=1 (--force) to replace it"
    assert refusals("ulap", [plan("paheko")], force=False) == []


def test_what_is_restored_an_association_s_apps_or_a_shared_instance(monkeypatch):
    seen = []
    monkeypatch.setattr(restore_cli, "specs_for", lambda tenant, apps, inventory, source, to:
                        seen.append((tenant.slug, apps, source, to)) or {a: ("web-1", "web-1", SPECS[a])
                                                                        for a in apps if a in SPECS})
    monkeypatch.setattr(restore_cli, "shared_instance_specs",
                        lambda instance, inventory: {"mattermost": (instance.host, SPECS["paheko"])})
    chat = SimpleNamespace(name="chat", declared=True, host="web-2")
    assert list(specs_to_restore(platform([chat]), None, "ulap", None, None, None)) == ["nextcloud", "paheko"]
    assert seen[-1] == ("ulap", ["nextcloud", "paheko", "mattermost"], None, None)
    assert specs_to_restore(platform([chat]), None, "chat", None, "web-1", None)["mattermost"][:2] == \
        ("web-1", "web-1")
    assert specs_to_restore(platform([chat]), None, "chat", None, None, "web-3")["mattermost"][:2] == \
        ("web-2", "web-3")
    with pytest.raises(RestoreError, match="chat is a shared Mattermost instance: only APP=mattermost"):
        specs_to_restore(platform([chat]), None, "chat", "paheko", None, None)
    with pytest.raises(RestoreError, match=r"no tenant or shared Mattermost instance 'nobody' \(known: chat, "):
        specs_to_restore(platform([chat]), None, "nobody", None, None, None)
    with pytest.raises(RestoreError, match=r"ulap has no backed-up app 'bbb' \(backed up: none\)"):
        specs_to_restore(platform(), None, "ulap", "bbb", None, None)


class FakeInventory:
    def __init__(self):
        self.hosts = {name: SimpleNamespace(name=name, data=SimpleNamespace(platform=platform()))
                      for name in ("web-1", "web-2")}

    def __iter__(self):
        return iter(self.hosts.values())

    def get_host(self, name):
        return self.hosts.get(name)


@pytest.fixture
def fake_hosts(monkeypatch):
    """restore() on two fake web hosts: paheko has a snapshot, nextcloud none; scripts recorded."""
    sent = []

    def run_remote(host, script):
        sent.append((host.name, script.splitlines()[0], "snapshots --json" in script))
        if "snapshots --json" in script:
            found = SNAPSHOT if "app:paheko" in script else None
            answer = {"snapshot": found, "live": False, "instance_exists": True}
            return subprocess.CompletedProcess([], 0, "noise\n" + json.dumps(answer) + "\n", "")
        return subprocess.CompletedProcess([], 0, "expect:sqlite_tables=7\nrestored\n", "")

    monkeypatch.setattr(restore_cli, "run_remote", run_remote)
    monkeypatch.setattr(restore_cli, "repository_setup", lambda name, data, secrets: f"# {name} {secrets}\n")
    monkeypatch.setattr(restore_cli, "specs_for", lambda tenant, apps, inventory, source, to:
                        {a: (source or "web-1", to or source or "web-1", SPECS[a]) for a in apps if a in SPECS})
    monkeypatch.setattr(restore_cli, "age", lambda time: "2.0 h")
    return sent


def test_a_whole_association_restores_what_has_a_snapshot_and_says_what_has_none(fake_hosts):
    out = io.StringIO()
    results = restore_cli.restore("inv.py", "ulap", None, "latest", "web-2", False, False, out=out,
                                  inventory=FakeInventory())
    # Snapshots listed from the target with the source's repository, then the restore.
    assert fake_hosts == [("web-2", "# web-1 SECRETS", True), ("web-2", "# web-1 SECRETS", True),
                          ("web-2", "# web-1 SECRETS", False)]
    printed = out.getvalue().splitlines()
    assert printed[1].startswith("  - NOT RESTORED, ulap/nextcloud: no snapshot 'latest' tagged "
                                 "tenant:ulap,app:nextcloud in the repository of web-1")
    assert printed[-1].startswith("  paheko: restored snapshot ffffffff onto web-2 in ")
    assert [(r["app"], r["to"], r["expected"]) for r in results] == [("paheko", "web-2", {"sqlite_tables": 7})]


def test_an_app_asked_for_by_name_without_a_snapshot_stops_everything(fake_hosts):
    with pytest.raises(RestoreError, match="ulap/nextcloud: no snapshot 'abc' tagged"):
        restore_cli.restore("inv.py", "ulap", "nextcloud", "abc", None, True, False, out=io.StringIO(),
                            inventory=FakeInventory())
    with pytest.raises(RestoreError, match="no host 'web-9' in inv.py"):
        restore_cli.restore("inv.py", "ulap", "paheko", "abc", "web-9", True, False, out=io.StringIO(),
                            inventory=FakeInventory())


def test_a_dry_run_prints_the_plan_and_sends_no_restore(fake_hosts):
    out = io.StringIO()
    target = SimpleNamespace(name="drill:web-1", data=None)
    assert restore_cli.restore("inv.py", "ulap", "paheko", "latest", None, False, True, out=out,
                               target=target, inventory=FakeInventory()) == []
    assert fake_hosts == [("drill:web-1", "# web-1 SECRETS", True)]
    assert "-> drill:web-1 [exists, empty]" in out.getvalue()
    assert out.getvalue().endswith("dry run: nothing restored\n")
