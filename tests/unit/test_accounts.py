"""roles/accounts: each app instance's Unix account and folders, planned against fake facts."""

from __future__ import annotations

from fake_facts import FakeHost

from assotic.needs import SRV_ROOT, AppInstance
from roles import accounts
from roles.prepared import SystemAccount, account_state

ULAP_NC = AppInstance("ulap", "nextcloud")
ULAP_PAHEKO = AppInstance("ulap", "paheko")
TOIT_PAHEKO = AppInstance("toitcommun", "paheko")
INSTANCES = [ULAP_NC, ULAP_PAHEKO, TOIT_PAHEKO, ULAP_NC]  # the same instance twice: one account


def names(ops) -> list[str]:
    """Operation names without the @deploy's own, which must stay "Instance accounts"."""
    assert all(op.name.startswith("Instance accounts | ") for op in ops)
    return [op.name.removeprefix("Instance accounts | ") for op in ops]


def wanted_account(instance: AppInstance) -> SystemAccount:
    return SystemAccount(instance.user, instance.home, accounts.NOLOGIN,
                         f"assotic {instance.app} of {instance.slug}")


def wanted_folders() -> dict[str, str]:
    """What PathStats reads once every folder is as wanted."""
    return {path: f"directory {owner} {group} {int(mode, 8):o}"
            for instance in INSTANCES
            for path, owner, group, mode in accounts.instance_directories(instance)}


def host_with(account_states: dict, folders: dict, exposed: list[str]) -> FakeHost:
    return FakeHost("web-1", {"web": ["web-1"]}, {}, {
        "AccountStates": account_states,
        ("PathStats", (("paths", tuple(wanted_folders())),)): folders,
        ("WorldAccessibleFiles", (("path", SRV_ROOT),)): exposed,
        # What pyinfra's own server.user, server.group and files.directory read.
        "Users": {}, "Groups": [], "Os": "Linux", "Directory": None, "File": None,
        "Which": "/usr/sbin/useradd",
    })


def test_instance_directories_are_never_world_readable():
    dirs = accounts.instance_directories(ULAP_NC)
    assert dirs[0] == ("/srv/assotic", "root", "root", "0711")
    assert ("/srv/assotic/ulap/nextcloud", "root", "nextcloud_ulap", "0750") in dirs
    assert ("/srv/assotic/ulap/nextcloud/tmp", "nextcloud_ulap", "nextcloud_ulap", "0700") in dirs
    assert {path for path, *_ in dirs} >= {ULAP_NC.data_dir, ULAP_NC.config_dir, ULAP_NC.log_dir,
                                           ULAP_NC.session_dir}
    assert all(int(mode, 8) & 0o006 == 0 for *_, mode in dirs)


def test_a_new_host_gets_every_account_then_every_folder_once_parents_first():
    ops = host_with({}, {}, []).plan(accounts.instance_accounts, INSTANCES)
    users = ["nextcloud_ulap", "paheko_ulap", "paheko_toitcommun"]
    assert names(ops[:6]) == [f"Create {kind} {user}" for user in users
                                           for kind in ("group", "user")]
    assert names(ops[6:]) == [f"Create {path}" for path in wanted_folders()]
    assert names(ops[6:9]) == [f"Create {SRV_ROOT}", f"Create {SRV_ROOT}/ulap",
                                            f"Create {ULAP_NC.home}"]
    assert f"Create {SRV_ROOT}/toitcommun" in names(ops)
    home = ops[names(ops).index(f"Create {ULAP_NC.home}")]
    assert home.commands == [f"mkdir -p {ULAP_NC.home}", f"chmod 750 {ULAP_NC.home}",
                             f"chown root:nextcloud_ulap {ULAP_NC.home}"]


def test_a_second_deploy_changes_nothing():
    states = {i.user: account_state(wanted_account(i)) for i in INSTANCES}
    assert host_with(states, wanted_folders(), []).plan(accounts.instance_accounts, INSTANCES) == []


def test_only_what_differs_is_fixed_and_world_readable_files_are_closed():
    states = {i.user: account_state(wanted_account(i)) for i in INSTANCES}
    folders = {**wanted_folders(), ULAP_NC.tmp_dir: "directory nextcloud_ulap nextcloud_ulap 755"}
    exposed = [f"{ULAP_NC.data_dir}/a.txt", f"{ULAP_NC.log_dir}/b.log"]
    ops = host_with(states, folders, exposed).plan(accounts.instance_accounts, INSTANCES)
    assert names(ops) == [f"Create {ULAP_NC.tmp_dir}",
                                       f"Remove world access from 2 file(s) under {SRV_ROOT}"]
    assert ops[1].commands == [f"find {SRV_ROOT} ! -type l -perm /o=rw -exec chmod o-rw {{}} +"]


def test_no_instance_no_account_no_folder():
    ops = host_with({}, {}, []).plan(accounts.instance_accounts, [])
    assert ops == []
