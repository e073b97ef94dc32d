"""The systemd units the deploy writes or changes are sandboxed, on the host itself.

Which units: the host's plan says (roles/units.py project_units, from deploy.py's plan). How
exposed: `systemd-analyze security`, as systemd on this host scores the unit it loaded, against
the limit of its kind (roles/units.py MAX_EXPOSURE, docs/units.md). Each figure is printed:
`pytest -s` shows it. Then, for each unit running now, the kernel's view of its main process
(/proc/<pid>/status and mountinfo): the settings systemd reports are really in force, not
silently dropped (a container without file system namespacing, say).
"""

from __future__ import annotations

import re

import pytest

from roles.units import MAX_EXPOSURE, project_units

EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


@pytest.fixture(scope="module")
def units(plan, data):
    found = project_units(plan, data)
    if not found:
        pytest.skip("the deploy writes no unit on this host")
    return found


def exposure(host, unit: str) -> float:
    result = host.run(f"systemd-analyze security --no-pager {unit}")
    match = EXPOSURE.search(result.stdout)
    assert result.rc == 0 and match, f"{unit}: {result.stdout[-300:]} {result.stderr}"
    return float(match.group(1))


def test_each_unit_is_within_its_exposure_limit(host, pyinfra_host, units):
    version = host.check_output("systemctl --version").splitlines()[0]
    too_exposed = []
    for unit in units:
        level, limit = exposure(host, unit.name), MAX_EXPOSURE[unit.kind]
        print(f"\n{pyinfra_host.name} ({version}): {unit.name} exposure {level:.1f} "
              f"(limit for {unit.kind}: {limit:.1f})", end="")
        if level > limit:
            too_exposed.append(f"{unit.name}: {level:.1f} > {limit:.1f}")
    assert not too_exposed, too_exposed


def _show(host, unit: str, *properties: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in properties))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _proc(host, pid: str, name: str, user: str) -> str:
    """/proc/<pid>/<name>, read as root or, where root may not (a container without
    CAP_SYS_PTRACE), as the process's own user."""
    result = host.run(f"cat /proc/{pid}/{name}")
    if result.rc != 0 and user not in ("", "root"):
        result = host.run(f"runuser -u {user} -- cat /proc/{pid}/{name}")
    return result.stdout if result.rc == 0 else ""


def _executed_status(host, unit: str, pid: str, user: str, attempts: int = 10) -> dict[str, str]:
    """/proc/<pid>/status of the unit's main process once it runs its own program, or {} when
    it is gone first. Until then it is systemd's forked child, named "(<program>)", which
    applies the sandbox (no_new_privs, seccomp, capabilities) just before exec: a oneshot
    started by its timer a moment ago can be caught there (seen after a restart in CI)."""
    for _ in range(attempts):
        status = dict(line.split(":", 1) for line in _proc(host, pid, "status", user).splitlines()
                      if ":" in line)
        if not status or _show(host, unit, "MainPID").get("MainPID") != pid:
            return {}  # it ended (and its PID may already be another process's)
        if not status.get("Name", "").strip().startswith("("):
            return status
        host.run("sleep 0.5")
    return {}


def test_running_units_are_sandboxed_in_fact(host, units):
    checked = 0
    for unit in units:
        show = _show(host, unit.name, "MainPID", "User", "NoNewPrivileges", "SystemCallFilter",
                     "CapabilityBoundingSet", "ProtectSystem")
        if show.get("MainPID", "0") == "0":
            continue  # a oneshot job between runs, or a unit that is stopped
        pid, user = show["MainPID"], show.get("User", "")
        status = _executed_status(host, unit.name, pid, user)
        if not status:
            continue  # a oneshot that ended while it was being looked at
        if show["NoNewPrivileges"] == "yes":
            assert status["NoNewPrivs"].strip() == "1", unit.name
        if show["SystemCallFilter"]:
            assert status["Seccomp"].strip() == "2", unit.name  # 2: a filter is installed
        if show["CapabilityBoundingSet"] == "":
            assert int(status["CapBnd"], 16) == 0, unit.name
        mountinfo = _proc(host, pid, "mountinfo", user)
        if show["ProtectSystem"] == "strict":
            if mountinfo:
                root = [line.split() for line in mountinfo.splitlines() if line.split()[4] == "/"]
                assert root and "ro" in root[-1][5].split(","), f"{unit.name}: / is not read-only"
            else:  # a process with capabilities, in a container without CAP_SYS_PTRACE
                print(f"\n{unit.name}: mountinfo not readable here, / not checked", end="")
        checked += 1
    print(f"\n{checked} running unit(s) checked in /proc", end="")
