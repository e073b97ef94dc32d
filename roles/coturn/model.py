"""The coturn role's data: knobs from host data, the firewall openings and turnserver.conf.

Pure Python, no pyinfra host access: unit tests build these directly. The configuration
follows BigBlueButton's external TURN guidance (docs.bigbluebutton.org, "Turn Server
Configuration") and coturn's own turnserver.conf reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assotic.layout import TURN_SECRET
from roles.base.model import Opening
from assotic.templating import render

TURNSERVER_CONF = "/etc/turnserver.conf"
TURN_CERT_DIR = "/etc/turnserver"  # coturn's copies of the certificate, readable by turnserver
TURN_CERT = f"{TURN_CERT_DIR}/fullchain.pem"
TURN_KEY = f"{TURN_CERT_DIR}/privkey.pem"
# coturn runs as turnserver (Debian's coturn.service); port 443 needs CAP_NET_BIND_SERVICE.
SERVICE_DROP_IN = "/etc/systemd/system/coturn.service.d/assotic.conf"
# Debian's coturn opens its SQLite database (turndb) here at every start, even with a shared
# secret and no user in it: the one folder its sandbox leaves writable.
TURN_DB_DIR = "/var/lib/turn"
# certbot runs this after each renewal: copy the certificate where turnserver reads it.
RENEWAL_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/coturn"
SECRET_NAME = TURN_SECRET  # one secret shared by all coturn and BBB hosts (assotic/layout.py)

DEFAULTS: dict[str, Any] = {
    "turn_domain": None,  # public name of the TURN server (certificate, realm): required
    "turn_realm": None,  # default: turn_domain
    "turn_listening_port": 3478,  # STUN/TURN over UDP and TCP
    "turn_tls_port": 443,  # TURN over TLS: 443 passes the strictest firewalls (BBB's advice)
    "turn_relay_ports": "32769-65535",  # UDP relay range (BBB's guidance)
    "turn_certificate": "acme",  # "acme" (certbot standalone, port 80) or "self-signed" (lab)
    "turn_allowed_peer_ips": [],  # exceptions to the denied private ranges (a BBB in a LAN)
}

# Peers a TURN client must never reach through us (RFC 1918, loopback, link-local, CGNAT,
# documentation and other special-purpose ranges; BBB's list, after CVE-2020-26262).
DENIED_PEER_RANGES = (
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "127.0.0.0-127.255.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.0.0.0-192.0.0.255",
    "192.0.2.0-192.0.2.255",
    "192.168.0.0-192.168.255.255",
    "198.18.0.0-198.19.255.255",
    "198.51.100.0-198.51.100.255",
    "203.0.113.0-203.0.113.255",
    "224.0.0.0-255.255.255.255",
    "::1",
    "::ffff:0:0-::ffff:ffff:ffff",
    "64:ff9b::-64:ff9b::ffff:ffff",
    "64:ff9b:1::-64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
    "2001::-2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "ff00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
)

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_RANGE_RE = re.compile(r"^(\d{1,5})-(\d{1,5})$")


class CoturnDataError(ValueError):
    """Host data the coturn role cannot use; the message names the field."""


@dataclass(frozen=True)
class CoturnSettings:
    domain: str
    realm: str
    listening_port: int = 3478
    tls_port: int = 443
    relay_min: int = 32769
    relay_max: int = 65535
    certificate: str = "acme"
    allowed_peer_ips: tuple[str, ...] = ()

    @classmethod
    def from_data(cls, data: Any) -> CoturnSettings:
        def get(name: str) -> Any:
            value = data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)
            return DEFAULTS[name] if value is None else value

        errors = []
        domain = get("turn_domain")
        if not (isinstance(domain, str) and _DOMAIN_RE.match(domain)):
            errors.append(f"turn_domain: the TURN server's public DNS name, like turn.example.org; got {domain!r}")
        realm = get("turn_realm") or domain
        ports = {}
        for name in ("turn_listening_port", "turn_tls_port"):
            ports[name] = get(name)
            if isinstance(ports[name], bool) or not isinstance(ports[name], int) or not 1 <= ports[name] <= 65535:
                errors.append(f"{name}: a port 1-65535; got {ports[name]!r}")
        match = _RANGE_RE.match(str(get("turn_relay_ports")))
        relay = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        if not match or not 1024 <= relay[0] < relay[1] <= 65535:
            errors.append(f"turn_relay_ports: a range like 32769-65535 above 1023; got {get('turn_relay_ports')!r}")
        certificate = get("turn_certificate")
        if certificate not in ("acme", "self-signed"):
            errors.append(f"turn_certificate: 'acme' or 'self-signed'; got {certificate!r}")
        allowed = get("turn_allowed_peer_ips")
        if isinstance(allowed, str) or not all(isinstance(a, str) and "\n" not in a for a in allowed):
            errors.append("turn_allowed_peer_ips: a list of addresses or ranges")
        if errors:
            raise CoturnDataError("coturn role host data:\n  " + "\n  ".join(errors))
        return cls(domain=domain, realm=realm, listening_port=ports["turn_listening_port"],
                   tls_port=ports["turn_tls_port"], relay_min=relay[0], relay_max=relay[1],
                   certificate=certificate, allowed_peer_ips=tuple(allowed))


def coturn_openings(settings: CoturnSettings) -> list[Opening]:
    """STUN/TURN on UDP and TCP, TURN over TLS (TCP, and UDP for DTLS), the UDP relay range."""
    openings = [
        Opening(settings.listening_port, "udp", "coturn STUN/TURN"),
        Opening(settings.listening_port, "tcp", "coturn STUN/TURN"),
        Opening(settings.tls_port, "tcp", "coturn TURN over TLS"),
        Opening(settings.tls_port, "udp", "coturn TURN over DTLS"),
        Opening(f"{settings.relay_min}-{settings.relay_max}", "udp", "coturn relay ports"),
    ]
    if settings.certificate == "acme":
        # certbot --standalone answers the HTTP-01 challenge itself, at issue and at renewal.
        openings.append(Opening(80, "tcp", "ACME HTTP-01 challenge for coturn"))
    return openings


def turnserver_conf(settings: CoturnSettings, static_auth_secret: str) -> str:
    """/etc/turnserver.conf (holds the shared secret: 0640 root:turnserver)."""
    if not static_auth_secret or "\n" in static_auth_secret:
        raise CoturnDataError("the TURN static-auth-secret must be one non-empty line")
    return render("coturn/turnserver.conf.j2", turn=settings, secret=static_auth_secret,
                  denied=DENIED_PEER_RANGES, cert=TURN_CERT, key=TURN_KEY)


def service_drop_in() -> str:
    return render("coturn/coturn.service.d.conf.j2", turn={"db_dir": TURN_DB_DIR})


def renewal_hook(settings: CoturnSettings) -> str:
    return render("coturn/renewal-hook.sh.j2", turn=settings, cert_dir=TURN_CERT_DIR)


def self_signed_command(settings: CoturnSettings) -> str:
    """A self-signed certificate for the lab, straight into coturn's folder."""
    return (f"openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj /CN={settings.domain} "
            f"-addext subjectAltName=DNS:{settings.domain} -keyout {TURN_KEY} -out {TURN_CERT} "
            f"&& chown root:turnserver {TURN_KEY} {TURN_CERT} && chmod 0640 {TURN_KEY} {TURN_CERT}")


def certbot_standalone_command(settings: CoturnSettings, acme_directory: str, email: str | None) -> str:
    """certbot answers the challenge on port 80 itself (no web server on a TURN host)."""
    argv = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--standalone",
            "--preferred-challenges", "http", "--cert-name", settings.domain, "-d", settings.domain,
            "--server", acme_directory]
    argv += ["--email", email, "--no-eff-email"] if email else ["--register-unsafely-without-email"]
    return " ".join(argv)
