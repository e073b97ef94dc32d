"""commands/remote.py: the one ssh command line from pyinfra host data, and the command line
behind the Makefile (commands/__main__.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from commands import remote
from commands.__main__ import COMMANDS, main, parser_of
from pyinfra.api.host import Host, HostData


def host(name: str = "web-1", **data) -> Host:
    """A pyinfra host whose data holds only what is given: a missing key raises AttributeError."""
    pyinfra_host = Host.__new__(Host)
    pyinfra_host.name = name
    pyinfra_host.data = HostData(pyinfra_host, data)
    return pyinfra_host


def test_an_inventory_that_sets_nothing_but_the_address_gets_root_port_22_and_strict_keys():
    # Before, both copies read data.ssh_user etc. as attributes: pyinfra raises for those
    # an inventory leaves out, so `make restore` or `make bbb-check` crashed on such a host.
    assert remote.ssh_argv(host(ssh_hostname="192.0.2.10")) == [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-p", "22", "root@192.0.2.10"]
    assert remote.ssh_argv(host("web-9"))[-1] == "root@web-9"  # no ssh_hostname: the host's name


def test_every_connection_setting_is_used():
    argv = remote.ssh_argv(host(ssh_hostname="127.0.0.1", ssh_port=2211, ssh_user="admin",
                                ssh_key="~/.ssh/assotic", ssh_known_hosts_file="/k/known_hosts",
                                ssh_strict_host_key_checking="accept-new"))
    assert argv == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-p", "2211",
                    "-o", "UserKnownHostsFile=/k/known_hosts",
                    "-i", str(Path("~/.ssh/assotic").expanduser()), "-o", "IdentitiesOnly=yes",
                    "admin@127.0.0.1"]


def test_scripts_run_as_root_through_sudo_when_the_login_is_not_root():
    # What restore, update, backup-status and the drill ran (restore.ssh_command before).
    as_root = remote.script_argv(host(ssh_hostname="h", ssh_user="root"))
    assert as_root[-3:] == ["root@h", "bash", "-s"]
    as_admin = remote.script_argv(host(ssh_hostname="h", ssh_user="admin"))
    assert as_admin[-5:] == ["admin@h", "sudo", "-n", "bash", "-s"]
    assert remote.sudo_prefix(host(ssh_user="admin")) == "sudo -n "
    assert remote.sudo_prefix(host()) == remote.sudo_prefix(host(ssh_user="root")) == ""


def test_a_plain_namespace_host_works_too():
    """The drill's throw-away host is no inventory host: a name and pyinfra-style data."""
    from commands.drill import slot_ssh_data

    target = SimpleNamespace(name="drill:web-1", data=slot_ssh_data(8, 1))
    argv = remote.script_argv(target)
    assert argv[argv.index("-p") + 1] == "2281" and argv[-3:] == ["root@127.0.0.1", "bash", "-s"]
    assert "IdentitiesOnly=yes" in argv and any(a.startswith("UserKnownHostsFile=") for a in argv)


def test_bbb_check_runs_its_commands_on_the_same_connection(monkeypatch):
    from commands import bbb_check

    calls = []
    monkeypatch.setattr(bbb_check, "load_inventory_like_pyinfra",
                        lambda path, root: [SimpleNamespace(name="turn-1", groups=["turn"],
                                                            data=HostData(None, {"ssh_user": "admin"}))])
    monkeypatch.setattr(bbb_check.subprocess, "run", lambda argv, **kwargs: calls.append(argv) or
                        subprocess.CompletedProcess(argv, 0, "active\n", ""))
    assert main(["bbb-check", "inventory/x.py"]) == 0
    assert calls == [["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-p", "22",
                      "admin@turn-1", "sudo -n systemctl is-active coturn"]]


def test_heredoc_refuses_text_holding_its_marker():
    assert remote.heredoc("$W/password", "s3cret\n") == \
        f"cat > $W/password <<'{remote.EOF_MARK}'\ns3cret\n{remote.EOF_MARK}\n"
    with pytest.raises(remote.RemoteError, match="here-document marker"):
        remote.heredoc("$W/x", f"a\n{remote.EOF_MARK}\nb")


def test_debian_major_and_strict_scripts(monkeypatch):
    sent = []
    monkeypatch.setattr(remote.subprocess, "run", lambda argv, input, **kwargs: sent.append(input) or
                        subprocess.CompletedProcess(argv, 0, "12\n", ""))
    assert remote.debian_major(host(ssh_hostname="h")) == "12"
    remote.run_remote_strict(host(), "true\n")
    assert sent[-1] == "set -euo pipefail\ntrue\n"
    monkeypatch.setattr(remote.subprocess, "run", lambda argv, input, **kwargs:
                        subprocess.CompletedProcess(argv, 255, "", "Connection refused\n"))
    with pytest.raises(remote.RemoteError, match="cannot reach web-1: Connection refused"):
        remote.debian_major(host())


# -- python -m commands <command> ------------------------------------------------------------------


def test_every_command_has_its_parser_and_its_run():
    import importlib

    for name, command in COMMANDS.items():
        module = importlib.import_module(command.module)
        assert callable(getattr(module, command.run)), name
        if command.add_arguments:
            assert parser_of(name, command, module).prog == f"python -m commands {name}"


@pytest.mark.parametrize("argv, expected", [
    (["restore", "--tenant", "ulap"], dict(inventory="inventory/lab.py", tenant="ulap", app=None,
                                           snapshot="latest", source=None, to=None, force=False,
                                           dry_run=False)),
    (["restore", "--inventory", "i.py", "--tenant", "ulap", "--app", "paheko", "--snapshot", "ab12",
      "--from", "web-1", "--to", "web-2", "--force", "--dry-run"],
     dict(inventory="i.py", tenant="ulap", app="paheko", snapshot="ab12", source="web-1", to="web-2",
          force=True, dry_run=True)),
    (["update", "--inventory", "i.py", "--tenant", "ulap", "--dry-run", "--drill-fail-health", "ulap/paheko"],
     dict(inventory="i.py", tenant="ulap", dry_run=True, drill_fail_health="ulap/paheko",
          pins_fingerprint=False)),
    (["pins-fingerprint", "--inventory", "i.py"], dict(inventory="i.py")),
    (["drill", "--tenant", "ulap", "--keep", "--max-age-hours", "30"],
     dict(inventory="inventory/lab.py", tenant="ulap", keep=True, max_age_hours=30.0)),
    (["backup-status", "--inventory", "i.py"], dict(inventory="i.py")),
    (["bbb-check"], dict(inventory="inventory/lab.py")),
    (["check", "--tenants", "t"], dict(inventory="inventory/lab.py", tenants="t")),
])
def test_the_makefile_s_options_reach_each_command(monkeypatch, argv, expected):
    import importlib

    command = COMMANDS[argv[0]]
    got = []
    monkeypatch.setattr(importlib.import_module(command.module), command.run,
                        lambda args: got.append(vars(args)) or 0)
    assert main(argv) == 0
    assert got == [expected]


def test_unknown_commands_and_help(capsys):
    assert main(["restor"]) == 2
    assert "unknown command 'restor'" in capsys.readouterr().err
    assert main([]) == 0 and "pins-fingerprint" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["restore"])  # --tenant is required
    assert "python -m commands restore: error" in capsys.readouterr().err


def test_raw_commands_get_their_arguments_as_given(monkeypatch):
    import commands.secrets

    got = []
    monkeypatch.setattr(commands.secrets, "run", lambda argv: got.append(argv) or 0)
    assert main(["secrets", "set", "smtp/password", "--help"]) == 0
    assert got == [["set", "smtp/password", "--help"]]
