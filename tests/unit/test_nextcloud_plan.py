"""roles/nextcloud planned with a REAL release on one FakeHost: first install, already current,
upgrade, maintenance mode, and a second association on the same host.

Nothing connects: pyinfra prepares the operations against stubbed facts (tests/unit/fake_facts.py
fails on any fact it was not given), and the tests read the exact commands and files planned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fake_facts import FakeHost

from assotic import artifacts
from assotic.artifacts import REMOTE_CACHE, Artifact
from assotic.tenants import load_tenants
from roles import nextcloud, releases

REPO = Path(__file__).resolve().parents[2]
SHA = "a" * 64
RELEASE = Artifact("nextcloud", "34.0.4", "nextcloud-34.0.4.tar.bz2",
                   "https://download.nextcloud.com/server/releases/nextcloud-34.0.4.tar.bz2", SHA)
NEXT = Artifact("nextcloud", "34.0.5", "nextcloud-34.0.5.tar.bz2",
                "https://download.nextcloud.com/server/releases/nextcloud-34.0.5.tar.bz2", "b" * 64)


def tenants_by_slug() -> dict:
    loaded, problems = load_tenants(REPO / "group_data" / "tenants")
    assert problems == []
    return {t.slug: t for _, t in loaded if t.apps.nextcloud}


TENANTS = tenants_by_slug()


class Secrets(dict):
    """The platform's secrets as the role reads them (`.get(name)`), with values easy to find."""

    def __init__(self, tenants):
        super().__init__()
        for t in tenants:
            inst = nextcloud.instance(t)
            for name in ("db_password", "admin_password", "redis_password"):
                self[inst.secret(name)] = f"S3CRET-{t.slug}-{name}"


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def folder_entry(content: str, user="root", group="root", mode=0o644):
    return (sha1(content), user, group, mode)


def occ_of(t, release=RELEASE) -> str:
    return nextcloud.occ_prefix(nextcloud.instance(t), release)


def config_state(version: str | None, maintenance=False) -> dict:
    if version is None:
        return {"installed": False, "version": None, "maintenance": False}
    return {"installed": True, "version": version, "maintenance": maintenance}


def apps_enabled(t) -> dict:
    return {"enabled": {app: "1.0" for app in t.apps.nextcloud.enabled_apps}, "disabled": {}}


def missing_file(path: str) -> dict:
    """What pyinfra's files.put asks about a file it is about to write that does not exist yet."""
    return {("File", (("path", path),)): None, ("Directory", (("path", path),)): None}


