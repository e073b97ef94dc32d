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


class DpkgInterrupted(FactBase[bool]):
    """True when a dpkg run was cut short (a killed deploy, a lost session): until `dpkg
    --configure -a` finishes it, every apt-get install fails."""

    def command(self) -> str:
        # dpkg journals the packages it is half-way through here (dpkg(1), --configure -a).
        return "ls -A /var/lib/dpkg/updates 2>/dev/null | head -n 1"

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return any(line.strip() for line in output)


class StatOverrides(FactBase[dict]):
    """{path: "owner group mode"} of dpkg's permission overrides (dpkg-statoverride --list)."""

    def command(self) -> str:
        return "dpkg-statoverride --list 2>/dev/null || true"

    @staticmethod
    def default() -> dict:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        overrides = {}
        for line in output:
            parts = line.split()
            if len(parts) == 4:
                owner, group, mode, path = parts
                # dpkg prints the mode without its leading zero (750): written as set, 0750.
                overrides[path] = f"{owner} {group} {int(mode, 8):04o}"
        return overrides


class ActiveSwaps(FactBase[list]):
    """Paths of the swap areas in use, from /proc/swaps."""

    def command(self) -> str:
        return "cat /proc/swaps"

    def process(self, output: list[str]) -> list[str]:
        # First line is the header "Filename Type Size Used Priority".
        return [line.split()[0] for line in output[1:] if line.strip()]
