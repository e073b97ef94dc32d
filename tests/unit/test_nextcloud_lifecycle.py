"""roles/nextcloud: install, upgrade or nothing, decided from config.php (no occ needed)."""

from __future__ import annotations

import subprocess

import pytest

from roles.nextcloud import lifecycle_step, version_tuple
from roles.nextcloud.facts import NextcloudConfigState, parse_config_state

CONFIG_PHP = """<?php
$CONFIG = array (
  'instanceid' => 'oc1a2b3c',
  'installed' => true,
  'version' => '34.0.4.2',
  'maintenance' => false,
  'dbtype' => 'pgsql',
);
"""


def read_state(tmp_path, text: str | None) -> dict:
    """The fact's own shell command, run on a real file, then its process()."""
    path = tmp_path / "config.php"
    if text is not None:
        path.write_text(text)
    fact = NextcloudConfigState()
    output = subprocess.run(["sh", "-c", fact.command(str(path))], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    return fact.process(output)


def test_the_fact_reads_installed_version_and_maintenance_from_config_php(tmp_path):
    assert read_state(tmp_path, CONFIG_PHP) == {"installed": True, "version": "34.0.4.2", "maintenance": False}
    assert read_state(tmp_path, CONFIG_PHP.replace("'maintenance' => false", "'maintenance' => true"))["maintenance"]
    assert read_state(tmp_path, "<?php\n$CONFIG = array();\n") == \
        {"installed": False, "version": None, "maintenance": False}  # the empty file the role puts
    assert read_state(tmp_path, None)["installed"] is False  # no config.php yet


def test_install_upgrade_or_current():
    installed = parse_config_state(["'installed' => true", "'version' => '34.0.4.2'"])
    assert lifecycle_step({}, "34.0.4") == "install"
    assert lifecycle_step(installed, "34.0.4") == "current"
    assert lifecycle_step(installed, "34.0.5") == "upgrade"
    assert lifecycle_step(installed, "35.0.1") == "upgrade"
    with pytest.raises(ValueError, match="cannot be downgraded"):
        lifecycle_step(installed, "34.0.3")


def test_versions_compare_as_numbers():
    assert version_tuple("34.0.10") > version_tuple("34.0.9")
    assert version_tuple("34.0.4.2") == version_tuple("34.0.4")
