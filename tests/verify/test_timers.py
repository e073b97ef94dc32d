"""What roles/timers promises: each timer active, and its command really runs as its user."""

from __future__ import annotations

import pytest

from roles import timers

pytestmark = pytest.mark.hosts_in("web")


@pytest.fixture(scope="module")
def needs(needs):
    if not needs.timers:
        pytest.skip("no timer on this host")
    return needs


def test_unit_files_are_as_rendered(host, needs):
    for timer in needs.timers:
        for path, text in zip(timers.unit_paths(timer.unit), timers.timer_units(timer), strict=True):
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


def test_every_job_runs_successfully_as_its_user(host, needs):
    """Run each job's service once, as its timer would, and check how it ended: a timer
    that fires a failing job would otherwise fail quietly until somebody looks."""
    for timer in needs.timers:
        assert host.check_output(f"systemctl show -P User {timer.unit}.service") == timer.user
        host.run(f"systemctl start {timer.unit}.service")
        assert host.check_output(f"systemctl show -P Result {timer.unit}.service") == "success", \
            host.check_output(f"journalctl -u {timer.unit}.service -n 20 --no-pager")
