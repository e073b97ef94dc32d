"""roles/timers: systemd timers that run a command as an instance's user.

Each `Timer` need becomes /etc/systemd/system/<unit>.service (Type=oneshot, the
instance's user, the command as an argv: no shell) and <unit>.timer (OnCalendar,
Persistent=true), enabled and started. systemd is reloaded only when a unit file
changed. Units this role wrote for timers no longer asked for are stopped and removed:
only files that carry MARKER, so timers of other roles are never touched.

No RandomizedDelaySec: the time a job runs is the one its role asked for. A role that
wants to spread daily jobs across associations derives the time from a hash of the
tenant (deterministic: the unit does not change from one deploy to the next).
"""

from __future__ import annotations

import re
from pathlib import Path

from assotic.templating import template_environment
from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import files, systemd

from assotic.needs import Timer
from roles.prepared import enable_and_start
from roles.remote_files import put_text, reload_after

__all__ = ["MARKER", "systemd_quote", "timer_units", "timers", "unit_paths"]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "timers"
UNIT_DIR = "/etc/systemd/system"
MARKER = "# assotic-timer: managed by roles/timers"
UNIT_NAME = re.compile(r"assotic-[a-z0-9_-]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_environment = template_environment(TEMPLATES_DIR)


class ManagedTimerUnits(FactBase[list]):
    """Unit names (without suffix) whose files in /etc/systemd/system carry MARKER."""

    def command(self) -> str:
        return (f"grep -l -x -F '{MARKER}' {UNIT_DIR}/assotic-*.timer {UNIT_DIR}/assotic-*.service"
                " 2>/dev/null || true")

    def process(self, output: list[str]) -> list[str]:
        names = {Path(line.strip()).name.rsplit(".", 1)[0] for line in output if line.strip()}
        return sorted(names)


# -- pure functions ---------------------------------------------------------------------


def systemd_quote(argument: str) -> str:
    """One argv element for ExecStart=, quoted so systemd passes it through unchanged.

    systemd expands specifiers (%) and $VARIABLES in ExecStart: both are doubled.
    https://www.freedesktop.org/software/systemd/man/latest/systemd.service.html#Command%20lines
    """
    if "\n" in argument:
        raise ValueError(f"timer command arguments cannot contain newlines: {argument!r}")
    escaped = (argument.replace("\\", "\\\\").replace('"', '\\"')
               .replace("%", "%%").replace("$", "$$"))
    return f'"{escaped}"' if (escaped != argument or not argument or re.search(r"[\s';]", argument)) \
        else argument


def environment_lines(timer: Timer) -> list[str]:
    lines = []
    for name, value in timer.environment:
        if not ENV_NAME.fullmatch(name) or "\n" in value:
            raise ValueError(f"timer {timer.unit}: bad environment entry {name!r}")
        lines.append(systemd_quote(f"{name}={value}").replace("$$", "$"))
    return lines


def timer_units(timer: Timer) -> tuple[str, str]:
    """(service unit text, timer unit text) of one Timer need."""
    if not UNIT_NAME.fullmatch(timer.unit):
        raise ValueError(f"timer unit {timer.unit!r}: expected assotic-<lowercase, digits, - or _>")
    if not timer.command or not timer.command[0].startswith("/"):
        raise ValueError(f"timer {timer.unit}: the command must start with an absolute path, "
                         f"got {timer.command!r}")
    for text in (timer.description, timer.on_calendar, timer.user, timer.working_directory or ""):
        if "\n" in text:
            raise ValueError(f"timer {timer.unit}: newline in {text!r}")
    for path in timer.writable_paths:
        # One path per ReadWritePaths= line, spelled as is: no space, quote or specifier.
        if not re.fullmatch(r"/[^\s\"'%\\]*", path):
            raise ValueError(f"timer {timer.unit}: writable path {path!r} must be absolute, "
                             "without spaces, quotes, '%' or backslashes")
    if not all(isinstance(status, int) and 0 < status < 256 for status in timer.success_exit_status):
        raise ValueError(f"timer {timer.unit}: success exit statuses are 1 to 255, "
                         f"got {timer.success_exit_status!r}")
    exec_start = " ".join(systemd_quote(arg) for arg in timer.command)
    context = {"timer": timer, "marker": MARKER, "exec_start": exec_start,
               "environment": environment_lines(timer)}
    return (_environment.get_template("unit.service.j2").render(**context),
            _environment.get_template("unit.timer.j2").render(**context))


def unit_paths(unit: str) -> tuple[str, str]:
    return f"{UNIT_DIR}/{unit}.service", f"{UNIT_DIR}/{unit}.timer"


# -- operations ---------------------------------------------------------------------------


@deploy("Timers")
def timers(timers: list[Timer]) -> None:
    units = [t.unit for t in timers]
    if len(units) != len(set(units)):
        raise ValueError(f"roles/timers: duplicate units in {units}")

    changed = []
    for timer in timers:
        service_text, timer_text = timer_units(timer)
        service_path, timer_path = unit_paths(timer.unit)
        changed += [put_text(service_path, service_text), put_text(timer_path, timer_text)]

    stale = [u for u in host.get_fact(ManagedTimerUnits) or [] if u not in units]
    for unit in stale:
        systemd.service(name=f"Stop and disable {unit}.timer", service=f"{unit}.timer",
                        running=False, enabled=False)
        for path in unit_paths(unit):
            changed.append(files.file(name=f"Remove {path}", path=path, present=False))

    if changed:
        reload_after("Reload systemd units (timers)", "systemctl daemon-reload", changed,
                     stamp="daemon-reload-timers",
                     covers=[path for timer in timers for path in unit_paths(timer.unit)])
    enable_and_start(f"{timer.unit}.timer" for timer in timers)
