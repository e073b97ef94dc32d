"""What roles/timers promises: each timer active, and its command really runs as its user."""

from __future__ import annotations

import pytest

from roles import timers
from roles.php.stand_in_needs import TIMER_MARK, stand_in_needs

pytestmark = pytest.mark.hosts_in("web")


@pytest.fixture(scope="module")
def needs(data, pyinfra_host):
    found = stand_in_needs(data.platform.tenants_on(pyinfra_host.name), pyinfra_host.name)
    if not found.timers:
        pytest.skip("no timer on this host")
    return found


def test_unit_files_are_as_rendered(host, needs):
    for timer in needs.timers:
        for path, text in zip(timers.unit_paths(timer.unit), timers.timer_units(timer)):
            f = host.file(path)
            assert (f.user, f.group, f.mode) == ("root", "root", 0o644), path
            assert f.content_string == text, path


def test_timers_are_active_and_enabled(host, needs):
    for timer in needs.timers:
        unit = host.service(f"{timer.unit}.timer")
        assert unit.is_running and unit.is_enabled, timer.unit


def test_no_stale_managed_timer(host, needs):
    found = host.check_output(f"grep -l -x -F '{timers.MARKER}' /etc/systemd/system/assotic-*.timer || true")
    names = sorted(line.rsplit("/", 1)[1].removesuffix(".timer") for line in found.split())
    assert names == sorted(t.unit for t in needs.timers)


def test_stand_in_job_ran_as_its_user(host, needs):
    """TEMPORARY stand-in timers touch <home>/tmp/timer-ran. If the timer has not fired yet
    (a fresh deploy), run its service once, as the timer would."""
    for pool, timer in zip(needs.pools, needs.timers):
        mark = host.file(f"{pool.instance.tmp_dir}/{TIMER_MARK}")
        if not mark.exists:
            host.check_output(f"systemctl start {timer.unit}.service")
        assert mark.exists and mark.user == timer.user, timer.unit
        assert host.check_output(f"systemctl show -P Result {timer.unit}.service") == "success"
