"""BigBlueButton host data, checked before any host is touched: the version line and SIP dial-in.

A bbb host of the inventory may say, in its host data:

    bbb_version = "jammy-300"          # or "noble-400"; optionally pinned: "jammy-300-3.0.10"
    bbb_domain = "meet.example.org"    # public name of the BBB server (its certificate)
    bbb_sip = {                        # optional: phone dial-in through a SIP provider
        "provider": "sip.example-provider.fr",
        "proxy": "proxy.example-provider.fr",       # optional, default: the provider
        "username": "0123456789",
        "password_secret": "sip/bbb-1/password",    # set with `make secret-set NAME=...`
        "numbers": ["+33912345678"],                # E.164, the first one is shown to users
        "provider_ips": ["203.0.113.0/24"],         # the only sources allowed to SIP and RTP
        "mask_caller_id": False,
        "pin_attempts": 3,
    }

`bbb_problems(...)` returns every problem at once, as assotic.report.Problem, for
assotic.preflight to print with the others. Pure: no host, no pyinfra.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assotic.report import Problem

# bbb-install's version lines (-v): the Ubuntu release each one needs.
BBB_VERSIONS: dict[str, dict[str, str]] = {
    "jammy-300": {"bbb": "3.0", "ubuntu": "22.04", "codename": "jammy"},
    "noble-400": {"bbb": "4.0", "ubuntu": "24.04", "codename": "noble"},
}
DEFAULT_BBB_VERSION = "jammy-300"
# A line alone ("jammy-300": newest of that line) or pinned to one release ("jammy-300-3.0.10").
_VERSION_RE = re.compile(r"^(?P<line>[a-z]+-\d{3})(?:-(?P<release>\d+\.\d+\.\d+))?$")
# ITU-T E.164: "+", a country code that does not start with 0, at most 15 digits in all.
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
_NAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SECRET_RE = re.compile(r"^[a-z0-9][a-z0-9_./-]*$")
_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.+@-]{1,64}$")


def version_line(bbb_version: str) -> str | None:
    """'jammy-300' for 'jammy-300' or 'jammy-300-3.0.10'; None when it is no known line."""
    match = _VERSION_RE.match(bbb_version) if isinstance(bbb_version, str) else None
    if match is None or match.group("line") not in BBB_VERSIONS:
        return None
    return match.group("line")


class SipDialIn(BaseModel):
    """Phone dial-in: one SIP account at a provider, routed to BBB's FreeSWITCH."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(description="SIP registrar of the provider (realm), a DNS name")
    proxy: str | None = Field(None, description="Outbound proxy, if not the provider itself")
    username: str = Field(description="SIP account name")
    password_secret: str = Field(description="Name of the operator secret holding the password")
    numbers: list[str] = Field(min_length=1, description="Dial-in numbers, E.164 (+33...)")
    provider_ips: list[str] = Field(min_length=1, description="Networks the provider calls from")
    port: int = Field(5060, ge=1, le=65535, description="SIP port the provider sends to")
    rtp_ports: str = Field("16384-32768", description="FreeSWITCH's RTP port range")
    mask_caller_id: bool = Field(False, description="Show only the last 4 digits of callers")
    pin_attempts: int = Field(3, ge=1, le=10, description="Conference PIN tries before hang-up")

    @field_validator("provider", "proxy")
    @classmethod
    def _dns_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.match(value):
            raise ValueError(f"a DNS name in lowercase like sip.example.org; got {value!r}")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not _USERNAME_RE.match(value):
            raise ValueError(f"letters, digits and _.+@- (1 to 64); got {value!r}")
        return value

    @field_validator("password_secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if not _SECRET_RE.match(value):
            raise ValueError(f"a secret name like sip/bbb-1/password; got {value!r}")
        return value

    @field_validator("numbers")
    @classmethod
    def _e164(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not (isinstance(v, str) and E164_RE.match(v))]
        if bad:
            raise ValueError(f"phone numbers in E.164 form like +33912345678 (no spaces); got {bad!r}")
        return values

    @field_validator("provider_ips")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"IP addresses or networks like 203.0.113.0/24; got {value!r}") from None
        return values

    @field_validator("rtp_ports")
    @classmethod
    def _port_range(cls, value: str) -> str:
        match = re.match(r"^(\d{1,5})-(\d{1,5})$", value)
        if not match or not 1 <= int(match.group(1)) <= int(match.group(2)) <= 65535:
            raise ValueError(f"a port range like 16384-32768; got {value!r}")
        return value

    @property
    def gateway_name(self) -> str:
        """FreeSWITCH gateway name and file stem: the provider's name, dots kept."""
        return self.provider

    @property
    def registrar_proxy(self) -> str:
        return self.proxy or self.provider

    @property
    def dial_number(self) -> str:
        """The number shown to participants (the first one)."""
        return self.numbers[0]

    @property
    def did_digits(self) -> list[str]:
        """The numbers as providers usually send them in the request URI: digits, no '+'."""
        return [n.lstrip("+") for n in self.numbers]


def bbb_problems(label: str, host_name: str, data: dict[str, Any]) -> list[Problem]:
    """Problems in a bbb host's data (version line, domain, SIP): all of them, at once."""
    problems: list[Problem] = []
    version = data.get("bbb_version", DEFAULT_BBB_VERSION)
    if version_line(version) is None:
        problems.append(Problem(label, f"{host_name}.bbb_version", "one of "
                                + ", ".join(BBB_VERSIONS) + " (optionally pinned, like "
                                f"jammy-300-3.0.10); got {version!r}"))
    domain = data.get("bbb_domain")
    if domain is not None and not (isinstance(domain, str) and _NAME_RE.match(domain)):
        problems.append(Problem(label, f"{host_name}.bbb_domain", "a DNS name in lowercase like "
                                f"meet.example.org; got {domain!r}"))
    if data.get("bbb_sip") is not None:
        problems += sip_problems(label, host_name, data["bbb_sip"])[1]
    return problems


def sip_problems(label: str, host_name: str, raw: Any) -> tuple[SipDialIn | None, list[Problem]]:
    """(the parsed dial-in, []) or (None, every problem naming host.bbb_sip.<field>)."""
    if not isinstance(raw, dict):
        return None, [Problem(label, f"{host_name}.bbb_sip", f"a dict (see docs/bbb.md); got {raw!r}")]
    try:
        return SipDialIn.model_validate(raw), []
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key; expected one of " + ", ".join(SipDialIn.model_fields)
            elif error["type"] == "missing":
                message = "a value (required)"
            problems.append(Problem(label, f"{host_name}.bbb_sip.{where}", message))
        return None, problems


def sip_secret_problems(label: str, hosts: dict[str, dict[str, Any]], bbb_hosts: list[str],
                        store: Any) -> list[Problem]:
    """Each dial-in password must already be in the store: it is the operator's, never generated."""
    problems = []
    for name in bbb_hosts:
        raw = hosts.get(name, {}).get("bbb_sip")
        if raw is None:
            continue
        dial_in, errors = sip_problems(label, name, raw)
        if dial_in is None or errors or store is None:
            continue
        if dial_in.password_secret not in store:
            problems.append(Problem(label, f"{name}.bbb_sip.password_secret", "a secret in the "
                                    f"store: run `make secret-set NAME={dial_in.password_secret}` "
                                    "(the provider's SIP password); it is missing"))
    return problems
