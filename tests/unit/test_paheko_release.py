"""roles/paheko with a real release, planned against one FakeHost (no host, nothing runs).

States: first install, already current, upgrade to a new release, a second association on
the same host. Paheko has no maintenance mode to plan for: its CLI (include/lib/Paheko/CLI.php
at 1.3.18) has no such command and its code has no such switch; during `upgrade` it only
marks itself "Updating" in its static cache while the database is migrated.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import pytest
from fake_facts import FakeHost

from assotic import artifacts, preflight
from assotic.artifacts import Artifact
from assotic.tenants import load_tenants
from roles import paheko, releases

REPO = Path(__file__).resolve().parents[2]
TENANTS = {t.slug: t for _, t in load_tenants(REPO / "group_data" / "tenants")[0]}
ZERODECHET, TOITCOMMUN = TENANTS["zerodechet"], TENANTS["toitcommun"]  # both on web-2
RELEASE = Artifact("paheko", "1.3.18", "paheko-1.3.18.tar.gz",
                   "https://fossil.kd2.org/paheko/uv/paheko-1.3.18.tar.gz", "2" * 64)
NEXT = Artifact("paheko", "1.3.22.1", "paheko-1.3.22.1.tar.gz",
                "https://fossil.kd2.org/paheko/uv/paheko-1.3.22.1.tar.gz", "3" * 64)
UMASK = "runuser -u {user} -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh"


class Secrets:
    def get(self, name: str) -> str:
        return f"s3cr3t-{hashlib.sha1(name.encode()).hexdigest()[:12]}"


SECRETS = Secrets()


LOCAL = {}


@pytest.fixture(autouse=True)
def fresh_schedule(monkeypatch, tmp_path):
    monkeypatch.setattr(releases, "_scheduled", {})
    for release in (RELEASE, NEXT):  # the local files files.put uploads (their checksum is read)
        (tmp_path / release.filename).write_bytes(release.version.encode())
    LOCAL["dir"] = tmp_path


def config_state(tenant, release) -> tuple:
    text = paheko.config_local(tenant, SECRETS.get(f"tenants/{tenant.slug}/paheko/secret_key"), release)
    return (hashlib.sha1(text.encode()).hexdigest(), "root", f"paheko_{tenant.slug}", 0o640)


def facts_for(tenants_state: dict, unpacked: tuple[Artifact, ...] = ()) -> dict:
    """Facts of web-2: the releases already unpacked, and per tenant (schema version, config as
    rendered for which release or None)."""
    facts = {
             ("Directory", (("path", artifacts.REMOTE_CACHE),)): {"mode": 700, "user": "root", "group": "root"},
             ("Directory", (("path", artifacts.OPT_ROOT),)): {"mode": 755, "user": "root", "group": "root"}}
    for release in (RELEASE, NEXT):
        marker = releases.unpacked_marker(release)
        facts[("File", (("path", marker),))] = {"mode": 644} if release in unpacked else None
        # Where deploys before 2026-12 left the marker, inside the tree: none here.
        facts[("File", (("path", f"{release.install_dir}/{releases.OLD_UNPACKED_MARKER}"),))] = None
        # The uploaded file, as files.put sees it.
        facts[("File", (("path", release.remote_path),))] = (
            {"mode": 600, "user": "root", "group": "root"} if release in unpacked else None)
        facts[("Directory", (("path", release.remote_path),))] = None
        if release in unpacked:
            facts[("Sha1File", (("path", release.remote_path),))] = hashlib.sha1(
                release.version.encode()).hexdigest()
    for slug, (schema, config_for) in tenants_state.items():
        tenant = TENANTS[slug]
        inst = paheko.instance(tenant)
        config = paheko.config_path(inst)
        for leftover in ("config/standin.json", "data/standin-cron.txt", "data/standin.sqlite"):
            facts[("File", (("path", f"{inst.home}/{leftover}"),))] = None  # never a stand-in here
        facts[("File", (("path", config),))] = None if config_for is None else {"mode": 640}
        facts[("Directory", (("path", config),))] = None
        facts[("Directory", (("path", inst.config_dir),))] = {"mode": 750, "user": "root", "group": inst.user}
        facts[("Sha1File", (("path", config),))] = config_for and config_state(tenant, config_for)[0]
        facts[("Directory", (("path", inst.tmp_dir),))] = {"mode": 750, "user": inst.user, "group": inst.user}
        password = f"{inst.tmp_dir}/paheko-init-password"
        facts[("File", (("path", password),))] = None
        facts[("Directory", (("path", password),))] = None
        facts[("FolderFiles", (("folder", inst.config_dir),))] = (
            {config: config_state(tenant, config_for)} if config_for else {})
        facts[("PahekoSchemaVersion", (("db_file", paheko.db_file(inst)), ("user", inst.user)))] = schema
    return facts


def plan(facts: dict, *steps):
    host = FakeHost("web-2", {"web": ["web-2"]}, {}, facts)

    def run():
        for tenant, release in steps:
            paheko.paheko(tenant, release, LOCAL["dir"] / release.filename, SECRETS)

    return [op for op in host.plan(run) if op.commands]


def assert_no_secret_in(ops):
    secrets = [SECRETS.get(f"tenants/{t}/paheko/{n}") for t in TENANTS for n in ("secret_key", "admin_password")]
    for op in ops:
        for command in op.commands:
            for secret in secrets:
                assert secret not in command, (op.name, command)


def cli(tenant, release, *args) -> str:
    inst = paheko.instance(tenant)
    return shlex.join(["runuser", "-u", inst.user, "--", "sh", "-c", 'umask 0027 && unset TMPDIR && exec "$@"', "sh",
                       "/usr/bin/php", f"{release.install_dir}/bin/paheko", "--config",
                       paheko.config_path(inst), *args])


def test_first_install_unpacks_renders_and_creates_the_instance_as_its_user():
    ops = plan(facts_for({"zerodechet": (None, None)}), (ZERODECHET, RELEASE))
    names = [op.name for op in ops]
    assert names == [
        "Upload paheko-1.3.18.tar.gz",
        "Unpack paheko 1.3.18 (paheko-1.3.18.tar.gz) into /opt/assotic/paheko-1.3.18",
        "Render /srv/assotic/zerodechet/paheko/config/config.local.php",
        "Upload the first admin's password for paheko_zerodechet (0600)",
        "Create the Paheko instance of zerodechet (bin/paheko init)",
    ]
    init = ops[-1].commands
    password = "/srv/assotic/zerodechet/paheko/tmp/paheko-init-password"
    assert init == [cli(ZERODECHET, RELEASE, "init", "--country", "FR", "--orgname", ZERODECHET.name,
                        "--name", ZERODECHET.admins[0].name, "--email", ZERODECHET.admins[0].email,
                        "--password-file", password) + f"; rc=$?; rm -f {password}; exit $rc"]
    assert_no_secret_in(ops)


def test_already_current_plans_nothing():
    schema = paheko.schema_version(RELEASE.version)
    ops = plan(facts_for({"zerodechet": (schema, RELEASE)}, unpacked=(RELEASE,)), (ZERODECHET, RELEASE))
    assert ops == []


def test_upgrade_unpacks_the_new_release_rewrites_the_config_and_migrates_the_database():
    """bin/paheko refuses cron and queue runs while the database is older than the code
    (CLI.php: "The database requires an upgrade"): the deploy runs `upgrade` itself."""
    old = paheko.schema_version(RELEASE.version)
    ops = plan(facts_for({"zerodechet": (old, RELEASE)}, unpacked=(RELEASE,)), (ZERODECHET, NEXT))
    assert [op.name for op in ops] == [
        "Upload paheko-1.3.22.1.tar.gz",
        "Unpack paheko 1.3.22.1 (paheko-1.3.22.1.tar.gz) into /opt/assotic/paheko-1.3.22.1",
        "Render /srv/assotic/zerodechet/paheko/config/config.local.php",
        "Upgrade the Paheko database of zerodechet to 1.3.22.1 (bin/paheko upgrade)",
    ]
    # `upgrade` exits 2 when it did upgrade, 0 when there was nothing to do (CLI.php).
    assert ops[-1].commands == [cli(ZERODECHET, NEXT, "upgrade") + "; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 2 ]"]
    assert_no_secret_in(ops)


def test_a_database_newer_than_the_pin_is_refused():
    newer = paheko.schema_version(NEXT.version)
    with pytest.raises(ValueError, match="cannot be downgraded"):
        plan(facts_for({"zerodechet": (newer, RELEASE)}, unpacked=(RELEASE,)), (ZERODECHET, RELEASE))


def test_a_second_association_on_the_same_host_shares_the_code_and_gets_its_own_instance():
    state = {"zerodechet": (paheko.schema_version(RELEASE.version), RELEASE), "toitcommun": (None, None)}
    ops = plan(facts_for(state, unpacked=(RELEASE,)), (ZERODECHET, RELEASE), (TOITCOMMUN, RELEASE))
    assert [op.name for op in ops] == [
        "Render /srv/assotic/toitcommun/paheko/config/config.local.php",
        "Upload the first admin's password for paheko_toitcommun (0600)",
        "Create the Paheko instance of toitcommun (bin/paheko init)",
    ]
    assert ops[-1].commands[0].startswith(cli(TOITCOMMUN, RELEASE, "init"))
    assert_no_secret_in(ops)


def test_the_schema_version_fact_is_read_as_the_instance_user():
    from roles.paheko.facts import PahekoSchemaVersion
    fact = PahekoSchemaVersion()
    db = "/srv/assotic/ulap/paheko/data/association.sqlite"
    command = fact.command(user="paheko_ulap", db_file=db)
    # No database yet (a new host, where neither the user nor PHP exists at fact time): no runuser.
    assert command.startswith(f"if [ -e {db} ]; then " + UMASK.format(user="paheko_ulap") + " /usr/bin/php -r ")
    assert command.endswith(f" {db}; else echo absent; fi")
    import subprocess
    assert subprocess.run(["sh", "-c", fact.command(user="nobody-at-all", db_file="/nonexistent/x.sqlite")],
                          capture_output=True, text=True).stdout == "absent\n"
    assert fact.process(["1031800"]) == 1031800
    assert fact.process(["absent"]) is None
    with pytest.raises(ValueError):
        fact.process(["PHP Fatal error: ..."])


def test_schema_versions_are_paheko_s_own_encoding():
    # DB::parseVersion: major*1000000 + minor*10000 + release*100, corrective releases from 76.
    assert paheko.schema_version("1.3.18") == 1031800
    assert paheko.schema_version("1.3.22.1") == 1032276
    assert paheko.schema_version("1.3.9") < paheko.schema_version("1.3.10")


# -- what the upstream code needs of the layout ----------------------------------------------------


def test_the_timer_commands_and_pool_read_the_same_config():
    needs = paheko.paheko_needs(ZERODECHET, RELEASE)
    cron, queue = needs.timers
    config = "/srv/assotic/zerodechet/paheko/config/config.local.php"
    assert cron.command == ("/usr/bin/php", "/opt/assotic/paheko-1.3.18/bin/paheko", "--config", config, "cron")
    # CLI.php `queue run`: "Will exit with status code 2 if there are still messages waiting".
    assert queue.success_exit_status == (2,) and cron.success_exit_status == ()


def test_bundled_plugins_are_found_in_the_code_not_in_each_data_root():
    """init.php defaults PLUGINS_ROOT to DATA_ROOT/plugins; the release tarball ships its
    plugins in <code>/data/plugins (Makefile `release`), and DATA_ROOT is per association."""
    text = paheko.config_local(ZERODECHET, "k", RELEASE)
    assert "const PLUGINS_ROOT = '/opt/assotic/paheko-1.3.18/data/plugins';" in text


# -- make check: a pin that cannot work with this layout ------------------------------------------


def pin(version: str) -> dict:
    return {"version": version, "url": f"https://fossil.kd2.org/paheko/uv/paheko-{version}.tar.gz",
            "sha256": "4" * 64}


def test_make_check_refuses_a_paheko_older_than_the_layout_needs(monkeypatch):
    monkeypatch.delenv("ASSOTIC_RELEASES_OVERRIDE", raising=False)
    tenants = list(TENANTS.values())
    problems = preflight.release_pin_problems({"paheko": pin("1.3.12")}, tenants, {"web-1": "12", "web-2": "13"})
    assert [(p.file, p.field) for p in problems] == [("group_data/all.py", "releases.paheko.version")] * 2
    expected = " ".join(p.expected for p in problems)
    assert "$_ENV" in expected and "E_STRICT" in expected and "got '1.3.12'" in expected
    # Only the $_ENV reason applies where every Paheko host runs Debian 12.
    [only] = preflight.release_pin_problems({"paheko": pin("1.3.12")}, tenants, {"web-1": "12", "web-2": "12"})
    assert "$_ENV" in only.expected
    # A host whose release is not declared could be either.
    assert len(preflight.release_pin_problems({"paheko": pin("1.3.12")}, tenants, {})) == 2
    assert preflight.release_pin_problems({"paheko": pin("1.3.13")}, tenants, {}) == []
    assert preflight.release_pin_problems({"paheko": pin("1.3.18")}, tenants, {}) == []


def test_the_override_file_is_checked_too(monkeypatch, tmp_path):
    override = tmp_path / "override.json"
    override.write_text('{"paheko": ' + __import__("json").dumps(pin("1.3.12")) + "}")
    monkeypatch.setenv("ASSOTIC_RELEASES_OVERRIDE", str(override))
    problems = preflight.release_pin_problems({"paheko": pin("1.3.18")}, list(TENANTS.values()), {})
    assert {(p.file, p.field) for p in problems} == {(str(override), "paheko.version")}


def test_the_committed_pin_passes(monkeypatch):
    monkeypatch.delenv("ASSOTIC_RELEASES_OVERRIDE", raising=False)  # the data's pin, not a run's
    source = (REPO / "group_data" / "all.py").read_text()
    start = source.index("releases = {")
    end = source.index("\n}\n", start) + 3
    namespace: dict = {}
    exec(compile(source[start:end], "group_data/all.py", "exec"), namespace)  # the literal only
    releases = namespace["releases"]
    assert preflight.release_pin_problems(releases, list(TENANTS.values()), {}) == []
    assert releases["paheko"]["version"] == "1.3.18"


# -- files made between deploys --------------------------------------------------------------------


def test_commands_run_as_an_instance_user_make_no_world_readable_file():
    """runuser keeps its caller's umask (022 over SSH): Paheko's `init` made data/cache and
    data/backups world-readable, and the next deploy had to repair them."""
    import os
    import shutil
    import subprocess

    from assotic.needs import as_instance_user

    import tempfile

    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    if os.geteuid() != 0 or shutil.which("runuser", path=path) is None:
        pytest.skip("needs root and runuser")
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:  # a folder nobody can reach
        os.chmod(shared, 0o777)
        made = Path(shared) / "made"
        subprocess.run([*as_instance_user("nobody"), "sh", "-c", f"mkdir {made} && touch {made}/f"],
                       check=True, env={"PATH": path}, preexec_fn=lambda: os.umask(0o022))
        assert made.stat().st_mode & 0o777 == 0o750
        assert (made / "f").stat().st_mode & 0o777 == 0o640
        # Root's login TMPDIR (pam_tmpdir's /tmp/user/0) is not handed to the instance user.
        seen = subprocess.run([*as_instance_user("nobody"), "sh", "-c", 'echo "${TMPDIR-unset}"'], check=True,
                              env={"PATH": path, "TMPDIR": "/tmp/user/0"}, capture_output=True, text=True)
        assert seen.stdout.strip() == "unset"


def test_the_queue_unit_treats_mail_still_waiting_as_success():
    from roles.timers import timer_units

    cron, queue = paheko.paheko_needs(ZERODECHET, RELEASE).timers
    assert "SuccessExitStatus=2\n" in timer_units(queue)[0]
    assert "SuccessExitStatus" not in timer_units(cron)[0]
    assert "UMask=0027\n" in timer_units(queue)[0]
