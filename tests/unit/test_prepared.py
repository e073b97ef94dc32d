"""roles.prepared: facts asked once while pyinfra prepares, and the operations they let a
deploy skip (a no-op deploy with many associations, `make bench`)."""

from __future__ import annotations

import subprocess

from fake_facts import FakeHost
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from roles.prepared import (
    AccountStates,
    SystemAccount,
    account_state,
    enable_and_start,
    prepared_fact,
    system_accounts,
)
from roles.remote_files import FolderFiles


def test_a_prepared_fact_is_asked_once_per_host_and_arguments():
    fake = FakeHost("web-1", {"web": ["web-1"]}, {}, {"FolderFiles": {}})

    def plan():
        for _ in range(3):
            prepared_fact(FolderFiles, folder="/etc/systemd/system")
        prepared_fact(FolderFiles, folder="/etc/nginx/sites-enabled")

    fake.plan(plan)
    assert [key for key in fake.asked if key[0] == "FolderFiles"] == [
        ("FolderFiles", (("folder", "/etc/systemd/system"),)),
        ("FolderFiles", (("folder", "/etc/nginx/sites-enabled"),)),
    ]
    # Another deploy (another pyinfra state) asks again.
    again = FakeHost("web-1", {"web": ["web-1"]}, {}, {"FolderFiles": {}})
    again.plan(lambda: prepared_fact(FolderFiles, folder="/etc/systemd/system"))
    assert len(again.asked) == 1


def test_enable_and_start_adds_operations_only_for_units_not_enabled_and_running():
    units = ["a.timer", "b.timer", "c.timer"]
    fake = FakeHost("web-1", {"web": ["web-1"]}, {}, {
        "SystemdStatus": {"a.timer": True, "b.timer": True, "c.timer": False},
        "SystemdEnabled": {"a.timer": True, "b.timer": False, "c.timer": True},
    })
    ops = fake.plan(lambda: enable_and_start(units))
    assert [op.name for op in ops] == ["Enable and start b.timer", "Enable and start c.timer"]
    # Read for all the units at once: the facts pyinfra's systemd.service reads for one.
    together = [k[0] for k in fake.asked if k[1] == (("services", tuple(units)),)]
    assert sorted(together) == sorted([SystemdStatus.__name__, SystemdEnabled.__name__])


def account(user: str) -> SystemAccount:
    return SystemAccount(user=user, home=f"/srv/assotic/{user}", shell="/usr/sbin/nologin",
                         comment=f"assotic app of {user}")


def test_system_accounts_adds_operations_only_for_accounts_missing_or_different():
    good, moved, missing = account("nextcloud_a"), account("paheko_a"), account("nextcloud_b")
    fake = FakeHost("web-1", {"web": ["web-1"]}, {}, {
        "AccountStates": {good.user: account_state(good),
                          moved.user: account_state(moved).replace("/srv/assotic/", "/home/")},
        "Users": {}, "Groups": [], "Os": "Linux", "Directory": None, "File": None,
        "Which": "/usr/sbin/useradd",
    })
    ops = fake.plan(lambda: system_accounts([good, moved, missing]))
    assert [op.name for op in ops] == ["Create group paheko_a", "Create user paheko_a",
                                       "Create group nextcloud_b", "Create user nextcloud_b"]


def test_the_account_command_reads_what_account_state_expects():
    """Run here, on this machine's root account: home, shell, comment, groups."""
    fact = AccountStates()
    out = subprocess.run(["sh", "-c", fact.command(("root", "no-such-user-here"))],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    states = fact.process(out)
    assert list(states) == ["root"]
    home, shell, comment, groups = states["root"].split("|")
    assert (home, groups) == ("/root", "root")  # Debian's root: in no other group
    assert account_state(SystemAccount("root", home, shell, comment)) == states["root"]
