"""The local lab's hosts: Debian containers with systemd as PID 1, reached over real SSH.

`python -m lab up|down|status|restart NAME` (lab/cli.py) brings them up and down, with the
lab's mail relay (lab/relay.py).

The hosts are declared once, in LAB_HOSTS; inventory/lab.py reads them. pyinfra
then deploys to the containers exactly as to a real server: over SSH, with a
key, and with strict host key checking against .lab/ssh/known_hosts.

No container image can be pulled here, so the base images are built locally
with debootstrap (once: they are cached as assotic-lab:<suite>). See docs/lab.md.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Paths derived from the repository root (parent of the lab/ package), so
# that pyinfra and the tests work from any working directory.
REPO_ROOT = Path(__file__).resolve().parent.parent
# Several labs can run side by side on one machine (one per checkout, e.g. for developers
# working in parallel): ASSOTIC_LAB_SLOT=N (0-9) shifts container names and SSH ports.
# Each slot keeps its state (SSH key, known_hosts, secrets) in its own folder.
LAB_SLOT = int(os.environ.get("ASSOTIC_LAB_SLOT", "0"))
if not 0 <= LAB_SLOT <= 9:
    raise SystemExit(f"lab: ASSOTIC_LAB_SLOT must be 0 to 9, got {LAB_SLOT}")
CONTAINER_PREFIX = "assotic-lab-" if LAB_SLOT == 0 else f"assotic-lab{LAB_SLOT}-"
SSH_PORT_BASE = 2200 + 10 * LAB_SLOT
LAB_DIR = REPO_ROOT / (".lab" if LAB_SLOT == 0 else f".lab{LAB_SLOT}")
SSH_DIR = LAB_DIR / "ssh"
SSH_KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
SECRETS_KEY = LAB_DIR / "secrets.key"
SECRETS_STORE = LAB_DIR / "secrets.enc.json"  # the name inventory/lab.py gives the store
# The container label that says which secrets key a lab host was deployed with.
SECRETS_KEY_LABEL = "assotic.lab.secrets-key"

IMAGE_REPOSITORY = "assotic-lab"
# Only Debian's archive is reachable (and ours to use).
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_RELEASES = {"bookworm": "12", "trixie": "13"}
# What a minimal real server has: systemd as init, sshd, and python3 for pyinfra facts.
IMAGE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "openssh-server",
    "sudo",
    "ca-certificates",
    "iproute2",
)
# Written inside a container once its own host keys exist (so `up` never regenerates them).
PREPARED_MARKER = "/etc/assotic-lab-prepared"
HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")

DOCKER_SOCKET = "/var/run/docker.sock"
DOCKERD_LOG = "/var/log/dockerd.log"
# Every wait is bounded.
DOCKERD_TIMEOUT = 60
READY_TIMEOUT = 120


@dataclass(frozen=True)
class LabHost:
    name: str  # inventory name and container hostname
    suite: str  # Debian suite of its image
    ssh_port: int  # published on 127.0.0.1 only
    group: str  # inventory group


# Add hosts here (a backup target, a TURN host...): inventory/lab.py picks them up by group.
# A list, not a tuple: pyinfra reads every list or tuple at the top of an inventory file
# (LAB_HOSTS is imported into inventory/lab.py) as a host group, and for a tuple it takes
# item 0 as the group's hosts, which crashes on a LabHost. A list is only skipped.
LAB_HOSTS: list[LabHost] = [
    LabHost("web-1", "bookworm", SSH_PORT_BASE + 1, "web"),
    LabHost("web-2", "trixie", SSH_PORT_BASE + 2, "web"),
    LabHost("turn-1", "bookworm", SSH_PORT_BASE + 3, "turn"),
    LabHost("backup-1", "bookworm", SSH_PORT_BASE + 4, "backup"),
]


class LabError(Exception):
    """A problem the user must fix; printed without a traceback."""


def say(message: str) -> None:
    print(f"lab: {message}", flush=True)


# --- Pure functions (unit tested, no docker) ---------------------------------------------


def container_name(h: LabHost) -> str:
    return f"{CONTAINER_PREFIX}{h.name}"


def image_tag(suite: str, repository: str = IMAGE_REPOSITORY) -> str:
    return f"{repository}:{suite}"


def debian_release(suite: str) -> str:
    """'Debian 12' for bookworm; the suite name itself for a suite we do not know."""
    number = DEBIAN_RELEASES.get(suite)
    return f"Debian {number}" if number else suite


def find_host(name: str) -> LabHost:
    for h in LAB_HOSTS:
        if h.name == name:
            return h
    known = ", ".join(h.name for h in LAB_HOSTS)
    raise LabError(f"no lab host named {name!r} (lab hosts: {known})")


def lab_ssh_data(h: LabHost) -> dict:
    """pyinfra host data (pyinfra.connectors.ssh key names) to reach a lab host over SSH."""
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": h.ssh_port,
        "ssh_user": "root",
        "ssh_key": str(SSH_KEY),
        "ssh_known_hosts_file": str(KNOWN_HOSTS),
        # "yes": an unknown or changed host key is an error, as it should be on a real server.
        "ssh_strict_host_key_checking": "yes",
        # Only the lab key: no agent keys or ~/.ssh keys tried first (and maybe locked out).
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    }


def systemd_container_kwargs(name: str, hostname: str, image: str, key_id: str) -> dict:
    """docker SDK kwargs of a container with systemd as PID 1 (the flags LAB.md found to work):
    every lab host, and the lab's mail relay (lab/relay.py).

    --privileged and --cap-add ALL fail in our sandbox: capabilities are added one by one.
    key_id labels the container with the secrets key it is deployed with (secrets_key_id;
    reuse_refusal reads it back).
    """
    return {
        "image": image,
        "command": ["/lib/systemd/systemd"],
        "name": name,
        "hostname": hostname,
        "cap_add": ["SYS_ADMIN", "NET_ADMIN"],
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        "cgroupns": "host",
        "volumes": {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
        "tmpfs": {"/run": "", "/run/lock": ""},
        # systemd as PID 1 shuts down cleanly on SIGRTMIN+3 (it ignores SIGTERM).
        "stop_signal": "SIGRTMIN+3",
        # The lab tests restart containers themselves; docker must not do it behind their back.
        "restart_policy": {"Name": "no"},
        "labels": {"assotic.lab": "1", "assotic.lab.host": hostname, SECRETS_KEY_LABEL: key_id},
    }


def run_kwargs(h: LabHost, image: str | None = None, key_id: str = "",
               extra_hosts: dict[str, str] | None = None) -> dict:
    """docker SDK `containers.run` kwargs for a lab host: SSH published on loopback only.
    extra_hosts: names for the container's /etc/hosts (the lab's mail relay, lab/relay.py),
    as a production host finds its relay by DNS."""
    return {
        **systemd_container_kwargs(container_name(h), h.name, image or image_tag(h.suite), key_id),
        "detach": True,
        "ports": {"22/tcp": ("127.0.0.1", h.ssh_port)},
        "extra_hosts": extra_hosts or {},
    }


def extra_hosts_refusal(found: list[str] | None, extra_hosts: dict[str, str]) -> str | None:
    """Why a lab host made with the docker ExtraHosts `found` lacks some of `extra_hosts`
    (it was made before the lab's mail relay), or None: /etc/hosts is only written when a
    container is made."""
    missing = sorted(f"{name}:{address}" for name, address in extra_hosts.items()
                     if f"{name}:{address}" not in (found or []))
    if not missing:
        return None
    return f"its /etc/hosts lacks {', '.join(missing)} (made before the lab's mail relay)"


def known_hosts_line(h: LabHost, pubkey_line: str) -> str:
    """'[127.0.0.1]:2201 ssh-ed25519 AAAA...' from a host's ssh_host_*_key.pub line."""
    fields = pubkey_line.split()
    if len(fields) < 2 or not (fields[0].startswith("ssh-") or fields[0].startswith("ecdsa-")):
        raise ValueError("not an OpenSSH public key line")
    key_type, key_data = fields[0], fields[1]
    # OpenSSH and paramiko both write a non-22 port as [host]:port.
    return f"[127.0.0.1]:{h.ssh_port} {key_type} {key_data}"


def debootstrap_command(suite: str, rootfs: Path) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(IMAGE_PACKAGES),
        suite,
        str(rootfs),
        DEBIAN_MIRROR,
    ]


