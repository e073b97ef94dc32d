"""`make update` in the lab: a pin bump applied to the canary, and a failed health check rolled back.

Runs last (tests/lab/conftest.py) on the same lab. What is real: the release markers, the
fresh backup (restic to backup-1), the deploy limited to web-1 with the other instances held
on their release, the health check through nginx, the restore of the pre-update snapshot and
the deploy of the previous pin. What is not: the lab has no Paheko release, so the "upgrade"
from the pin (1.3.18) to 1.3.19 (a local pin override, as a developer would bump `releases`) keeps the
stand-in and changes only its release marker; the failed health check is a rehearsal
(--drill-fail-health: the real check runs and passes, the drill then reports it failed).
"""

from __future__ import annotations

import json
import os

import pytest

from assotic.runlog import changed_operation_names

from test_backup import INVENTORY, VENV_BIN, WEB, app_answers, run, sh

MARKERS = "/var/lib/assotic/releases"
PINNED = "1.3.18"  # releases["paheko"] in group_data/all.py
BUMPED = "1.3.19"
BUMP = {"paheko": {"version": BUMPED, "url": f"https://fossil.kd2.org/paheko/uv/paheko-{BUMPED}.tar.gz",
                   "sha256": "13" * 32}}


def marker_versions(host: str) -> dict[str, str]:
    out = sh(host, f"for f in {MARKERS}/*.json; do jq -c '[.tenant // .instance, .app, .version]' $f; done").stdout
    return {f"{t}/{a}": v for t, a, v in (json.loads(line) for line in out.splitlines())}


def update(*args: str, env: dict, check: bool = True):
    return run(str(VENV_BIN / "python"), "-m", "commands", "update", "--inventory", INVENTORY, *args,
               env=env, check=check)


@pytest.fixture(scope="module")
def bumped(tmp_path_factory):
    """The lab, deployed (markers present), and an environment where Paheko's pin is BUMPED."""
    run(str(VENV_BIN / "python"), "-m", "lab", "up")
    if "ulap/paheko" not in marker_versions(WEB):
        run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py")
    assert marker_versions(WEB)["ulap/paheko"] == PINNED
    override = tmp_path_factory.mktemp("pins") / "bump.json"
    override.write_text(json.dumps(BUMP))
    yield {**os.environ, "ASSOTIC_RELEASES_OVERRIDE": str(override)}
    # Back to the data's pins: the deploy rewrites ulap's Paheko marker, and nothing else.
    result = run(str(VENV_BIN / "pyinfra"), "-y", "--limit", WEB, INVENTORY, "deploy.py")
    assert changed_operation_names(result.stdout + result.stderr, WEB) == \
        [f"Render {MARKERS}/ulap-paheko.json"]


def test_the_plan_puts_the_canary_first_and_dry_run_changes_nothing(bumped):
    plan = update("--dry-run", env=bumped).stdout
    lines = [line.strip() for line in plan.splitlines() if "/paheko on " in line]
    assert lines[0].startswith("1. ulap/paheko on web-1") and "[canary, stand-in]" in lines[0]
    assert len(lines) == 3 and all(f"{PINNED} -> {BUMPED}" in line for line in lines)
    assert marker_versions(WEB)["ulap/paheko"] == PINNED


def test_a_failed_health_check_restores_the_snapshot_and_the_previous_release(bumped):
    result = update("--tenant", "ulap", "--drill-fail-health", "ulap/paheko", env=bumped, check=False)
    out = result.stdout
    assert result.returncode == 1
    snapshot = next(line.split()[-1] for line in out.splitlines() if "fresh backup: snapshot" in line)
    assert f"ROLLBACK of ulap/paheko: restore snapshot {snapshot}" in out
    assert f"rollback done: ulap/paheko runs {PINNED} again, health check ok" in out
    assert "the canary ulap failed; no other association was touched" in out
    assert marker_versions(WEB)["ulap/paheko"] == PINNED
    assert app_answers(WEB, "paheko")["standin"] is True


def test_an_update_moves_the_canary_instance_only(bumped):
    before = marker_versions(WEB)
    result = update("--tenant", "ulap", env=bumped)
    assert f"health check ok; ulap/paheko runs {BUMPED}" in result.stdout
    after = marker_versions(WEB)
    assert after == {**before, "ulap/paheko": BUMPED}  # Nextcloud and Mattermost held
    assert "nothing to do" in update("--tenant", "ulap", "--dry-run", env=bumped).stdout


MM_BUMP = {"mattermost": {"version": "11.2.0",
                          "url": "https://releases.mattermost.com/11.2.0/mattermost-team-11.2.0-linux-amd64.tar.gz",
                          "sha256": "11" * 32}}


def test_a_mattermost_instance_is_updated_alone(bumped, tmp_path):
    """ulap's own Mattermost instance moves (backup job, deploy, health check through nginx);
    the shared instance `chat` on the same host stays on what it runs. Stand-ins: only the
    marker changes, as for Paheko above."""
    override = tmp_path / "mattermost.json"
    override.write_text(json.dumps({**BUMP, **MM_BUMP}))
    env = {**bumped, "ASSOTIC_RELEASES_OVERRIDE": str(override)}
    before = marker_versions(WEB)
    plan = update("--dry-run", env=env).stdout
    assert "ulap/mattermost on web-1" in plan and "chat/mattermost on web-1" in plan
    try:
        result = update("--tenant", "ulap", env=env)
        assert "fresh backup: snapshot" in result.stdout
        assert "health check ok; ulap/mattermost runs 11.2.0" in result.stdout
        assert marker_versions(WEB) == {**before, "ulap/mattermost": "11.2.0"}  # chat held
    finally:
        # Back to the pins of the other tests: only this instance's marker is rewritten.
        back = run(str(VENV_BIN / "pyinfra"), "-y", "--limit", WEB, INVENTORY, "deploy.py", env=bumped)
        assert changed_operation_names(back.stdout + back.stderr, WEB) == \
            [f"Render {MARKERS}/mattermost-instance-ulap.json"]
