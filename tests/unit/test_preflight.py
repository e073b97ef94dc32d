"""Inventory entries and app placement are checked against each other before any connection."""

from __future__ import annotations

from pathlib import Path

from assotic.preflight import (
    InventoryView,
    generated_secret_names,
    inventory_label_from_argv,
    inventory_problems,
    placement_problems,
    sysadmin_problems,
)
from assotic.tenants import load_tenants

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC0example camille@laptop"


def view(groups=None, hosts=None) -> InventoryView:
    groups = groups if groups is not None else {"web": ["web-1", "web-2"], "bbb": ["bbb-1"]}
    names = {n for members in groups.values() for n in members}
    hosts = hosts if hosts is not None else {n: {} for n in sorted(names)}
    return InventoryView(label="inventory/prod.py", groups=groups, hosts=hosts)


def fields(problems):
    return {(p.file, p.field) for p in problems}


def test_a_good_inventory_has_no_problem():
    assert inventory_problems(view()) == []


def test_unknown_group_is_named_with_the_known_ones():
    [problem] = inventory_problems(view(groups={"web": ["web-1"], "webs": ["web-1"]}))
    assert (problem.file, problem.field) == ("inventory/prod.py", "webs")
    assert "backup, bbb, turn, web" in problem.expected


def test_bbb_host_shares_its_machine_with_nothing():
    [problem] = inventory_problems(view(groups={"web": ["web-1"], "bbb": ["web-1"]}))
    assert problem.field == "web-1" and "in no other group" in problem.expected


def test_bad_host_data_is_reported_per_key_all_at_once():
    hosts = {"web-1": {"ssh_port": "22", "ssh_hostname": "not an address!",
                       "ssh_key": "/nonexistent/key", "ssh_user": "Root;"}}
    problems = inventory_problems(view(groups={"web": ["web-1"]}, hosts=hosts))
    assert fields(problems) == {("inventory/prod.py", f"web-1.{k}")
                                for k in ("ssh_port", "ssh_hostname", "ssh_key", "ssh_user")}


def test_sysadmins_entries_are_checked():
    problems = sysadmin_problems("group_data/all.py", "sysadmins", [
        {"name": "camille", "ssh_keys": [KEY]},
        {"name": "Bad Name", "ssh_keys": ["not a key"]},
        {"name": "ana"},
    ])
    assert fields(problems) == {("group_data/all.py", "sysadmins.1.name"),
                                ("group_data/all.py", "sysadmins.1.ssh_keys.0"),
                                ("group_data/all.py", "sysadmins.2")}


def test_examples_fit_the_lab_inventory_groups():
    loaded, _ = load_tenants(REPO / "group_data" / "tenants")
    assert placement_problems(view(groups={"web": ["web-1", "web-2"]}), loaded) == []


def test_app_on_unknown_host_or_wrong_group_is_rejected():
    loaded, _ = load_tenants(REPO / "group_data" / "tenants")
    problems = placement_problems(view(groups={"web": ["web-1"], "bbb": ["web-2"]}), loaded)
    messages = {(Path(p.file).name, p.field): p.expected for p in problems}
    # toitcommun runs nextcloud and paheko on web-2, which is a BBB host here.
    assert "group web" in messages[("toitcommun.yml", "apps.nextcloud.host")]
    assert "is in bbb" in messages[("toitcommun.yml", "apps.nextcloud.host")]
    problems = placement_problems(view(groups={"web": ["web-1"]}), loaded)
    messages = {(Path(p.file).name, p.field): p.expected for p in problems}
    assert "got 'web-2'" in messages[("zerodechet.yml", "apps.paheko.host")]


def test_generated_secrets_cover_every_app_of_every_tenant():
    loaded, _ = load_tenants(REPO / "group_data" / "tenants")
    names = generated_secret_names([t for _, t in loaded])
    assert "tenants/ulap/nextcloud/redis_password" in names
    assert "tenants/ulap/paheko/secret_key" in names
    assert "tenants/ulap/paheko/db_password" not in names  # Paheko uses SQLite
    assert "tenants/toitcommun/mattermost/db_password" not in names  # toitcommun has no chat
    assert len(names) == len(set(names))


def test_inventory_label_is_found_on_pyinfra_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    argv = ["pyinfra", "-y", "inventory/lab.py", "deploy.py"]
    assert inventory_label_from_argv(argv) == "inventory/lab.py"