def host_facts(local_release: Path, instances: dict, release=RELEASE, unpacked=True,
               old_marker=False) -> dict:
    """Facts of a web host running `instances` ({slug: {"version": "34.0.4.2" | None, ...}})."""
    facts: dict = {
        ("Directory", (("path", REMOTE_CACHE),)): {"mode": 700, "user": "root", "group": "root"},
        ("Directory", (("path", artifacts.OPT_ROOT),)): {"mode": 755, "user": "root", "group": "root"},
        ("File", (("path", release.remote_path),)): {"mode": 600, "user": "root", "group": "root"},
        ("Directory", (("path", release.remote_path),)): None,
        ("Sha1File", (("path", release.remote_path),)): hashlib.sha1(local_release.read_bytes()).hexdigest(),
        ("File", (("path", releases.unpacked_marker(release)),)): {"mode": 644} if unpacked else None,
        ("File", (("path", f"{release.install_dir}/{releases.OLD_UNPACKED_MARKER}"),)):
            {"mode": 644} if old_marker else None,
        ("FolderFiles", (("folder", artifacts.OPT_ROOT),)): {
            nextcloud.OCC_SECRETS: folder_entry(nextcloud.occ_secrets_script())},
    }
    managed: dict = {}
    for slug, state in instances.items():
        t = TENANTS[slug]
        inst = nextcloud.instance(t)
        occ = occ_of(t, release)
        context = nextcloud.config_context(t, release, f"S3CRET-{slug}-redis_password", {})
        fragment = nextcloud.config_fragment(context)
        installed = state.get("version") is not None
        config_php = f"{inst.config_dir}/config.php"
        facts.update({
            ("Directory", (("path", nextcloud.apps_dir(inst)),)):
                {"mode": 750, "user": inst.user, "group": inst.user},
            ("Directory", (("path", nextcloud.assets_dir(inst)),)):
                {"mode": 755, "user": inst.user, "group": inst.user},
            ("Directory", (("path", nextcloud.ASSETS_ROOT),)): {"mode": 755, "user": "root", "group": "root"},
            ("File", (("path", f"{inst.config_dir}/standin.json"),)): None,
            ("File", (("path", f"{inst.data_dir}/standin-cron.txt"),)): None,
            ("File", (("path", config_php),)): {"mode": 640} if installed or state.get("empty_config") else None,
            ("Directory", (("path", config_php),)): None,
            ("File", (("path", f"{inst.tmp_dir}/occ-install.json"),)): None,
            ("Directory", (("path", f"{inst.tmp_dir}/occ-install.json"),)): None,
            ("Directory", (("path", inst.config_dir),)): {"mode": 750, "user": inst.user, "group": inst.user},
            **missing_file(f"{inst.config_dir}/{nextcloud.CONFIG_FRAGMENT}"),
            **missing_file(nextcloud.managed_keys_path(inst)),
            ("Directory", (("path", nextcloud.MANAGED_KEYS_DIR),)): {"mode": 755, "user": "root", "group": "root"},
            ("Directory", (("path", inst.tmp_dir),)): {"mode": 750, "user": inst.user, "group": inst.user},
            ("NextcloudConfigState", (("path", config_php),)):
                config_state(state.get("version"), state.get("maintenance", False)),
            ("FolderFiles", (("folder", inst.config_dir),)): (
                {f"{inst.config_dir}/{nextcloud.CONFIG_FRAGMENT}":
                 folder_entry(state.get("fragment", fragment), "root", inst.user, 0o640)}
                if installed else {}),
            ("OccValue", (("args", "config:app:get core backgroundjobs_mode"), ("occ", occ))):
                "cron" if installed else None,
            ("OccValue", (("args", "config:app:get files default_quota"), ("occ", occ))):
                state.get("quota", nextcloud.default_quota(t)) if installed else None,
            ("OccJson", (("args", f"user:list --limit={nextcloud.OCC_LIST_LIMIT} --output=json"),
                         ("occ", occ))):
                {a.username: a.name for a in t.admins} if installed else {},
            ("OccJson", (("args", f"group:list --limit={nextcloud.OCC_LIST_LIMIT} --output=json"),
                         ("occ", occ))):
                {"admin": [a.username for a in t.admins]} if installed else {},
            ("OccJson", (("args", "app:list --output=json"), ("occ", occ))):
                state.get("apps", apps_enabled(t)) if installed else {},
        })
        if installed and "managed_keys" not in state:
            managed[nextcloud.managed_keys_path(inst)] = nextcloud.fragment_keys(fragment)
        elif state.get("managed_keys") is not None:
            managed[nextcloud.managed_keys_path(inst)] = state["managed_keys"]
        facts[("FolderFiles", (("folder", nextcloud.MANAGED_KEYS_DIR),))] = {
            path: folder_entry("".join(f"{k}\n" for k in keys))
            for path, keys in managed.items()}
    facts[("ManagedConfigKeys", (("folder", nextcloud.MANAGED_KEYS_DIR),))] = managed
    return facts


@pytest.fixture
def local_release(tmp_path, monkeypatch):
    monkeypatch.setattr(releases, "_scheduled", {})
    path = tmp_path / RELEASE.filename
    path.write_bytes(b"not really a tarball")
    return path


def plan(facts: dict, slugs: list[str], release=RELEASE, local=None):
    fake = FakeHost("web-1", {"web": ["web-1"]}, {}, facts)
    secrets = Secrets([TENANTS[s] for s in slugs])

    def run():
        for slug in slugs:
            nextcloud.nextcloud(TENANTS[slug], release, local, secrets)

    return fake.plan(run), secrets


def changing(ops) -> list:
    return [op for op in ops if op.commands]


def commands(ops) -> list[str]:
    return [c for op in ops for c in op.commands]


