"""roles.remote_files.ChangedSinceStamp: the fact that makes a reload run again after a deploy
was killed between a file change and its reload. Its command runs here, in a temporary folder."""

from __future__ import annotations

import os
import subprocess

from roles.remote_files import ChangedSinceStamp


def pending(stamp, *paths) -> bool:
    fact = ChangedSinceStamp()
    result = subprocess.run(["sh", "-c", fact.command(str(stamp), tuple(str(p) for p in paths))],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    return fact.process(lines) if lines else ChangedSinceStamp.default()


def test_a_change_after_the_last_reload_is_pending_until_the_next_one(tmp_path):
    pools, ini, stamp = tmp_path / "pool.d", tmp_path / "php.ini", tmp_path / "stamp"
    pools.mkdir()
    (pools / "a.conf").write_text("[a]\n")
    ini.write_text("x=1\n")
    assert pending(stamp, pools, ini), "never reloaded (no stamp): pending"

    stamp.touch()
    os.utime(stamp, (1_000_000_000, 1_000_000_000))  # the last reload, long ago
    os.utime(pools, (900_000_000, 900_000_000))
    os.utime(pools / "a.conf", (900_000_000, 900_000_000))
    os.utime(ini, (900_000_000, 900_000_000))
    assert not pending(stamp, pools, ini), "nothing changed since the reload"

    (pools / "a.conf").write_text("[a]\npm = ondemand\n")  # written, then the deploy was killed
    assert pending(stamp, pools, ini)

    os.utime(pools / "a.conf", (900_000_000, 900_000_000))
    (pools / "a.conf").unlink()  # a pool removed: its folder changed
    assert pending(stamp, pools, ini)

    stamp.touch()  # the reload ran
    assert not pending(stamp, pools, ini)
    assert not pending(stamp, tmp_path / "missing.conf"), "a path that is not there is no change"


def planned_reload(pending_on_host: bool, changed_now: bool):
    from fake_facts import FakeHost

    from roles.remote_files import Unchanged, reload_after

    class ChangedHere:
        @staticmethod
        def did_change() -> bool:
            return True

    fake = FakeHost("web-1", {"web": ["web-1"]}, {}, {"ChangedSinceStamp": pending_on_host})
    [op] = fake.plan(lambda: reload_after("Restart x", "systemctl restart x",
                                          [ChangedHere() if changed_now else Unchanged()],
                                          stamp="x", covers=["/etc/x.conf"]))
    return op


def test_reload_after_runs_for_a_change_now_or_one_left_by_a_killed_deploy():
    for pending_on_host, changed_now, runs in ((False, False, False), (False, True, True),
                                               (True, False, True)):
        op = planned_reload(pending_on_host, changed_now)
        assert op.global_arguments["_if"]() is runs, (pending_on_host, changed_now)
    # The stamp is written, with the paths it covers, only once the command succeeded.
    assert op.commands == ["systemctl restart x && install -d -m 0755 /var/lib/assotic/reloaded "
                           "&& printf '%s\\n' /etc/x.conf > /var/lib/assotic/reloaded/x"]


RELOAD_WORDS = ("reload", "restart", "load /etc/", "systemctl stop")


def test_every_reload_in_the_roles_survives_a_killed_deploy():
    """An operation that reloads or restarts a service only when this deploy changed a file
    (`_if=...`) is never run again if the deploy is killed in between: roles use
    remote_files.reload_after. Found by reading the roles' source."""
    import ast
    import re
    from pathlib import Path

    roles = Path(__file__).resolve().parents[2] / "roles"
    offenders = []
    for source in sorted(set(roles.rglob("*.py")) - {roles / "remote_files.py"}):
        for node in ast.walk(ast.parse(source.read_text())):
            condition = next((k.value for k in getattr(node, "keywords", ()) if k.arg == "_if"), None)
            if not isinstance(node, ast.Call) or condition is None:
                continue
            # Only this deploy's changes: `<op>.did_change` or `any_changed(...)`.
            only_changes = re.fullmatch(r"\w+\.did_change|any_changed\(.*\)", ast.unparse(condition))
            if only_changes and any(word in ast.unparse(node).lower() for word in RELOAD_WORDS):
                offenders.append(f"{source.relative_to(roles.parent)}:{node.lineno}")
    assert offenders == [], f"reloads conditioned on this deploy's changes only: {offenders}"
