"""A deploy killed partway (SIGKILL: an OOM kill, a closed laptop, a lost session), then re-run.

Runs after test_lab.py (tests/lab/conftest.py) on the same lab. Real work is forced on web-1,
as when an association is added: its Paheko's PHP-FPM pool and nginx vhost are removed and
the services reloaded without them, and a package the deploy installs is removed. Then
`pyinfra -y inventory/lab.py deploy.py` is started and killed with SIGKILL as soon as its
output shows it changing things, in the middle of the operation run (files written, their
reloads not yet run). The next deploy must succeed, the testinfra checks must pass (the
app answers through its pool), and a deploy after that must change nothing.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.harness import LAB_HOSTS, container_name
from assotic.runlog import (
    ANSI_ESCAPE,
    changed_operation_names,
    changed_operations_per_host,
)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = "inventory/lab.py"
WEB = "web-1"
TENANT = "ulap"
DOMAIN = f"gestion.{TENANT}.example.org"  # its Paheko
# A package the backup role installs (the last role): its reinstall is work left for the end.
REMOVED_PACKAGE = "restic"
# Bounds: the killed deploy must reach its operations; every wait ends.
KILL_DEADLINE_S = 600
# pyinfra prints `[web-1] Success` for an operation that changed something on web-1.
CHANGED_ON_WEB = re.compile(rf"^\s*\[{re.escape(WEB)}\]\s+Success\b")


def sh(host: str, script: str) -> str:
    name = container_name(next(h for h in LAB_HOSTS if h.name == host))
    result = subprocess.run(["docker", "exec", "-i", name, "bash", "-euo", "pipefail", "-s"],
                            input=script, capture_output=True, text=True)
    print(f"[{host}] $ {script.strip()[:300]}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    assert result.returncode == 0, f"{host}: exit {result.returncode}: {result.stderr[-2000:]}"
    return result.stdout


def answer(host: str, domain: str) -> str:
    """What the vhost answers on the host itself (empty when nothing does)."""
    return sh(host, f"curl -sk --max-time 20 --resolve {domain}:443:127.0.0.1 https://{domain}/ || true")


def run(*command: str) -> str:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    output = result.stdout + result.stderr
    print(f"$ {' '.join(command)}\n{output[-6000:]}")
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output[-3000:]}"
    return output


def deploy() -> str:
    return run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py")


def deploy_killed_after_changes(changes_before_kill: int) -> str:
    """Start a deploy; SIGKILL it once web-1 reported `changes_before_kill` changed operations.

    Output is read line by line as pyinfra prints it (unbuffered), so the kill lands while
    the operation run is under way, not after it.
    """
    process = subprocess.Popen(
        [str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, changed = [], 0
    deadline = time.monotonic() + KILL_DEADLINE_S
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        while changed < changes_before_kill and time.monotonic() < deadline:
            if not selector.select(timeout=1):
                if process.poll() is not None:
                    break
                continue
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            changed += bool(CHANGED_ON_WEB.match(ANSI_ESCAPE.sub("", line)))
        finished_early = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        selector.close()
        if process.poll() is None:
            process.kill()
    output = "".join(lines)
    started = [line.strip() for line in lines if line.startswith("--> Starting operation:")]
    print(f"$ pyinfra -y {INVENTORY} deploy.py  (SIGKILL after {changed} changed operation(s) on {WEB}, "
          f"{len(started)} operation(s) started; the last: {started[-1] if started else 'none'})\n"
          f"{output[-6000:]}")
    assert not finished_early, "the deploy ended before it could be killed partway"
    assert changed >= changes_before_kill, f"no change seen on {WEB} within {KILL_DEADLINE_S}s"
    return output


@pytest.fixture(scope="module")
def lab():
    run(str(VENV_BIN / "python"), "-m", "lab", "up")
    deploy()


def test_a_deploy_killed_partway_is_repaired_by_the_next_one(lab):
    pool = sh(WEB, f"ls /etc/php/*/fpm/pool.d/assotic-paheko_{TENANT}.conf").strip()
    fpm = pool.split("/")[3]  # /etc/php/<version>/fpm/...
    sh(WEB, f"""
rm -f {pool} /etc/nginx/sites-enabled/*{DOMAIN}*
systemctl reload php{fpm}-fpm nginx
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {REMOVED_PACKAGE} >/dev/null
""")
    assert "database" not in answer(WEB, DOMAIN), "the app must be down before the deploy"
    killed = deploy_killed_after_changes(1)
    assert "--> Starting operation:" in killed, "killed before the operation run began"

    repaired = deploy()
    assert changed_operations_per_host(repaired)[WEB] >= 1, "the re-run must finish the work"
    sh(WEB, f"test -f {pool} && command -v {REMOVED_PACKAGE}")
    assert '"database":"ok"' in answer(WEB, DOMAIN).replace(" ", ""), "the app must answer again"
    run(str(VENV_BIN / "pytest"), "-q", "-p", "no:cacheprovider", "tests/verify", f"--inventory={INVENTORY}")

    again = deploy()
    per_host = changed_operations_per_host(again)
    changed = {h: changed_operation_names(again, h) for h, n in per_host.items() if n}
    assert per_host == {h.name: 0 for h in LAB_HOSTS}, f"operations that changed: {changed}"
