"""Facts read through Nextcloud's occ, as the instance's user. Read-only: they change nothing.

Each fact answers "unknown" (empty) when occ cannot run yet, e.g. on a first deploy
before the release is unpacked: the role then schedules the steps, which run in order
after the unpack.
"""

from __future__ import annotations

import json

from pyinfra.api import FactBase


class _Occ(FactBase):
    def command(self, occ: str, args: str) -> str:
        # `occ` is the prefix built by roles.nextcloud.occ_prefix (runuser, env, php, occ).
        return f"{occ} {args} 2>/dev/null || true"


class OccJson(_Occ):
    """The JSON an occ command prints with --output=json ({} when occ cannot answer)."""

    def process(self, output: list[str]):
        text = "\n".join(output).strip()
        start = text.find("{")  # occ may print warnings before the JSON
        try:
            return json.loads(text[start:]) if start >= 0 else {}
        except ValueError:
            return {}


class OccValue(_Occ):
    """One line an occ command prints (config:app:get ...), None when unset or unknown."""

    def process(self, output: list[str]):
        lines = [line for line in output if line.strip()]
        return lines[-1].strip() if lines else None


class NextcloudConfigState(FactBase):
    """What config.php says, read as root without running occ (so without any code tree):
    {"installed": bool, "version": "34.0.4.2" or None, "maintenance": bool}.

    Nextcloud writes `installed` and `version` itself; the code's version is compared with
    the latter to know whether `occ upgrade` is due (as Nextcloud's own needsDbUpgrade does).
    """

    def command(self, path: str) -> str:
        return (f"if [ -r {path} ]; then grep -Eo \"'(installed|version|maintenance)'"
                f"[[:space:]]*=>[[:space:]]*[^,]+\" {path} || true; fi")

    def process(self, output: list[str]):
        return parse_config_state(output)


def parse_config_state(lines: list[str]) -> dict:
    state = {"installed": False, "version": None, "maintenance": False}
    for line in lines:
        key, _, value = line.partition("=>")
        key, value = key.strip().strip("'\""), value.strip().strip("'\"")
        if key in ("installed", "maintenance"):
            state[key] = value.lower() == "true"
        elif key == "version" and value:
            state["version"] = value
    return state


class ManagedConfigKeys(FactBase):
    """{path: [key, ...]} of every <user>.managed-keys file in `folder`: the config.php keys each
    instance's last deploy set (roles/nextcloud). One command for all instances of the host."""

    def command(self, folder: str) -> str:
        return (f"for f in {folder}/*.managed-keys; do [ -f \"$f\" ] && sed \"s|^|$f:|\" \"$f\"; "
                "done 2>/dev/null || true")

    @staticmethod
    def default() -> dict:
        return {}

    def process(self, output: list[str]) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {}
        for line in output:
            path, _, key = line.partition(":")
            if key.strip():
                keys.setdefault(path, []).append(key.strip())
        return keys
