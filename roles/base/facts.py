"""Small pyinfra facts the base role needs and pyinfra does not ship."""

from pyinfra.api import FactBase


class ContainerType(FactBase[str]):
    """What container this host runs in ("docker", "lxc", ...) or "none" on a VM or bare metal."""

    def command(self) -> str:
        # systemd-detect-virt prints "none" and exits 1 when not in a container.
        return "systemd-detect-virt --container || true"

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else "none"


class SshKexAlgorithms(FactBase[list]):
    """Key exchange algorithms this host's OpenSSH knows (client and server share the list)."""

    def command(self) -> str:
        return "ssh -Q kex"

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


class ActiveSwaps(FactBase[list]):
    """Paths of the swap areas in use, from /proc/swaps."""

    def command(self) -> str:
        return "cat /proc/swaps"

    def process(self, output: list[str]) -> list[str]:
        # First line is the header "Filename Type Size Used Priority".
        return [line.split()[0] for line in output[1:] if line.strip()]
