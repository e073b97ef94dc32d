"""`make drill` in the lab: the latest snapshots of ulap restored into a throw-away lab host.

Runs last (tests/lab/conftest.py), on the lab the other files deployed: backups of ulap's
three apps are taken, then `python -m commands drill` (what `make drill` runs) starts slot 8,
deploys ulap there, restores, checks and must pass; its figures are in drill/results.json
and the throw-away containers are gone afterwards.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.lab.test_backup import REPO, VENV_BIN, WEB, app_answers, run, start_backups

APPS = ("nextcloud", "paheko", "mattermost")


@pytest.fixture(scope="module")
def drill_output():
    run(str(VENV_BIN / "python"), "-m", "lab", "up")
    app_answers(WEB, "paheko")  # the stand-in makes its SQLite file on first use
    start_backups(WEB, jobs=tuple(f"ulap-{app}" for app in APPS))
    result = run(str(VENV_BIN / "python"), "-m", "commands", "drill", "--inventory", "inventory/lab.py",
                 "--tenant", "ulap", check=False)
    return result


def test_the_drill_restores_and_checks_every_app_of_the_tenant(drill_output):
    assert drill_output.returncode == 0, drill_output.stdout[-3000:] + drill_output.stderr[-3000:]
    results = json.loads((REPO / "drill" / "results.json").read_text())
    assert results["passed"] is True
    by_app = {r["app"]: r for r in results["results"]}
    assert sorted(by_app) == sorted(APPS)
    for app, r in by_app.items():
        assert r["checks"] == {"answers": "ok", "database": "ok"}, app
        assert r["snapshot"] and 0 <= r["age_hours"] < 1 and r["restore_seconds"] > 0, app
    table = drill_output.stdout
    assert "age" in table and "restore" in table and "drill: PASSED" in table


def test_the_throw_away_lab_is_removed(drill_output):
    names = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert [n for n in names if n.startswith("assotic-lab8-")] == []
