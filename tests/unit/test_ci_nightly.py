"""ci/nightly/: the GitLab CI and Forgejo Actions files parse, and call only what exists."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NIGHTLY = REPO / "ci" / "nightly"
CI_FILES = [NIGHTLY / ".gitlab-ci.yml", NIGHTLY / "forgejo-nightly.yml"]
# `make <target>` where a command starts (line start, after ; && || | or $( ), not `apt-get install make`.
MAKE_CALL = re.compile(r"(?:^|[;&|(])\s*make\s+(?:-\S+\s+)*([a-z][a-z0-9_-]*)", re.MULTILINE)
SCRIPT_CALL = re.compile(r"\b(ci/nightly/[\w.-]+\.sh)\b")


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][a-zA-Z0-9_-]*):", text, re.MULTILINE))


def shell_lines(node) -> list[str]:
    """Every string under script/before_script/after_script (GitLab) or run (Forgejo) keys."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"script", "before_script", "after_script", "run"}:
                found += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
            else:
                found += shell_lines(value)
    elif isinstance(node, list):
        for item in node:
            found += shell_lines(item)
    return found


def commands_of(ci_file: Path) -> str:
    """The shell the CI file runs, with the scripts of ci/nightly it calls."""
    lines = shell_lines(yaml.safe_load(ci_file.read_text()))
    text = "\n".join(lines)
    for script in sorted(set(SCRIPT_CALL.findall(text))):
        text += "\n" + (REPO / script).read_text()
    return text


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda p: p.name)
def test_every_make_target_called_exists(ci_file):
    called = set(MAKE_CALL.findall(commands_of(ci_file)))
    assert {"verify", "backup-status", "update", "pins-fingerprint"} <= called
    assert called - makefile_targets() == set(), f"{ci_file.name} calls targets missing from the Makefile"


@pytest.mark.parametrize("ci_file", CI_FILES, ids=lambda p: p.name)
def test_every_script_called_exists_and_is_executable(ci_file):
    scripts = set(SCRIPT_CALL.findall("\n".join(shell_lines(yaml.safe_load(ci_file.read_text())))))
    assert "ci/nightly/install-secrets.sh" in scripts
    for script in scripts:
        assert os.access(REPO / script, os.X_OK), script


def test_gitlab_runs_on_schedules_only_and_update_after_both_checks():
    ci = yaml.safe_load(CI_FILES[0].read_text())
    assert {r["if"] for r in ci["workflow"]["rules"]} == {'$CI_PIPELINE_SOURCE == "schedule"',
                                                         '$CI_PIPELINE_SOURCE == "web"'}
    assert ci["update"]["needs"] == ["verify", "backup-status"]
    assert ci["update"]["resource_group"] == "production"


def test_forgejo_runs_on_a_schedule_and_update_after_both_checks():
    ci = yaml.safe_load(CI_FILES[1].read_text())
    triggers = ci[True] if True in ci else ci["on"]  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    assert ci["jobs"]["update"]["needs"] == ["verify", "backup-status"]
    for job in ci["jobs"].values():  # secrets only through the step's env, into install-secrets.sh
        for step in job["steps"]:
            if "secrets." in str(step):
                assert step.get("run") == "ci/nightly/install-secrets.sh", step


def test_install_secrets_never_traces_nor_prints_a_value():
    script = (NIGHTLY / "install-secrets.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    assert "set -x" not in code and "umask 077" in code
    for name in ("ASSOTIC_SECRETS_KEY_B64", "ASSOTIC_SSH_KEY_B64"):
        for line in code.splitlines():
            if name in line and "printf" in line:
                assert "base64 -d >" in line, line
            assert not re.search(rf"echo[^\n]*\${{?{name}\b", line), line