def prepare_script() -> str:
    """Shell run once per container, then on every `up` for the (cheap, idempotent) key part.

    The lab public key comes in through the environment (LAB_PUBKEY), never on a command line.
    """
    return f"""set -e
if [ ! -e {PREPARED_MARKER} ]; then
    # Every container made from an image shares the image's host keys: make its own.
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -A >/dev/null
    mkdir -p /etc/ssh/sshd_config.d
    printf 'PermitRootLogin prohibit-password\\nPubkeyAuthentication yes\\n' \\
        > /etc/ssh/sshd_config.d/assotic-lab.conf
    sshd -t
    systemctl restart ssh
    touch {PREPARED_MARKER}
fi
install -d -m 0700 /root/.ssh
printf '%s\\n' "$LAB_PUBKEY" > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
"""


# --- The Docker engine -------------------------------------------------------------------


def is_debian() -> bool:
    return Path("/etc/debian_version").exists()


def apt_install(packages: list[str]) -> None:
    say(f"installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", *packages], check=True, env=env)


def require_tools(commands_to_packages: dict[str, str]) -> None:
    """Install the Debian packages behind missing commands, or say how to (then stop)."""
    missing = sorted({pkg for cmd, pkg in commands_to_packages.items() if not shutil.which(cmd)})
    if not missing:
        return
    if os.geteuid() == 0 and is_debian():
        apt_install(missing)
        return
    raise LabError(
        f"missing {', '.join(missing)}. Install as root on Debian: "
        f"apt-get install -y {' '.join(missing)} (elsewhere: Docker Engine and debootstrap)"
    )


