"""mattermost() planned against one FakeHost (no host, nothing runs): with a real release,
first install, already current, upgrade, a second team on a shared instance, a second
instance on the same host; the whole ordered plan of the example instances, with the
release and with the stand-in. Exact commands and files; no secret in any command."""

from __future__ import annotations

from datetime import datetime

import pytest

from assotic import artifacts
from assotic.artifacts import Artifact
from assotic.preflight import Platform
from roles import mattermost, releases

from fake_facts import FakeHost
from test_mattermost import LOADED, built

DB_PASSWORD = "db-S3cret/pw:1"
ADMIN_PASSWORD = "admin-S3cret-pw-2"


def release(version: str) -> Artifact:
    name = f"mattermost-team-{version}-linux-amd64.tar.gz"
    return Artifact("mattermost", version, name, f"https://releases.mattermost.com/{version}/{name}", "2" * 64)


class Secrets:
    def get(self, name):
        if name.endswith("/db_password"):
            return DB_PASSWORD
        if name.endswith("/admin_password"):
            return ADMIN_PASSWORD
        raise KeyError(name)


@pytest.fixture(autouse=True)
def fresh_run(monkeypatch):
    """Each plan is one deploy: the per-run "scheduled once" sets start empty."""
    monkeypatch.setattr(mattermost, "_code_scheduled", set())
    monkeypatch.setattr(mattermost, "_shared_file_ops", {})
    monkeypatch.setattr(releases, "_scheduled", {})


def plan(tmp_path, inst, rel, facts, tenants=None):
    """Plan one instance; the release tarball is a stand-in file (files.put hashes it)."""
    tenants = [t for _, t in LOADED] if tenants is None else tenants
    data = {"platform": Platform(tenants=tenants, secrets=None)}
    local = tmp_path / rel.filename
    local.write_bytes(b"not really a tarball")
    fake = FakeHost("web-1", {"web": ["web-1"]}, data, facts)
    ops = fake.plan(mattermost.mattermost, inst, rel, local, Secrets(), served(inst))
    return ops, fake


def instance(name):
    return next(i for i in built()[0] if i.name == name)


MMCTL = ("runuser -u mattermost_chat -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh env MMCTL_LOCAL_SOCKET_PATH=/run/assotic-mattermost-chat/"
         "mattermost.sock /opt/assotic/mattermost-11.1.1/bin/mmctl --local")
FRESH = {"Directory": None, "File": None, "Sha1File": None, "FolderFiles": {}, "DebPackages": {},
         "ChangedSinceStamp": True, "SystemdStatus": {}, "SystemdEnabled": {},
         "MmctlJson": [], "MattermostTeamAdmins": {}}


def changing(ops):
    """The operations that would change something: commands, and an `_if` that holds (one that
    depends on operations of this deploy counts as holding: those change in these states)."""
    return [op for op in ops if op.commands and all(
        _holds(condition) for condition in _conditions(op.global_arguments.get("_if")))]


def _holds(condition) -> bool:
    try:
        return bool(condition())
    except RuntimeError:  # "Cannot evaluate operation result before execution"
        return True


def _conditions(value):
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def no_secret_in(ops):
    for op in ops:
        for command in op.commands:
            assert DB_PASSWORD not in command and ADMIN_PASSWORD not in command, op.name
            assert "S3cret" not in command and "%2F" not in command, op.name  # nor percent-encoded


