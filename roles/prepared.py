"""Facts read once per host while pyinfra prepares a deploy, and the steps they let a role skip.

pyinfra 3 does not cache facts: every `host.get_fact` runs its command over SSH again, and
each `systemd.service` or `server.user` operation reads its own facts (systemd status,
every account of the host) when it runs. With many associations on a host that is most of
a deploy that changes nothing (`make bench`, no-op re-run). So:
  - `prepared_fact` asks a fact once per host and arguments while pyinfra prepares; nothing
    runs on the host before the operations do, so the answer cannot change in between;
  - `enable_and_start` reads the state of many units in one command and adds a
    `systemd.service` operation only for a unit that is not already enabled and running;
  - `system_accounts` reads many accounts in one command and adds `server.group` and
    `server.user` operations only for an account that is missing or differs.
When in doubt they add the operation: pyinfra then decides as it always does.
"""

from __future__ import annotations

import shlex
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.state import StateStage
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import server, systemd

_answers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pyinfra State -> {key: answer}


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def prepared_fact(fact, **arguments):
    """`host.get_fact(fact, **arguments)`, run once per host and arguments while preparing."""
    state = host.state
    if state.current_stage != StateStage.Prepare:
        return host.get_fact(fact, **arguments)
    answers = _answers.setdefault(state, {})
    key = (host.name, fact, tuple(sorted((k, _frozen(v)) for k, v in arguments.items())))
    if key not in answers:
        answers[key] = host.get_fact(fact, **arguments)
    return answers[key]


def enable_and_start(units: Iterable[str]) -> None:
    """Each unit enabled and running: an operation only for those that are not yet.

    The same facts and the same meaning of "running" and "enabled" as pyinfra's
    systemd.service, read for all the units in one command each.
    """
    for unit in not_yet_enabled_and_running(units):
        systemd.service(name=f"Enable and start {unit}", service=unit, running=True, enabled=True)


def not_yet_enabled_and_running(units: Iterable[str]) -> list[str]:
    """The units, in order, that are not both enabled and running (two commands for all)."""
    units = list(dict.fromkeys(units))
    if not units:
        return []
    running = prepared_fact(SystemdStatus, services=units)
    enabled = prepared_fact(SystemdEnabled, services=units)
    return [unit for unit in units if not (running.get(unit) and enabled.get(unit))]


@dataclass(frozen=True)
class SystemAccount:
    """A system user with its own group of the same name, no login, no other group."""

    user: str
    home: str
    shell: str
    comment: str


class AccountStates(FactBase):
    """{user: "<home>|<shell>|<comment>|<group names, primary first>"} of the users that exist."""

    def command(self, users: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(u) for u in users)
        return (f"for u in {quoted}; do e=$(getent passwd \"$u\") || continue; "
                "printf '%s|%s|%s|%s|%s\\n' \"$u\" \"$(echo \"$e\" | cut -d: -f6)\" "
                "\"$(echo \"$e\" | cut -d: -f7)\" \"$(echo \"$e\" | cut -d: -f5)\" \"$(id -Gn \"$u\")\"; done")

    @staticmethod
    def default() -> dict:
        return {}  # none of them exists

    def process(self, output: list[str]) -> dict[str, str]:
        return {line.split("|", 1)[0]: line.split("|", 1)[1] for line in output if "|" in line}


def account_state(account: SystemAccount) -> str:
    """What AccountStates reads for `account` once it is as wanted."""
    return f"{account.home}|{account.shell}|{account.comment}|{account.user}"


def system_accounts(accounts: Iterable[SystemAccount]) -> None:
    """Each account's group and user: operations only for accounts missing or different."""
    accounts = list(dict.fromkeys(accounts))
    if not accounts:
        return
    found = prepared_fact(AccountStates, users=tuple(a.user for a in accounts))
    for account in accounts:
        if found.get(account.user) == account_state(account):
            continue
        server.group(name=f"Create group {account.user}", group=account.user, system=True)
        server.user(
            name=f"Create user {account.user}",
            user=account.user,
            group=account.user,
            groups=[],
            home=account.home,
            shell=account.shell,
            system=True,
            create_home=False,
            ensure_home=False,  # the home is root's, made by the caller
            comment=account.comment,
        )