def assert_no_secret(ops, secrets):
    for command in commands(ops):
        for value in secrets.values():
            assert value not in command, f"a secret is on a command line: {command}"


# -- the five states ------------------------------------------------------------------------------


def test_first_install_plans_the_upload_unpack_install_and_converge(local_release):
    t = TENANTS["ulap"]
    inst = nextcloud.instance(t)
    facts = host_facts(local_release, {"ulap": {"version": None}}, unpacked=False)
    facts[("Directory", (("path", REMOTE_CACHE),))] = None
    facts[("File", (("path", RELEASE.remote_path),))] = None
    ops, secrets = plan(facts, ["ulap"], local=local_release)
    names = [op.name for op in changing(ops)]
    occ = occ_of(t)
    assert names[:3] == [f"Create {REMOTE_CACHE}", f"Upload {RELEASE.filename}",
                         f"Unpack {RELEASE.label} into {RELEASE.install_dir}"]
    unpack = changing(ops)[2].commands[0]
    assert unpack == releases.unpack_command(RELEASE)
    assert f"Render {inst.config_dir}/{nextcloud.CONFIG_FRAGMENT}" in names
    assert f"Create an empty {inst.config_dir}/config.php" in names
    install = next(op for op in ops if op.name.startswith("Install Nextcloud"))
    job = f"{inst.tmp_dir}/occ-install.json"
    assert install.commands == [
        f"runuser -u {inst.user} -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh /usr/bin/php -d apc.enable_cli=1 {nextcloud.OCC_SECRETS} {job}; "
        f"rc=$?; rm -f {job}; exit $rc"]
    all_commands = commands(ops)
    assert f"{occ} db:add-missing-indices --no-interaction" in all_commands
    assert f"{occ} background:cron" in all_commands
    assert f"{occ} config:app:set files default_quota '--value={t.quotas.per_user}'" in all_commands
    for app in t.apps.nextcloud.enabled_apps:
        assert f"{occ} app:install {app}" in all_commands
    # The app-store apps just installed get their assets published for nginx at once.
    assert f"systemctl start {nextcloud.assets_unit(inst)}.service" in all_commands
    # Every admin but the first (made by the install) is added with a generated password.
    for admin in t.admins[1:]:
        assert any(c.startswith(f"{occ} user:add --generate-password") and c.endswith(admin.username)
                   for c in all_commands)
    # The keys this deploy manages in config.php are remembered for a later removal.
    assert f"Render {nextcloud.managed_keys_path(inst)}" in names
    assert_no_secret(ops, secrets)


def test_already_current_plans_no_changing_operation(local_release):
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2"}})
    ops, secrets = plan(facts, ["ulap"], local=local_release)
    assert [(op.name, op.commands) for op in changing(ops)] == []


def test_upgrade_runs_occ_upgrade_then_stops_before_the_converge(local_release):
    t = TENANTS["ulap"]
    next_local = local_release.with_name(NEXT.filename)
    next_local.write_bytes(b"the next release")
    facts = host_facts(next_local, {"ulap": {"version": "34.0.4.2"}}, release=NEXT, unpacked=False)
    facts[("File", (("path", NEXT.remote_path),))] = None
    ops, secrets = plan(facts, ["ulap"], release=NEXT, local=next_local)
    occ = occ_of(t, NEXT)
    names = [op.name for op in changing(ops)]
    assert f"Unpack {NEXT.label} into {NEXT.install_dir}" in names
    assert f"Upgrade Nextcloud of ulap to {NEXT.version} (occ upgrade)" in names
    assert f"{occ} upgrade --no-interaction" in commands(ops)
    assert f"{occ} db:add-missing-indices --no-interaction" in commands(ops)
    # Nothing asked of occ before the new code runs, nothing converged in this run.
    assert not any(c.startswith(f"{occ} app:") or "config:system:delete" in c for c in commands(ops))
    assert_no_secret(ops, secrets)


def test_maintenance_mode_changes_nothing_through_occ(local_release):
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2", "maintenance": True}})
    ops, _ = plan(facts, ["ulap"], local=local_release)
    assert changing(ops) == []