def test_first_install_of_a_shared_instance(tmp_path):
    ops, _ = plan(tmp_path, instance("chat"), release("11.1.1"), FRESH)
    no_secret_in(ops)
    by_name = {op.name: op for op in ops}
    unpack = by_name["Unpack mattermost 11.1.1 (mattermost-team-11.1.1-linux-amd64.tar.gz) into "
                     "/opt/assotic/mattermost-11.1.1"]
    assert f" && echo '{'2' * 64}  /var/cache/assotic/artifacts/mattermost-team-11.1.1-linux-amd64.tar.gz'" \
        " | sha256sum --check" in unpack.commands[0]
    env = by_name["Render /etc/assotic/mattermost/chat.env"].commands
    assert env[-2:] == ["chown root:mattermost_chat /etc/assotic/mattermost/chat.env",
                        "chmod 640 /etc/assotic/mattermost/chat.env"]
    assert "Render /etc/systemd/system/assotic-mattermost@.service" in by_name
    assert "Render /etc/systemd/system/assotic-mattermost@chat.service.d/assotic-release.conf" in by_name
    assert by_name["Restart assotic-mattermost@chat.service (new code, unit or environment)"].commands[0] \
        .startswith("systemctl daemon-reload && systemctl restart assotic-mattermost@chat.service && ")
    team_ops = [op for op in ops if op.name.startswith("Mattermost chat: ")]
    assert [op.name for op in team_ops] == [
        "Mattermost chat: create team toitcommun Toit Commun, association d'habitat solidaire",
        "Mattermost chat: create user toitcommun sylvie", "Mattermost chat: add member toitcommun sylvie",
        "Mattermost chat: make team admin toitcommun sylvie",
        "Mattermost chat: create team zerodechet Zéro Déchet Villeurbanne",
        "Mattermost chat: create user zerodechet lucie", "Mattermost chat: add member zerodechet lucie",
        "Mattermost chat: make team admin zerodechet lucie"]
    assert team_ops[0].commands == [f"{MMCTL} team create --private --name toitcommun --display-name "
                                    "'Toit Commun, association d'\"'\"'habitat solidaire'"]
    assert team_ops[2].commands == [f"{MMCTL} team users add toitcommun sylvie"]
    assert team_ops[3].commands[0].startswith("test -n \"$(runuser -u postgres -- psql -XAtq -v "
                                              "ON_ERROR_STOP=1 -d mattermost_chat -c 'UPDATE teammembers ")
    assert not any("schemeRoles" in c for op in ops for c in op.commands)
    upload = by_name["Upload the new account of lucie for chat (0600)"].commands
    assert upload[-1] == "chmod 600 /srv/assotic/chat/mattermost/tmp/mattermost-new-user.json"


def current_facts(inst, rel, tenants_users, admins, team_names):
    """A host where this release runs, every file is as rendered and every team and admin exists."""
    def folder(path, content, mode="0644", user="root", group="root"):
        import hashlib
        return {path: (hashlib.sha1(content.encode()).hexdigest(), user, group, int(mode, 8))}

    home = inst.app_instance
    env = folder(mattermost.env_path(inst), mattermost.env_file(inst, DB_PASSWORD, {}), "0640",
                 group=inst.user)
    unit = folder(mattermost.UNIT_TEMPLATE, mattermost.unit_template())
    dropin = folder(mattermost.dropin_path(inst), mattermost.release_dropin(inst, rel))
    root_dir = {"user": "root", "group": "root"}
    facts = {
        ("Directory", (("path", artifacts.REMOTE_CACHE),)): {"mode": 700, **root_dir},
        ("Directory", (("path", artifacts.OPT_ROOT),)): {"mode": 755, **root_dir},
        ("Directory", (("path", mattermost.ENV_DIR),)): {"mode": 755, **root_dir},
        ("File", (("path", rel.remote_path),)): {"mode": 600, **root_dir},
        ("File", (("path", releases.unpacked_marker(rel)),)): {"mode": 644, **root_dir},
        "Sha1File": __import__("hashlib").sha1(b"not really a tarball").hexdigest(),
        "DebPackages": {"curl": ["7.88.1"]},
        ("File", (("path", "/var/lib/apt/periodic/update-success-stamp"),)): {"mtime": datetime.now()},
        "Date": datetime.now(),
        "File": None, "Directory": None,  # anything else: missing
        ("Directory", (("path", rel.remote_path),)): None,
        ("FolderFiles", (("folder", mattermost.ENV_DIR),)): env,
        ("FolderFiles", (("folder", mattermost.UNIT_DIR),)): unit,
        ("FolderFiles", (("folder", mattermost.dropin_path(inst).rsplit("/", 1)[0]),)): dropin,
        "ChangedSinceStamp": False,
        "SystemdStatus": {mattermost.unit_name(inst): True},
        "SystemdEnabled": {mattermost.unit_name(inst): True},
        "MattermostTeamAdmins": admins,
    }
    for sub in ("files", "plugins", "client-plugins", "export", "import"):
        facts[("Directory", (("path", f"{home.data_dir}/{sub}"),))] = {
            "mode": 750, "user": inst.user, "group": inst.user}
    mmctl = mattermost.mmctl_prefix(inst, rel)
    users = [u for team_users in tenants_users.values() for u in team_users]
    facts[("MmctlJson", (("args", "team list"), ("mmctl", mmctl)))] = [{"name": n} for n in team_names]
    facts[("MmctlJson", (("args", "user list --all"), ("mmctl", mmctl)))] = users
    for team, team_users in tenants_users.items():
        facts[("MmctlJson", (("args", f"user list --all --team {team}"), ("mmctl", mmctl)))] = team_users
    return facts


