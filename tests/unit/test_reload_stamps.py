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