def test_a_second_association_on_the_same_host_shares_the_release(local_release):
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2"}, "toitcommun": {"version": None}})
    ops, secrets = plan(facts, ["ulap", "toitcommun"], local=local_release)
    names = [op.name for op in changing(ops)]
    # One upload and one unpack per host, whatever the number of associations.
    assert names.count(f"Upload {RELEASE.filename}") == 0
    assert not any(n.startswith("Unpack") for n in names)
    assert any(n == "Install Nextcloud 34.0.4 for toitcommun (occ maintenance:install)" for n in names)
    assert not any("ulap" in n for n in names), names
    other = occ_of(TENANTS["toitcommun"])
    assert all(c.startswith(("runuser -u nextcloud_toitcommun", "systemctl start assotic-nextcloud-assets-toitcommun",
                             "mkdir", "chown", "chmod", "FileUploadCommand"))
               or other in c for c in commands(ops)), commands(ops)
    assert_no_secret(ops, secrets)


# -- findings of issue 8 -------------------------------------------------------------------------


def test_user_and_group_lists_ask_occ_for_more_than_its_500_default(local_release):
    """core/Command/User/ListCommand.php and Group/ListCommand.php default --limit to 500."""
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2"}})
    fake = FakeHost("web-1", {"web": ["web-1"]}, {}, facts)
    fake.plan(nextcloud.nextcloud, TENANTS["ulap"], RELEASE, local_release, Secrets([TENANTS["ulap"]]))
    lists = [dict(k[1])["args"] for k in fake.asked if k[0] in ("OccJson",)
             and dict(k[1])["args"].split()[0] in ("user:list", "group:list")]
    assert sorted(lists) == sorted([f"group:list --limit={nextcloud.OCC_LIST_LIMIT} --output=json",
                                    f"user:list --limit={nextcloud.OCC_LIST_LIMIT} --output=json"])
    assert nextcloud.OCC_LIST_LIMIT > 500


def test_a_key_the_template_no_longer_sets_is_deleted_from_config_php(local_release):
    """Config::writeData copies the merged config (ours included) into config.php: a key we
    stop setting stays there unless deleted."""
    t = TENANTS["ulap"]
    inst = nextcloud.instance(t)
    current = nextcloud.fragment_keys(nextcloud.config_fragment(
        nextcloud.config_context(t, RELEASE, "x", {})))
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2",
                                                "managed_keys": [*current, "some.old.key"]}})
    ops, _ = plan(facts, ["ulap"], local=local_release)
    occ = occ_of(t)
    assert [(op.name, op.commands) for op in changing(ops)] == [
        ("Nextcloud ulap: delete some.old.key from config.php (no longer set by assotic)",
         [f"{occ} config:system:delete some.old.key"]),
        (f"Render {nextcloud.managed_keys_path(inst)}",
         changing(ops)[1].commands),
    ]


def test_a_host_deployed_before_keys_were_remembered_loses_the_redis_locking_key(local_release):
    """memcache.locking was set by earlier deploys, so Nextcloud copied it into config.php:
    without a delete the locks would stay in the cache Redis."""
    t = TENANTS["ulap"]
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2", "managed_keys": None}})
    ops, _ = plan(facts, ["ulap"], local=local_release)
    assert f"{occ_of(t)} config:system:delete memcache.locking" in commands(ops)


def test_the_old_unpack_marker_inside_the_code_tree_is_moved_out(local_release):
    """Nextcloud's integrity check lists any file of the code root it has no signature for."""
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2"}}, unpacked=False, old_marker=True)
    ops, _ = plan(facts, ["ulap"], local=local_release)
    old = f"{RELEASE.install_dir}/{releases.OLD_UNPACKED_MARKER}"
    assert [(op.name, op.commands) for op in changing(ops)] == [
        (f"Move the unpack marker of {RELEASE.label} out of its tree",
         [f"mv -f {old} {releases.unpacked_marker(RELEASE)}"])]


def test_per_user_quota_reaches_nextcloud_as_its_default_quota(local_release):
    t = TENANTS["ulap"]
    facts = host_facts(local_release, {"ulap": {"version": "34.0.4.2", "quota": "none"}})
    ops, _ = plan(facts, ["ulap"], local=local_release)
    assert [op.commands for op in changing(ops)] == [
        [f"{occ_of(t)} config:app:set files default_quota '--value={t.quotas.per_user}'"]]



