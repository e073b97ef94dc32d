"""Testinfra checks against the hosts of a pyinfra inventory, over SSH.

    make verify INVENTORY=inventory/<name>.py
    pytest tests/verify --inventory=inventory/<name>.py

The inventory is loaded with pyinfra's own loader, so every test sees the same
host data the deploy used (sysadmins, ports, ...) and asserts against it, never
against hard-coded values. Each test runs once per host; a test marked
`@pytest.mark.hosts_in("web")` runs only on the hosts of that group.

Host data comes from group_data/ in the directory pyinfra was run from and in the
inventory's own folder (pyinfra's rule). --deploy-cwd says which directory that
was: the repository root by default, as with `make deploy`.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import testinfra

from assotic.preflight import REPO_ROOT, load_inventory_like_pyinfra


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("assotic")
    group.addoption(
        "--inventory",
        default="inventory/lab.py",
        help="pyinfra inventory whose hosts are checked (default: inventory/lab.py, "
        "relative to the repository root)",
    )
    group.addoption(
        "--deploy-cwd",
        default=str(REPO_ROOT),
        help="directory pyinfra was run from; its group_data/ applies (default: the repository root)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hosts_in(group): run this test only on the hosts of a pyinfra group")


def load_inventory(config: pytest.Config):
    """The pyinfra Inventory, loaded once per pytest run."""
    if not hasattr(config, "_assotic_inventory"):
        deploy_cwd = Path(config.getoption("--deploy-cwd")).resolve()
        inventory_path = Path(config.getoption("--inventory"))
        if not inventory_path.is_absolute():
            inventory_path = (deploy_cwd / inventory_path).resolve()
        if not inventory_path.exists():
            raise pytest.UsageError(f"--inventory: no such file {inventory_path}")
        config._assotic_inventory = load_inventory_like_pyinfra(inventory_path, deploy_cwd)
    return config._assotic_inventory


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pyinfra_host" not in metafunc.fixturenames:
        return
    hosts = list(load_inventory(metafunc.config))
    marker = metafunc.definition.get_closest_marker("hosts_in")
    if marker is not None:
        hosts = [h for h in hosts if marker.args[0] in h.groups]
    metafunc.parametrize("pyinfra_host", hosts, ids=[h.name for h in hosts], scope="module")


def pytest_unconfigure(config: pytest.Config) -> None:
    socket_dir = getattr(config, "_assotic_ssh_sockets", None)
    if socket_dir:
        shutil.rmtree(socket_dir, ignore_errors=True)


def ssh_socket_dir(config: pytest.Config) -> str:
    """A private folder (0700, short path: a socket path has at most 108 bytes) for the SSH
    master connections of this run."""
    if not getattr(config, "_assotic_ssh_sockets", None):
        config._assotic_ssh_sockets = tempfile.mkdtemp(prefix="assotic-ssh-")
    return config._assotic_ssh_sockets


def testinfra_host(pyinfra_host, socket_dir: str) -> testinfra.host.Host:
    """A testinfra host reaching a pyinfra host the way pyinfra does: same user, key, port
    and known_hosts file, strict host key checking; its SSH master socket in `socket_dir`."""
    data = pyinfra_host.data
    user = data.ssh_user or getpass.getuser()
    address = data.ssh_hostname or pyinfra_host.name
    if ":" in address:  # IPv6 literal
        address = f"[{address}]"
    extra_args = [f"-o StrictHostKeyChecking={data.ssh_strict_host_key_checking or 'yes'}"]
    if data.ssh_known_hosts_file:
        extra_args.append(f"-o UserKnownHostsFile={data.ssh_known_hosts_file}")
    options = {"ssh_extra_args": " ".join(extra_args)}
    if data.ssh_key:
        options["ssh_identity_file"] = os.path.expanduser(data.ssh_key)
    # testinfra runs each command over a new `ssh` (key exchange, login, PAM session): with a
    # ControlPath, they share one master connection per host (ControlPersist 60 s). One socket
    # per inventory host (testinfra %-formats the command: no %C token here).
    options["controlpath"] = f"{socket_dir}/{pyinfra_host.name}"
    return testinfra.get_host(
        f"ssh://{user}@{address}:{data.ssh_port or 22}",
        sudo=user != "root",  # sysadmins are in sudoers with NOPASSWD
        **options,
    )


@pytest.fixture(scope="module")
def host(pyinfra_host, request) -> testinfra.host.Host:
    return testinfra_host(pyinfra_host, ssh_socket_dir(request.config))


@pytest.fixture(scope="module")
def data(pyinfra_host):
    """The host's pyinfra data (group_data and inventory data merged)."""
    return pyinfra_host.data


@pytest.fixture(scope="module")
def in_container(host) -> bool:
    """True in a container (the lab), where a few things belong to the runtime, not the host."""
    return host.run("systemd-detect-virt --container").rc == 0


@pytest.fixture(scope="module")
def needs(plan):
    """What the apps on this host ask of the shared roles, from its plan (deploy.py's)."""
    return plan.needs


@pytest.fixture(scope="module")
def plan(pyinfra_host, data, host):
    """This host's plan, computed as deploy.py computes it (roles/plan.py plan_host)."""
    from roles.plan import plan_host

    return plan_host(pyinfra_host.name, data, pyinfra_host.groups, debian_major(host))


def debian_major(host) -> str:
    """"12" or "13", as pyinfra's LinuxDistribution fact gives it to deploy.py."""
    return host.check_output(". /etc/os-release && echo $VERSION_ID").split(".")[0]


@pytest.fixture(scope="module")
def declared_openings(plan):
    """The firewall openings deploy.py hands to the base role, for this host."""
    return list(plan.firewall_openings)