CHAT_USERS = {"toitcommun": [{"username": "sylvie", "email": "sylvie@toitcommun.example.org"}],
              "zerodechet": [{"username": "lucie", "email": "lucie@zerodechet.example.org"}]}
CHAT_ADMINS = {"toitcommun": ["sylvie", "sylvie@toitcommun.example.org"],
               "zerodechet": ["lucie", "lucie@zerodechet.example.org"]}


def test_already_current_changes_nothing(tmp_path):
    inst, rel = instance("chat"), release("11.1.1")
    ops, _ = plan(tmp_path, inst, rel, current_facts(inst, rel, CHAT_USERS, CHAT_ADMINS,
                                                      ["toitcommun", "zerodechet"]))
    no_secret_in(ops)
    assert [op.name for op in changing(ops)] == []
    assert not any(op.name.startswith("Mattermost chat: ") for op in ops)  # no team or user step


def test_an_admin_who_is_no_longer_team_admin_is_promoted_again(tmp_path):
    inst, rel = instance("chat"), release("11.1.1")
    admins = {"toitcommun": CHAT_ADMINS["toitcommun"]}  # lucie: a member, no longer admin
    ops, _ = plan(tmp_path, inst, rel, current_facts(inst, rel, CHAT_USERS, admins,
                                                      ["toitcommun", "zerodechet"]))
    assert [op.name for op in changing(ops)] == ["Mattermost chat: make team admin zerodechet lucie"]


def test_upgrade_unpacks_the_new_tree_changes_the_dropin_and_restarts(tmp_path):
    inst, old, new = instance("chat"), release("11.1.1"), release("11.2.0")
    facts = current_facts(inst, old, CHAT_USERS, CHAT_ADMINS, ["toitcommun", "zerodechet"])
    # The new tarball is not on the host yet, nor unpacked; the facts of mmctl are asked with
    # the new release's mmctl (the old server still answers them, until the restart).
    facts[("File", (("path", new.remote_path),))] = None
    facts[("Directory", (("path", new.remote_path),))] = None
    facts[("File", (("path", releases.unpacked_marker(new)),))] = None
    for key in [k for k in facts if isinstance(k, tuple) and k[0] == "MmctlJson"]:
        args = dict(k for k in key[1])
        facts[("MmctlJson", (("args", args["args"]), ("mmctl", mattermost.mmctl_prefix(inst, new))))] = facts[key]
    ops, _ = plan(tmp_path, inst, new, facts)
    no_secret_in(ops)
    assert [op.name for op in changing(ops)] == [
        "Upload mattermost-team-11.2.0-linux-amd64.tar.gz",
        "Unpack mattermost 11.2.0 (mattermost-team-11.2.0-linux-amd64.tar.gz) into /opt/assotic/mattermost-11.2.0",
        "Render /etc/systemd/system/assotic-mattermost@chat.service.d/assotic-release.conf",
        "Restart assotic-mattermost@chat.service (new code, unit or environment)"]
    dropin = mattermost.release_dropin(inst, new)
    assert "ExecStart=/opt/assotic/mattermost-11.2.0/bin/mattermost\n" in dropin
    assert "WorkingDirectory=/opt/assotic/mattermost-11.2.0\n" in dropin