def test_locks_are_not_in_the_redis_that_evicts_cache_keys():
    """Every cache key and every lock has a TTL in Nextcloud's Redis code, so no eviction policy
    of one shared Redis spares locks, and noeviction refuses lock writes once the cache fills."""
    from assotic.needs import RedisInstance
    from roles import redis

    t = TENANTS["ulap"]
    inst = nextcloud.instance(t)
    fragment = nextcloud.config_fragment(nextcloud.config_context(t, RELEASE, "x", {}))
    keys = nextcloud.fragment_keys(fragment)
    assert "memcache.local" in keys and "memcache.locking" not in keys
    conf = redis.redis_config(RedisInstance(inst, inst.secret("redis_password")), "x")
    assert "maxmemory-policy allkeys-lru" in conf.splitlines()


def test_the_assets_copy_holds_static_files_only(tmp_path, monkeypatch):
    """The timer's own rsync argv, run on a tree like <home>/apps: nginx's copy gets the .js,
    .css and images, never PHP code, a config file, or what a symlink points to."""
    import shutil
    import subprocess

    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed here (roles/base installs it on hosts)")
    inst = nextcloud.instance(TENANTS["ulap"])
    apps, copy = tmp_path / "apps", tmp_path / "assets"
    monkeypatch.setattr(nextcloud, "apps_dir", lambda _: str(apps))
    monkeypatch.setattr(nextcloud, "assets_dir", lambda _: str(copy))
    (apps / "calendar/js").mkdir(parents=True)
    (apps / "calendar/css").mkdir()
    (apps / "calendar/lib").mkdir()
    (apps / "calendar/js/calendar-main.mjs").write_text("export {}")
    (apps / "calendar/css/calendar.css").write_text("a{}")
    (apps / "calendar/img").mkdir()
    (apps / "calendar/img/app.svg").write_text("<svg/>")
    (apps / "calendar/lib/Controller.php").write_text("<?php")
    (apps / "calendar/appinfo").mkdir()
    (apps / "calendar/appinfo/info.xml").write_text("<info/>")
    secret = tmp_path / "config.php"
    secret.write_text("<?php $CONFIG = ['dbpassword' => 'x'];")
    (apps / "calendar/js/leak.js").symlink_to(secret)
    copy.mkdir()
    (copy / "stale.php").write_text("<?php")  # left by anything: removed
    argv = nextcloud.assets_sync_command(inst)
    subprocess.run(argv, check=True, capture_output=True)
    found = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file() or p.is_symlink())
    assert found == ["calendar/css/calendar.css", "calendar/img/app.svg", "calendar/js/calendar-main.mjs"]
    assert oct((copy / "calendar/css/calendar.css").stat().st_mode & 0o777) == "0o644"
    # A second run changes nothing (the timer runs every few minutes).
    again = subprocess.run([*argv[:1], "--itemize-changes", *argv[1:]], check=True,
                           capture_output=True, text=True)
    assert [line for line in again.stdout.splitlines() if not line.startswith("skipping")] == []


def test_the_nextcloud_vhost_serves_custom_apps_assets_from_the_copy():
    from roles.nginx.render import NginxSettings, vhost_config
    from roles.tls.model import CertPaths

    t = TENANTS["ulap"]
    inst = nextcloud.instance(t)
    [vhost] = nextcloud.nextcloud_needs(t, RELEASE).vhosts
    text = vhost_config(vhost, CertPaths("/etc/x/fullchain.pem", "/etc/x/privkey.pem"), NginxSettings())
    location = "location ~ ^/custom_apps/(.+\\.(?:" + "|".join(nextcloud.ASSET_EXTENSIONS) + "))$ {"
    assert location in text
    assert f"alias {nextcloud.assets_dir(inst)}/$1;" in text
    # Before the app's own static files location: nginx uses the first regex that matches.
    assert text.index(location) < text.index("location ~ \\.(?:css|js|mjs")
    assert inst.home not in text