def docker_client(start: bool):
    """A docker SDK client for a live engine; with start=True, start the engine if needed."""
    import docker  # imported here: inventory/lab.py imports this module without needing docker

    def connect():
        try:
            client = docker.from_env()
            client.ping()
            return client
        except docker.errors.DockerException:
            return None

    client = connect()
    if client or not start:
        if not client:
            raise LabError(f"the Docker engine does not answer on {DOCKER_SOCKET}")
        return client

    if os.geteuid() != 0 or not is_debian():
        raise LabError(
            "the Docker engine does not answer. Install and start it, for example as root on "
            "Debian: apt-get install -y docker.io debootstrap && systemctl start docker"
        )
    require_tools({"dockerd": "docker.io", "debootstrap": "debootstrap"})
    if Path("/run/systemd/system").is_dir():
        say("starting the Docker engine (systemctl start docker)")
        subprocess.run(["systemctl", "start", "docker"], check=True)
    else:
        # No systemd on the build machine (CI, containers): run dockerd in its own session.
        say(f"starting the Docker engine (dockerd, log in {DOCKERD_LOG})")
        with open(DOCKERD_LOG, "ab") as log:
            subprocess.Popen(
                ["dockerd"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    deadline = time.monotonic() + DOCKERD_TIMEOUT
    while time.monotonic() < deadline:
        client = connect()
        if client:
            return client
        time.sleep(1)
    raise LabError(f"the Docker engine did not answer within {DOCKERD_TIMEOUT}s (see {DOCKERD_LOG})")


# --- Images ------------------------------------------------------------------------------


def image_exists(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def build_image(client, suite: str, tag: str) -> None:
    """debootstrap a Debian rootfs and import it as `tag` (what `docker import` does)."""
    require_tools({"debootstrap": "debootstrap", "tar": "tar"})
    workdir = Path(tempfile.mkdtemp(prefix=f"assotic-lab-{suite}-", dir="/var/tmp"))
    rootfs, tarball = workdir / "rootfs", workdir / "rootfs.tar"
    log = workdir / "debootstrap.log"
    say(f"building image {tag} with debootstrap (about a minute; log in {log})")
    try:
        with open(log, "wb") as out:
            done = subprocess.run(
                debootstrap_command(suite, rootfs), stdout=out, stderr=subprocess.STDOUT
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise LabError(f"debootstrap {suite} failed:\n  " + "\n  ".join(tail))
        subprocess.run(["tar", "-C", str(rootfs), "-c", "-f", str(tarball), "."], check=True)
        repository, _, image_suite = tag.rpartition(":")
        client.api.import_image(src=str(tarball), repository=repository, tag=image_suite)
        if not image_exists(client, tag):
            raise LabError(f"importing {tag} did not create the image")
        say(f"image {tag} built")
    except BaseException:
        say(f"build files kept for inspection in {workdir}")
        raise
    # A failed debootstrap can leave /proc or /sys mounted in the rootfs: never rm -r through them.
    if mounts_under(workdir):
        say(f"not removing {workdir}: something is still mounted under it")
    else:
        shutil.rmtree(workdir)


def ensure_images(client) -> None:
    for suite in dict.fromkeys(h.suite for h in LAB_HOSTS):  # each suite once, in order
        tag = image_tag(suite)
        if image_exists(client, tag):
            say(f"image {tag} cached")
        else:
            build_image(client, suite, tag)


# --- SSH key, known_hosts, secrets key ---------------------------------------------------


def ensure_ssh_key() -> str:
    """Create the lab's SSH key pair once; return the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    # .lab holds the lab's secrets key and store too: owner only.
    for directory in (LAB_DIR, SSH_DIR):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    public = SSH_KEY.with_suffix(".pub")
    if not SSH_KEY.exists():
        key = Ed25519PrivateKey.generate()
        private_bytes = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        fd = os.open(SSH_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_bytes)
        public_bytes = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        public.write_bytes(public_bytes + b" assotic-lab\n")
        say(f"SSH key created: {SSH_KEY}")
    os.chmod(SSH_KEY, 0o600)
    return public.read_text().strip()


def host_key_lines(container) -> list[str]:
    files = " ".join(f"/etc/ssh/ssh_host_{t}_key.pub" for t in HOST_KEY_TYPES)
    _, output = container.exec_run(["sh", "-c", f"cat {files} 2>/dev/null"])
    lines = [line for line in output.decode().splitlines() if line.strip()]
    if not lines:
        raise LabError(f"{container.name}: no SSH host key found")
    return lines


def write_known_hosts(client) -> None:
    """known_hosts for every running lab host, from the keys each container really has."""
    lines = []
    for h in LAB_HOSTS:
        container = get_container(client, h)
        if container is None or container.status != "running":
            continue
        lines += [known_hosts_line(h, key) for key in host_key_lines(container)]
    SSH_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = KNOWN_HOSTS.with_suffix(".tmp")
    temporary.write_text("".join(line + "\n" for line in lines))
    temporary.replace(KNOWN_HOSTS)
    say(f"known_hosts written: {KNOWN_HOSTS}")


def ensure_secrets_key() -> str:
    """Create the lab's secrets key once; return its id (secrets_key_id)."""
    if SECRETS_KEY.exists():
        return secrets_key_id(SECRETS_KEY.read_bytes())
    from assotic.secrets_store import create_key

    # A store left from an earlier key can never be opened again; the lab's secrets are
    # throw-away, so start a fresh store with the fresh key.
    SECRETS_STORE.unlink(missing_ok=True)
    create_key(SECRETS_KEY)
    say(f"lab secrets key created: {SECRETS_KEY}")
    return secrets_key_id(SECRETS_KEY.read_bytes())


def secrets_key_id(key: bytes) -> str:
    """A short public id of a secrets key (a hash: the key cannot be found from it)."""
    import hashlib

    return hashlib.sha256(b"assotic-lab-secrets-key\0" + key).hexdigest()[:16]


def reuse_refusal(labels: dict, key_id: str) -> str | None:
    """Why an existing lab container must not be reused with this checkout's secrets key, or
    None. A host deployed with another key (another checkout on the same slot, a .lab folder
    removed, a CI machine that kept a developer's containers) holds passwords this checkout's
    store does not have: restic, PostgreSQL and the apps refuse the new ones, and the deploy
    fails far from the cause ("wrong password or no key found")."""
    found = labels.get(SECRETS_KEY_LABEL)
    if found == key_id:
        return None
    if not found:
        return "it has no secrets-key label (made before labels, or by hand)"
    return f"it was deployed with another secrets key ({found}, this checkout's is {key_id})"


# --- Containers --------------------------------------------------------------------------


def get_container(client, h: LabHost):
    import docker

    try:
        return client.containers.get(container_name(h))
    except docker.errors.NotFound:
        return None


def bridge_address(h: LabHost) -> str | None:
    """The lab host's address on Docker's bridge network, where its services answer (the
    other lab hosts and this machine reach it there). None when Docker, its SDK or the
    container is not there, e.g. for `make check` on a machine without the lab."""
    try:
        container = docker_client(start=False).containers.get(container_name(h))
        return container.attrs["NetworkSettings"]["IPAddress"] or None
    except Exception:  # no SDK, no engine, no such container: no address
        return None


def reusable(container, refusal: str | None):
    """`container`, or None once it is removed because `refusal` says why it cannot be reused."""
    if container is None or not refusal:
        return container
    say(f"{container.name} cannot be reused: {refusal}; removing it and starting it afresh")
    container.remove(force=True)
    return None


def start_container(client, h: LabHost, key_id: str, extra_hosts: dict[str, str]) -> None:
    container = get_container(client, h)
    where = f"{h.name} ({debian_release(h.suite)}) on 127.0.0.1:{h.ssh_port}"
    container = reusable(container, container and (
        reuse_refusal(container.labels, key_id)
        or extra_hosts_refusal(container.attrs["HostConfig"].get("ExtraHosts"), extra_hosts)))
    if container is None:
        say(f"starting {where}")
        client.containers.run(**run_kwargs(h, key_id=key_id, extra_hosts=extra_hosts))
    elif container.status == "running":
        say(f"reusing running {where}")
    else:
        say(f"starting stopped {where}")
        container.start()


def system_state(container) -> str:
    """Output of `systemctl is-system-running` ('starting', 'running', 'degraded'...)."""
    import docker

    try:
        _, output = container.exec_run(["systemctl", "is-system-running"])
    except docker.errors.APIError:  # not running (yet)
        return "unreachable"
    return output.decode(errors="replace").strip() or "unknown"


def ssh_answers(port: int) -> bool:
    """True when sshd itself greets us (docker's port proxy accepts even with nobody behind)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_until_ready(name: str, client=None, timeout: float = READY_TIMEOUT) -> None:
    """Wait until systemd says running (or degraded) and sshd answers on the published port."""
    h = find_host(name)
    client = client or docker_client(start=False)
    container = get_container(client, h)
    if container is None:
        raise LabError(f"{h.name}: no container {container_name(h)} (run: python -m lab up)")
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        state = system_state(container)
        if state in ("running", "degraded") and ssh_answers(h.ssh_port):
            return
        time.sleep(0.5)
    raise LabError(f"{h.name}: not ready after {timeout:.0f}s (systemd: {state})")


def prepare_container(client, h: LabHost, pubkey: str) -> None:
    container = get_container(client, h)
    code, output = container.exec_run(
        ["sh", "-c", prepare_script()], environment={"LAB_PUBKEY": pubkey}
    )
    if code != 0:
        raise LabError(f"{h.name}: preparing SSH failed: {output.decode(errors='replace')}")


def restart_host(name: str) -> None:
    """docker restart one lab host, then wait until systemd and sshd are back."""
    h = find_host(name)
    client = docker_client(start=False)
    container = get_container(client, h)
    if container is None:
        raise LabError(f"{h.name}: no container {container_name(h)} (run: python -m lab up)")
    say(f"restarting {h.name}")
    container.restart(timeout=30)
    wait_until_ready(name, client)
    say(f"{h.name} is ready")