def test_a_second_association_on_a_shared_instance_gets_its_team_only(tmp_path):
    """zerodechet is already on chat (the host was deployed with it alone); toitcommun joins:
    its team and its admin, and no restart of the instance every association shares."""
    import dataclasses

    inst, rel = instance("chat"), release("11.1.1")
    before = dataclasses.replace(inst, tenants=("zerodechet",))
    facts = current_facts(before, rel, {"zerodechet": CHAT_USERS["zerodechet"], "toitcommun": []},
                          {"zerodechet": CHAT_ADMINS["zerodechet"]}, ["zerodechet"])
    ops, _ = plan(tmp_path, inst, rel, facts)
    no_secret_in(ops)
    assert [op.name for op in changing(ops)] == [
        "Mattermost chat: create team toitcommun Toit Commun, association d'habitat solidaire",
        "Upload the new account of sylvie for chat (0600)",
        "Mattermost chat: create user toitcommun sylvie", "Mattermost chat: add member toitcommun sylvie",
        "Mattermost chat: make team admin toitcommun sylvie"]


def test_a_second_instance_on_the_same_host_has_its_own_user_socket_database_and_unit(tmp_path):
    chat, ulap, rel = instance("chat"), instance("ulap"), release("11.1.1")
    tenants = [t for _, t in LOADED]
    data = {"platform": Platform(tenants=tenants, secrets=None)}
    local = tmp_path / rel.filename
    local.write_bytes(b"not really a tarball")
    facts = current_facts(chat, rel, CHAT_USERS, CHAT_ADMINS, ["toitcommun", "zerodechet"])
    facts.update({"MmctlJson": [], "Directory": None, "FolderFiles": {}, "ChangedSinceStamp": True,
                  ("MattermostTeamAdmins", (("database", "mattermost_ulap"),)): {}})
    facts.pop("MattermostTeamAdmins")
    facts[("MattermostTeamAdmins", (("database", "mattermost_chat"),))] = CHAT_ADMINS
    chat_covers = (mattermost.env_path(chat), mattermost.UNIT_TEMPLATE, mattermost.dropin_path(chat))
    facts[("ChangedSinceStamp", (("paths", chat_covers),
                                 ("stamp", f"/var/lib/assotic/reloaded/{mattermost.unit_name(chat)}")))] = False
    facts["SystemdStatus"] = {mattermost.unit_name(chat): True}
    facts["SystemdEnabled"] = {mattermost.unit_name(chat): True}

    def both():
        mattermost.mattermost(chat, rel, local, Secrets(), served(chat))
        mattermost.mattermost(ulap, rel, local, Secrets(), served(ulap))

    fake = FakeHost("web-1", {"web": ["web-1"]}, data, facts)
    ops = fake.plan(both)
    no_secret_in(ops)
    names = [op.name for op in changing(ops)]
    assert names.count("Upload mattermost-team-11.1.1-linux-amd64.tar.gz") == 0  # one shared tree
    assert "Render /etc/systemd/system/assotic-mattermost@.service" not in names  # one shared template
    assert "Render /etc/assotic/mattermost/ulap.env" in names
    assert "Render /etc/systemd/system/assotic-mattermost@ulap.service.d/assotic-release.conf" in names
    assert "Restart assotic-mattermost@ulap.service (new code, unit or environment)" in names
    assert "Restart assotic-mattermost@chat.service (new code, unit or environment)" not in names
    ulap_ops = [op for op in changing(ops) if op.name.startswith("Mattermost ulap: ")]
    assert [op.name for op in ulap_ops] == [
        "Mattermost ulap: create team ulap Union locale des associations du Plateau",
        "Mattermost ulap: create user ulap nadia_benali", "Mattermost ulap: add member ulap nadia_benali",
        "Mattermost ulap: make team admin ulap nadia_benali",
        "Mattermost ulap: create user ulap jpmorel", "Mattermost ulap: add member ulap jpmorel",
        "Mattermost ulap: make team admin ulap jpmorel"]
    for op in ulap_ops:
        text = " ".join(op.commands)
        assert "mattermost_chat" not in text and "assotic-mattermost-chat" not in text, op.name
    assert "-d mattermost_ulap" in ulap_ops[3].commands[0]
    assert not any(op.name.startswith("Mattermost chat: ") for op in changing(ops))


