"""Facts the BBB role reads. Read-only."""

from __future__ import annotations

from pyinfra.api import FactBase


class MemTotalKb(FactBase):
    """MemTotal of /proc/meminfo in kB (what bbb-install tests), None when unreadable."""

    def command(self) -> str:
        return "awk '$1 == \"MemTotal:\" {print $2}' /proc/meminfo"

    def process(self, output):
        try:
            return int(list(output)[0])
        except (IndexError, ValueError):
            return None


class SharedSecretDigests(FactBase):
    """{"akka": sha256, "webhooks": sha256} of the API secret the other BBB components hold.

    bbb-conf --setsecret writes the secret into bbb-apps-akka.conf (`sharedSecret="..."`) and,
    when bbb-webhooks is installed, its config (`sharedSecret: ...`). Only digests leave the
    host: the role compares them with the digest of the secret it deploys. A missing file has
    no entry.
    """

    def command(self, akka: str, webhooks: str) -> str:
        return (f"if [ -f {akka} ]; then printf 'akka '; "
                f"sed -n 's/.*sharedSecret[ ]*=[ ]*\"\\([^\"]*\\)\".*/\\1/p' {akka} | head -n 1 "
                "| tr -d '\\n' | sha256sum | cut -c1-64; fi; "
                f"if [ -f {webhooks} ]; then printf 'webhooks '; "
                f"sed -n 's/^[[:blank:]#]*sharedSecret: *//p' {webhooks} | head -n 1 "
                "| tr -d '\\n' | sha256sum | cut -c1-64; fi")

    @staticmethod
    def default() -> dict:
        return {}

    def process(self, output) -> dict[str, str]:
        digests = {}
        for line in output:
            name, _, digest = line.partition(" ")
            if name in ("akka", "webhooks") and len(digest) == 64:
                digests[name] = digest
        return digests
