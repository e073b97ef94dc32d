"""How the operator commands reach a host: one `ssh` command line from the host's pyinfra data.

Every command that runs something on a host goes through here, with the connection data
the inventory gives pyinfra (ssh_hostname, ssh_port, ssh_user, ssh_key, ssh_known_hosts_file,
ssh_strict_host_key_checking). Scripts are sent on stdin to `bash -s` (a secret they hold
never shows on a command line), as root: through `sudo -n` when the login is not root.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

EOF_MARK = "__ASSOTIC_RESTORE_EOF__"


class RemoteError(Exception):
    """A host could not be reached, or a script could not be written safely."""


def _data(pyinfra_host, name: str):
    """One connection setting, None when absent: pyinfra's host data raises AttributeError for
    a key the inventory does not set (the drill's throw-away host is a plain namespace)."""
    return getattr(pyinfra_host.data, name, None)


def login_user(pyinfra_host) -> str:
    """The SSH login: data ssh_user, root by default."""
    return _data(pyinfra_host, "ssh_user") or "root"


def sudo_prefix(pyinfra_host) -> str:
    """"sudo -n " before a remote command when the login is not root, else ""."""
    return "" if login_user(pyinfra_host) == "root" else "sudo -n "


def ssh_argv(pyinfra_host) -> list[str]:
    """`ssh ... user@host`, with no remote command yet: the connection pyinfra's data describes."""
    argv = ["ssh", "-o", "BatchMode=yes",
            "-o", f"StrictHostKeyChecking={_data(pyinfra_host, 'ssh_strict_host_key_checking') or 'yes'}",
            "-p", str(_data(pyinfra_host, "ssh_port") or 22)]
    known_hosts = _data(pyinfra_host, "ssh_known_hosts_file")
    if known_hosts:
        argv += ["-o", f"UserKnownHostsFile={known_hosts}"]
    key = _data(pyinfra_host, "ssh_key")
    if key:
        # Only that key: an agent's other keys could be refused first and use up MaxAuthTries.
        argv += ["-i", str(Path(key).expanduser()), "-o", "IdentitiesOnly=yes"]
    return argv + [f"{login_user(pyinfra_host)}@{_data(pyinfra_host, 'ssh_hostname') or pyinfra_host.name}"]


def script_argv(pyinfra_host) -> list[str]:
    """`ssh ... user@host [sudo -n] bash -s`: a root shell reading its script on stdin."""
    return ssh_argv(pyinfra_host) + sudo_prefix(pyinfra_host).split() + ["bash", "-s"]


def run_remote(pyinfra_host, script: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a bash script as root on the host; its output captured, as text. `timeout` (s):
    subprocess.TimeoutExpired when the script has not finished by then."""
    return subprocess.run(script_argv(pyinfra_host), input=script, text=True, capture_output=True,
                          timeout=timeout)


def run_remote_strict(pyinfra_host, script: str) -> subprocess.CompletedProcess:
    """run_remote, the script stopping at its first failing command (set -euo pipefail)."""
    return run_remote(pyinfra_host, "set -euo pipefail\n" + script)


def heredoc(path: str, text: str) -> str:
    """Bash that writes `text` to `path` through a quoted here-document (nothing expanded)."""
    if EOF_MARK in text:
        raise RemoteError("a secret contains the here-document marker")
    return f"cat > {path} <<'{EOF_MARK}'\n{text.rstrip(chr(10))}\n{EOF_MARK}\n"


def debian_major(pyinfra_host) -> str:
    """The host's Debian major release ("12"), read over SSH."""
    result = run_remote(pyinfra_host, ". /etc/os-release && echo ${VERSION_ID%%.*}\n")
    if result.returncode != 0:
        raise RemoteError(f"cannot reach {pyinfra_host.name}: {result.stderr.strip()}")
    return result.stdout.strip()


def host_plan(pyinfra_host, missing_release: str | None = None):
    """The deploy's plan of an inventory host (roles/plan.py plan_host), its Debian release
    read over SSH: what restore, update and backup-status act on."""
    from roles.plan import plan_host

    return plan_host(pyinfra_host.name, pyinfra_host.data, pyinfra_host.groups, debian_major(pyinfra_host),
                     missing_release)


def parse_json_stream(text: str) -> list[dict[str, Any]]:
    """Several JSON objects printed one after the other (cat of several files)."""
    decoder, records, position = json.JSONDecoder(), [], 0
    text = text.strip()
    while position < len(text):
        record, end = decoder.raw_decode(text, position)
        records.append(record)
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return records