def served(inst):
    """The associations on an instance, as the host's plan gives them (AppPlan.tenants)."""
    return [t for _, t in LOADED if t.slug in inst.tenants]


def instance_ops(name, unit_template=True):
    """The operations of one instance's install, after its code: folders, the files its unit
    reads (the host's one unit template with its first instance only), restart, enable."""
    data = f"/srv/assotic/{name}/mattermost/data"
    unit = f"assotic-mattermost@{name}.service"
    return [*(f"Create {data}/{sub}" for sub in ("files", "plugins", "client-plugins", "export", "import")),
            "Create /etc/assotic/mattermost", f"Render /etc/assotic/mattermost/{name}.env",
            *(["Render /etc/systemd/system/assotic-mattermost@.service"] if unit_template else []),
            f"Render /etc/systemd/system/{unit}.d/assotic-release.conf",
            f"Restart {unit} (new code, unit or environment)", f"Enable and start {unit}"]


def plan_both(tmp_path, rel):
    """The two example instances of web-1 on a fresh host, as deploy.py runs them: in order."""
    local = None
    if rel is not None:
        local = tmp_path / rel.filename
        local.write_bytes(b"not really a tarball")
    chat, ulap = instance("chat"), instance("ulap")
    data = {"platform": Platform(tenants=[t for _, t in LOADED], secrets=None)}
    fake = FakeHost("web-1", {"web": ["web-1"]}, data, FRESH)
    return fake.plan(lambda: [mattermost.mattermost(inst, rel, local, Secrets(), served(inst))
                              for inst in (chat, ulap)])


@pytest.fixture
def followed(monkeypatch) -> dict:
    """What each unit's restart follows: stamp -> the operations passed to reload_after."""
    from roles import remote_files

    recorded = {}
    real_reload_after = remote_files.reload_after

    def recording_reload_after(name, command, changed, stamp, covers):
        recorded[stamp] = list(changed)
        return real_reload_after(name, command, changed, stamp, covers)

    monkeypatch.setattr(remote_files, "reload_after", recording_reload_after)
    return recorded


def test_a_new_unit_template_restarts_every_instance_of_the_host(tmp_path, followed):
    """The template is rendered with the first instance; the second's restart must follow it too
    (its stamp was read before the template was written: seen in the lab, restarted one deploy late)."""
    chat, ulap, rel = instance("chat"), instance("ulap"), release("11.1.1")
    facts = current_facts(chat, rel, CHAT_USERS, CHAT_ADMINS, ["toitcommun", "zerodechet"])
    facts.update({"MmctlJson": [], "Directory": None, "ChangedSinceStamp": False, "FolderFiles": {},
                  ("MattermostTeamAdmins", (("database", "mattermost_ulap"),)): {}})
    facts.pop("MattermostTeamAdmins")
    facts[("MattermostTeamAdmins", (("database", "mattermost_chat"),))] = CHAT_ADMINS
    facts[("FolderFiles", (("folder", mattermost.UNIT_DIR),))] = {}  # the template is new

    def both():
        mattermost.mattermost(chat, rel, tmp_path / rel.filename, Secrets(), served(chat))
        mattermost.mattermost(ulap, rel, tmp_path / rel.filename, Secrets(), served(ulap))

    (tmp_path / rel.filename).write_bytes(b"not really a tarball")
    FakeHost("web-1", {"web": ["web-1"]}, {"platform": Platform(tenants=[t for _, t in LOADED], secrets=None)},
             facts).plan(both)
    template_op = mattermost._shared_file_ops[("web-1", mattermost.UNIT_TEMPLATE)]
    assert template_op in followed[mattermost.unit_name(chat)]
    assert template_op in followed[mattermost.unit_name(ulap)]


