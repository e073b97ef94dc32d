"""The lab, end to end, like Molecule: create -> converge -> verify -> idempotence -> restart.

Runs the same commands a volunteer runs (README): `python -m lab up`,
`pyinfra -y inventory/lab.py deploy.py`, and the testinfra checks of tests/verify.
Needs root and Docker; `python -m lab up` installs and starts Docker when it can.
The tests run in file order and share the lab.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.harness import LAB_HOSTS, container_name, restart_host
from assotic.runlog import changed_operation_names, changed_operations_per_host
from tests.lab.diagnostics import lab_diagnostics

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
INVENTORY = "inventory/lab.py"


def error_excerpt(output: str, before: int = 12, limit: int = 6000) -> str:
    """The lines around each error pyinfra printed (the failed command and its stderr come
    just before its `Error:` line), so a CI log that keeps only the assertion shows the cause."""
    lines = output.splitlines()
    keep: list[int] = []
    for index, line in enumerate(lines):
        if "Error" in line or "error:" in line:
            keep.extend(range(max(0, index - before), index + 1))
    picked = "\n".join(lines[i] for i in sorted(set(keep)))
    return picked[:limit]


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run from the repo root, echo the output into the test log, keep it for assertions."""
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    print(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    if check:
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}.\n" \
            f"Errors it printed:\n{error_excerpt(output)}\n\nIts last lines:\n{output[-3000:]}\n\n" \
            f"The lab hosts:\n{lab_diagnostics()}"
    return result


def deploy() -> str:
    result = run(str(VENV_BIN / "pyinfra"), "-y", INVENTORY, "deploy.py")
    return result.stdout + result.stderr


def verify() -> subprocess.CompletedProcess:
    return run(str(VENV_BIN / "pytest"), "-q", "-p", "no:cacheprovider", "tests/verify",
               f"--inventory={INVENTORY}")


@pytest.fixture(scope="module")
def lab_up():
    run(str(VENV_BIN / "python"), "-m", "lab", "up")


@pytest.fixture(scope="module")
def first_deploy(lab_up) -> str:
    return deploy()


@pytest.fixture(scope="module")
def second_deploy(first_deploy) -> str:
    return deploy()


def test_make_check_accepts_the_lab_and_the_examples(lab_up):
    result = run(str(VENV_BIN / "python"), "-m", "commands", "check", "--inventory", INVENTORY)
    assert "3 association(s) are valid" in result.stdout


def test_first_deploy_reaches_every_lab_host(first_deploy):
    per_host = changed_operations_per_host(first_deploy)
    assert set(per_host) == {h.name for h in LAB_HOSTS}


def test_verify_passes_after_deploy(first_deploy):
    verify()


def test_second_deploy_changes_nothing(second_deploy):
    per_host = changed_operations_per_host(second_deploy)
    assert set(per_host) == {h.name for h in LAB_HOSTS}, "every host must report its operations"
    not_idempotent = {host: changed_operation_names(second_deploy, host)
                      for host, count in per_host.items() if count}
    assert not_idempotent == {}, f"operations that changed on the second run: {not_idempotent}"


def secrets_printed(output: str) -> list[str]:
    """Names of the lab store's secrets whose value appears in `output`."""
    from lab.harness import SECRETS_KEY, SECRETS_STORE
    from assotic.secrets_store import SecretStore

    store = SecretStore.open(SECRETS_STORE, SECRETS_KEY)
    return [name for name in store.names() if store.get(name) in output]


def test_no_secret_is_printed_by_a_deploy(first_deploy, second_deploy):
    """The first deploy sets every password (databases, Redis, admins, backups): none may show."""
    assert secrets_printed(first_deploy + second_deploy) == []


def test_drift_on_a_host_is_seen_and_repaired(second_deploy):
    """The idempotence check can fail: edit a managed file by hand, the next deploy must change it."""
    drifted = LAB_HOSTS[0]
    subprocess.run(["docker", "exec", container_name(drifted), "sh", "-c",
                    "echo '# edited by hand' >> /etc/ssh/sshd_config.d/00-assotic.conf"], check=True)
    per_host = changed_operations_per_host(deploy())
    assert per_host[drifted.name] >= 1
    assert all(count == 0 for host, count in per_host.items() if host != drifted.name)
    assert changed_operations_per_host(deploy()) == {h.name: 0 for h in LAB_HOSTS}


def test_every_service_comes_back_after_a_restart(second_deploy):
    for lab_host in LAB_HOSTS:
        restart_host(lab_host.name)
    verify()
