"""Run a role's plan in pyinfra's prepare stage against a fake host whose facts are stubbed.

Nothing connects and nothing executes: pyinfra records the operations a deploy function
would run, and each operation's commands are generated against the same stubbed facts.
A fact the test did not provide fails loudly (no silent default hides a new dependency).
FakeHost is the one fake of pyinfra's host for the whole unit suite: plan with it, not with a
stand-in object that answers get_fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from unittest import mock

import pyinfra.api.host as pyinfra_host_module
from pyinfra.api import Config, Inventory, State
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state


class UnexpectedFact(AssertionError):
    pass


@dataclass
class PlannedOp:
    name: str
    commands: list[str]
    global_arguments: dict


def _key(fact_cls, kwargs) -> tuple:
    def freeze(value):
        return tuple(value) if isinstance(value, list) else value

    return (fact_cls.__name__, tuple(sorted((k, freeze(v)) for k, v in (kwargs or {}).items()
                                            if v is not None)))


class FakeHost:
    """facts: {"Name": value} or {("Name", (("path", "/x"),)): value} (exact arguments win)."""

    def __init__(self, name: str, groups: dict[str, list[str]], data: dict, facts: dict,
                 other_hosts: dict[str, dict] | None = None):
        hosts = {name: data, **(other_hosts or {})}
        group_args = {g: ([h for h in members], {}) for g, members in groups.items()}
        self.inventory = Inventory(([(h, d) for h, d in hosts.items()], {}), **group_args)
        self.state = State(self.inventory, Config())
        self.state.current_stage = StateStage.Prepare
        self.host = self.inventory.get_host(name)
        self.facts = {"TmpDir": "/tmp", **facts}
        self.asked: list[tuple] = []

    def _get_fact(self, state, host, fact_cls, args=None, kwargs=None, **_):
        key = _key(fact_cls, kwargs)
        self.asked.append(key)
        if key in self.facts:
            return self.facts[key]
        if fact_cls.__name__ in self.facts:
            return self.facts[fact_cls.__name__]
        raise UnexpectedFact(f"fact {key} was not stubbed for {self.host.name}")

    def plan(self, function, *args, **kwargs) -> list[PlannedOp]:
        """Run `function` (a @deploy or plain function of operations) and list its operations."""
        with mock.patch.object(pyinfra_host_module, "get_fact", self._get_fact), \
                ctx_state.use(self.state), ctx_host.use(self.host):
            function(*args, **kwargs)
            ops = []
            for op_hash in self.state.get_op_order():
                meta = self.state.get_op_meta(op_hash)
                data = self.state.get_op_data_for_host(self.host, op_hash)
                commands = [str(c) for c in data.command_generator()]
                ops.append(PlannedOp(", ".join(meta.names), commands, dict(data.global_arguments)))
        return ops