def test_first_install_plans_every_operation_in_this_order(tmp_path):
    """The whole plan, pinned: a refactor of the role that renames, reorders or drops an
    operation, or changes which one is conditional, shows here first."""
    ops = plan_both(tmp_path, release("11.1.1"))
    tarball = "mattermost-team-11.1.1-linux-amd64.tar.gz"
    code = ["Create /var/cache/assotic/artifacts", "Create /opt/assotic", f"Upload {tarball}",
            f"Unpack mattermost 11.1.1 ({tarball}) into /opt/assotic/mattermost-11.1.1"]
    curl = "Install curl (the local-mode API client)"
    assert [op.name for op in ops] == [
        *code, curl, *instance_ops("chat"),
        "Mattermost chat: create team toitcommun Toit Commun, association d'habitat solidaire",
        "Upload the new account of sylvie for chat (0600)",
        "Mattermost chat: create user toitcommun sylvie", "Mattermost chat: add member toitcommun sylvie",
        "Mattermost chat: make team admin toitcommun sylvie",
        "Mattermost chat: create team zerodechet Zéro Déchet Villeurbanne",
        "Upload the new account of lucie for chat (0600)",
        "Mattermost chat: create user zerodechet lucie", "Mattermost chat: add member zerodechet lucie",
        "Mattermost chat: make team admin zerodechet lucie",
        curl, *instance_ops("ulap", unit_template=False),
        "Mattermost ulap: create team ulap Union locale des associations du Plateau",
        "Upload the new account of nadia_benali for ulap (0600)",
        "Mattermost ulap: create user ulap nadia_benali", "Mattermost ulap: add member ulap nadia_benali",
        "Mattermost ulap: make team admin ulap nadia_benali",
        "Upload the new account of jpmorel for ulap (0600)",
        "Mattermost ulap: create user ulap jpmorel", "Mattermost ulap: add member ulap jpmorel",
        "Mattermost ulap: make team admin ulap jpmorel"]
    assert [op.name for op in ops if op.global_arguments.get("_if")] == [
        "Restart assotic-mattermost@chat.service (new code, unit or environment)",
        "Restart assotic-mattermost@ulap.service (new code, unit or environment)"]


def test_standin_plans_the_same_unit_and_no_team_step(tmp_path):
    ops = plan_both(tmp_path, None)
    standin = "Render /opt/assotic/standin/mattermost-standin.py"
    assert [op.name for op in ops] == [
        "Install what the Mattermost stand-in needs (python3-psycopg2, curl)", "Create /opt/assotic/standin",
        standin, *instance_ops("chat"), *instance_ops("ulap", unit_template=False)]


def test_a_new_standin_script_restarts_every_instance_of_the_host(tmp_path, followed):
    """One script serves every instance of the host: each instance's restart follows the one
    operation that writes it (seen in the lab: ulap kept running the old script)."""
    plan_both(tmp_path, None)
    script_op = mattermost._shared_file_ops[("web-1", mattermost.STANDIN_FILE)]
    assert script_op in followed[mattermost.unit_name(instance("chat"))]
    assert script_op in followed[mattermost.unit_name(instance("ulap"))]
