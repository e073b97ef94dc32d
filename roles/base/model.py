"""The base role's data: firewall openings, sysadmins and the settings read from host data.

Pure Python, no pyinfra host access: unit tests build these directly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Defaults of every host-data knob the role reads (documented in docs/base.md).
DEFAULTS: dict[str, Any] = {
    "sysadmins": [],
    "timezone": "Europe/Paris",
    "swap_file_mb": 0,
    "journald_max_use": "200M",
    "unattended_upgrades_reboot_time": None,
    "ssh_listen_port": 22,
    "base_extra_packages": [],
    # Debian's archive and its security archive; a provider's mirror may replace the first. The
    # security archive is Debian's own host, not mirrored, so that fixes arrive at once.
    "apt_mirror": "http://deb.debian.org/debian",
    "apt_security_mirror": "http://security.debian.org/debian-security",
}

# Unix login names we accept: what Debian's adduser accepts by default (NAME_REGEX in
# adduser.conf), which also keeps names safe to write into sudoers.
_LOGIN_RE = re.compile(r"^[a-z][-a-z0-9_]{0,31}$")
_PORT_RANGE_RE = re.compile(r"^(\d{1,5})-(\d{1,5})$")
_REBOOT_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# journald sizes: a number with an optional K, M, G, T suffix (journald.conf(5)).
_JOURNALD_SIZE_RE = re.compile(r"^\d+[KMGT]?$")
# An apt URI: http or https, no space (one deb822 URIs: field each).
_APT_URI_RE = re.compile(r"^https?://[^\s]+$")


class BaseDataError(ValueError):
    """Host data the base role cannot use; the message names the field."""


@dataclass(frozen=True)
class Opening:
    """One hole in the firewall, declared by the role that needs it.

    port: a port (443) or an inclusive range ("16384-32768").
    sources: networks allowed to connect; empty means from anywhere.
    """

    port: int | str
    protocol: str
    comment: str
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"Opening {self.comment!r}: protocol must be tcp or udp, got {self.protocol!r}")
        self.port_range()  # validates the port
        if not self.comment or '"' in self.comment or "\n" in self.comment:
            raise ValueError(f"Opening on port {self.port}: comment must be a non-empty line without quotes")
        if isinstance(self.sources, str):
            raise ValueError(f"Opening {self.comment!r}: sources must be a tuple of networks, not a string")
        for source in self.sources:
            try:
                ipaddress.ip_network(source, strict=False)
            except ValueError as error:
                raise ValueError(f"Opening {self.comment!r}: bad source {source!r}: {error}") from None

    def port_range(self) -> tuple[int, int]:
        """(first, last) ports covered, both included."""
        if isinstance(self.port, bool):
            raise ValueError(f"Opening {self.comment!r}: bad port {self.port!r}")
        if isinstance(self.port, int):
            first = last = self.port
        else:
            match = _PORT_RANGE_RE.match(str(self.port))
            if match is None:
                raise ValueError(f"Opening {self.comment!r}: port must be an int or 'first-last', got {self.port!r}")
            first, last = int(match.group(1)), int(match.group(2))
        if not (1 <= first <= last <= 65535):
            raise ValueError(f"Opening {self.comment!r}: port {self.port!r} out of 1-65535 or reversed")
        return first, last

    def covers(self, port: int, protocol: str) -> bool:
        first, last = self.port_range()
        return protocol == self.protocol and first <= port <= last

    @property
    def nft_port(self) -> str:
        """The port as nft writes it: 443 or 16384-32768."""
        first, last = self.port_range()
        return str(first) if first == last else f"{first}-{last}"

    @property
    def ipv4_sources(self) -> list[str]:
        return [s for s in self.sources if ipaddress.ip_network(s, strict=False).version == 4]

    @property
    def ipv6_sources(self) -> list[str]:
        return [s for s in self.sources if ipaddress.ip_network(s, strict=False).version == 6]


@dataclass(frozen=True)
class Sysadmin:
    """A person who administers the host: a Unix login in group sudo, keys only.

    present=False removes the account (keeps the home folder) and its sudo rights:
    that is how a sysadmin who leaves the association is revoked.
    """

    name: str
    ssh_keys: tuple[str, ...]
    present: bool = True

    @classmethod
    def from_data(cls, index: int, item: Mapping[str, Any]) -> Sysadmin:
        where = f"sysadmins[{index}]"
        if not isinstance(item, Mapping):
            raise BaseDataError(f"{where}: expected a dict with name and ssh_keys, got {type(item).__name__}")
        unknown = set(item) - {"name", "ssh_keys", "present"}
        if unknown:
            raise BaseDataError(f"{where}: unknown keys {sorted(unknown)} (expected name, ssh_keys, present)")
        name = item.get("name")
        if not isinstance(name, str) or not _LOGIN_RE.match(name) or name == "root":
            raise BaseDataError(f"{where}.name: expected a Unix login like 'camille' (not root), got {name!r}")
        present = item.get("present", True)
        if not isinstance(present, bool):
            raise BaseDataError(f"{where}.present: expected true or false, got {present!r}")
        keys = item.get("ssh_keys", [])
        if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
            raise BaseDataError(f"{where}.ssh_keys: expected a list of public key lines")
        keys = tuple(k.strip() for k in keys)
        for key in keys:
            if "\n" in key or not key.startswith(("ssh-", "ecdsa-", "sk-")):
                raise BaseDataError(f"{where}.ssh_keys: not a public key line: {key[:30]!r}")
        if present and not keys:
            raise BaseDataError(f"{where}.ssh_keys: a present sysadmin needs at least one key")
        return cls(name=name, ssh_keys=keys, present=present)


@dataclass(frozen=True)
class BaseSettings:
    """Everything the base role reads from host data, checked once."""

    sysadmins: tuple[Sysadmin, ...] = ()
    timezone: str = DEFAULTS["timezone"]
    swap_file_mb: int = DEFAULTS["swap_file_mb"]
    journald_max_use: str = DEFAULTS["journald_max_use"]
    unattended_upgrades_reboot_time: str | None = DEFAULTS["unattended_upgrades_reboot_time"]
    ssh_listen_port: int = DEFAULTS["ssh_listen_port"]
    base_extra_packages: tuple[str, ...] = ()
    apt_mirror: str = DEFAULTS["apt_mirror"]
    apt_security_mirror: str = DEFAULTS["apt_security_mirror"]
    # Where unattended-upgrades mails its reports: the plan's mail_admin (roles/mail relays it).
    update_report_mail_to: str | None = None
    openings: tuple[Opening, ...] = field(default=())

    @classmethod
    def from_data(cls, data: Any, openings: Iterable[Opening] = (),
                  update_report_mail_to: str | None = None) -> BaseSettings:
        """Build from pyinfra host data (or any object/dict with the knobs); raises on bad values."""

        def get(name: str) -> Any:
            return _data_value(data, name)

        errors = []
        sysadmins: list[Sysadmin] = []
        for index, item in enumerate(get("sysadmins") or []):
            try:
                sysadmins.append(Sysadmin.from_data(index, item))
            except BaseDataError as error:
                errors.append(str(error))
        names = [s.name for s in sysadmins]
        if len(names) != len(set(names)):
            errors.append(f"sysadmins: duplicate names in {names}")

        swap = get("swap_file_mb")
        if isinstance(swap, bool) or not isinstance(swap, int) or swap < 0:
            errors.append(f"swap_file_mb: expected a size in MiB >= 0, got {swap!r}")
        journald = str(get("journald_max_use"))
        if not _JOURNALD_SIZE_RE.match(journald):
            errors.append(f"journald_max_use: expected a size like '200M', got {journald!r}")
        reboot = get("unattended_upgrades_reboot_time")
        if reboot is not None and not (isinstance(reboot, str) and _REBOOT_TIME_RE.match(reboot)):
            errors.append(f"unattended_upgrades_reboot_time: expected None or 'HH:MM', got {reboot!r}")
        port = ssh_listen_port(data)
        if port is None:
            errors.append(f"ssh_listen_port: expected a port 1-65535, got {get('ssh_listen_port')!r}")
        timezone = get("timezone")
        if not isinstance(timezone, str) or not re.match(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$", timezone):
            errors.append(f"timezone: expected a zone name like 'Europe/Paris', got {timezone!r}")
        extra = get("base_extra_packages")
        if isinstance(extra, str) or not all(isinstance(p, str) for p in extra):
            errors.append("base_extra_packages: expected a list of Debian package names")
        for name in ("apt_mirror", "apt_security_mirror"):
            if not (isinstance(get(name), str) and _APT_URI_RE.match(get(name))):
                errors.append(f"{name}: expected an http:// or https:// URL like {DEFAULTS[name]!r}, got {get(name)!r}")
        if errors:
            raise BaseDataError("base role host data:\n  " + "\n  ".join(errors))

        return cls(
            sysadmins=tuple(sysadmins),
            timezone=timezone,
            swap_file_mb=swap,
            journald_max_use=journald,
            unattended_upgrades_reboot_time=reboot,
            ssh_listen_port=port,
            base_extra_packages=tuple(extra),
            apt_mirror=get("apt_mirror").rstrip("/"),
            apt_security_mirror=get("apt_security_mirror").rstrip("/"),
            update_report_mail_to=update_report_mail_to,
            openings=tuple(openings),
        )

    @property
    def present_sysadmins(self) -> tuple[Sysadmin, ...]:
        return tuple(s for s in self.sysadmins if s.present)


def ssh_listen_port(data: Any) -> int | None:
    """ssh_listen_port from host data (default 22), None when it is not a valid port."""
    port = _data_value(data, "ssh_listen_port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return None
    return port


def ssh_openings(data: Any) -> list[Opening]:
    """The firewall opening for sshd, from anywhere: sysadmins' addresses are not known."""
    port = ssh_listen_port(data)
    if port is None:
        raise BaseDataError(f"ssh_listen_port: expected a port 1-65535 in host data, got {_data_value(data, 'ssh_listen_port')!r}")
    return [Opening(port=port, protocol="tcp", comment="SSH")]


def _data_value(data: Any, name: str) -> Any:
    """A knob from a dict or from pyinfra's HostData (which answers None when unset)."""
    if isinstance(data, Mapping):
        value = data.get(name)
    else:
        value = getattr(data, name, None)
    return DEFAULTS[name] if value is None else value
