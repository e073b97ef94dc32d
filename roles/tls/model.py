"""The TLS role's data: knobs from host data, certificate paths and the commands that make them.

Pure Python, no pyinfra host access: unit tests build these directly.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

LETS_ENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"

# Defaults of every host-data knob the role reads (documented in docs/web.md).
DEFAULTS: dict[str, Any] = {
    "acme_directory": LETS_ENCRYPT_PRODUCTION,
    "acme_email": None,
    "tls_self_signed": False,
    "acme_lab_server": False,
    # The CAA issuer domain of the ACME CA (`make dns`); None: known from acme_directory.
    "acme_caa_issuer": None,
}

# The issuer domain each public ACME directory's CA names in CAA records (RFC 8659).
CAA_ISSUERS = {
    LETS_ENCRYPT_PRODUCTION: "letsencrypt.org",
    "https://acme-staging-v02.api.letsencrypt.org/directory": "letsencrypt.org",
}


def caa_issuer(data: Any) -> str | None:
    """The CAA issuer for a host's certificates, or None (a private CA such as the lab's)."""
    def get(name: str) -> Any:
        value = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
        return DEFAULTS[name] if value is None else value

    return get("acme_caa_issuer") or CAA_ISSUERS.get(get("acme_directory"))

# certbot's webroot: nginx serves /.well-known/acme-challenge/ from here for every name on
# port 80 (roles/nginx), certbot writes the challenge files into it.
ACME_WEBROOT = "/var/www/assotic-acme"
LETSENCRYPT_LIVE = "/etc/letsencrypt/live"
SELF_SIGNED_DIR = "/etc/ssl/assotic"
SELF_SIGNED_DAYS = 825
# certbot runs every executable in this folder after each successful renewal (certbot(1),
# "renewal hooks"); Debian's certbot.timer runs `certbot -q renew` twice a day.
RENEWAL_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/reload-nginx"

# The lab's own ACME server: Debian's pebble (Let's Encrypt's test CA), on the host itself,
# listening on loopback only. Never in production: acme_lab_server is False by default.
PEBBLE_UNIT = "assotic-lab-pebble.service"
PEBBLE_DIR = "/etc/assotic-lab-pebble"
PEBBLE_CERT = f"{PEBBLE_DIR}/cert.pem"  # pebble's own listener certificate (self-signed)
PEBBLE_KEY = f"{PEBBLE_DIR}/key.pem"
PEBBLE_CONFIG = f"{PEBBLE_DIR}/pebble-config.json"
PEBBLE_LISTEN = "127.0.0.1:14000"
PEBBLE_MANAGEMENT_LISTEN = "127.0.0.1:15000"
PEBBLE_DIRECTORY = f"https://{PEBBLE_LISTEN}/dir"  # what group_data/lab.py sets as acme_directory
PEBBLE_REREGISTER = "/usr/local/sbin/assotic-lab-pebble-reregister"
# certbot.service (run by certbot.timer) must trust pebble's certificate too, or renewals fail.
CERTBOT_LAB_DROP_IN = "/etc/systemd/system/certbot.service.d/assotic-lab-pebble.conf"

_EMAIL_RE = re.compile(r"^[^@\s'\"]+@[^@\s'\"]+\.[^@\s'\"]+$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class TlsDataError(ValueError):
    """Host data the TLS role cannot use; the message names the field."""


@dataclass(frozen=True)
class CertPaths:
    """Where nginx finds one domain's certificate chain and key."""

    fullchain: str
    privkey: str


@dataclass(frozen=True)
class TlsSettings:
    """Everything the TLS role reads from host data, checked once."""

    acme_directory: str = LETS_ENCRYPT_PRODUCTION
    acme_email: str | None = None
    tls_self_signed: bool = False
    acme_lab_server: bool = False

    @classmethod
    def from_data(cls, data: Any) -> TlsSettings:
        def get(name: str) -> Any:
            if isinstance(data, Mapping):
                value = data.get(name)
            else:
                value = getattr(data, name, None)
            return DEFAULTS[name] if value is None else value

        errors = []
        directory = get("acme_directory")
        parsed = urlparse(directory) if isinstance(directory, str) else None
        if parsed is None or parsed.scheme != "https" or not parsed.netloc or " " in directory:
            errors.append(f"acme_directory: expected an https:// ACME directory URL, got {directory!r}")
        email = get("acme_email")
        if email is not None and not (isinstance(email, str) and _EMAIL_RE.match(email)):
            errors.append(f"acme_email: expected None or an e-mail address, got {email!r}")
        flags = {}
        for name in ("tls_self_signed", "acme_lab_server"):
            flags[name] = get(name)
            if not isinstance(flags[name], bool):
                errors.append(f"{name}: expected True or False, got {flags[name]!r}")
        if flags["acme_lab_server"] is True and directory != PEBBLE_DIRECTORY:
            errors.append(f"acme_directory: with acme_lab_server the lab's pebble answers on "
                          f"{PEBBLE_DIRECTORY!r}, got {directory!r}")
        if flags["tls_self_signed"] is True and flags["acme_lab_server"] is True:
            errors.append("tls_self_signed and acme_lab_server: pick one (self-signed needs no ACME server)")
        if errors:
            raise TlsDataError("TLS role host data:\n  " + "\n  ".join(errors))
        return cls(acme_directory=directory, acme_email=email, **flags)

    @property
    def uses_acme(self) -> bool:
        return not self.tls_self_signed

    @property
    def ca_bundle(self) -> str | None:
        """What certbot must trust to talk to the ACME server: pebble's certificate in the lab."""
        return PEBBLE_CERT if self.acme_lab_server else None


def check_domain(domain: str) -> str:
    if not isinstance(domain, str) or not _DOMAIN_RE.match(domain):
        raise TlsDataError(f"not a domain name for a certificate: {domain!r}")
    return domain


def cert_paths(domain: str, settings: TlsSettings) -> CertPaths:
    """Where the certificate of `domain` lives: certbot's live/ folder, or ours when self-signed."""
    check_domain(domain)
    if settings.tls_self_signed:
        return CertPaths(f"{SELF_SIGNED_DIR}/{domain}/fullchain.pem", f"{SELF_SIGNED_DIR}/{domain}/privkey.pem")
    return CertPaths(f"{LETSENCRYPT_LIVE}/{domain}/fullchain.pem", f"{LETSENCRYPT_LIVE}/{domain}/privkey.pem")


def certbot_command(domain: str, settings: TlsSettings) -> str:
    """`certbot certonly` for one domain with the webroot nginx serves on port 80.

    certbot stores --server, --webroot and the account in /etc/letsencrypt/renewal/<domain>.conf,
    so `certbot renew` (certbot.timer) goes back to the same ACME server the same way.
    """
    check_domain(domain)
    argv = [
        "certbot", "certonly",
        "--non-interactive", "--agree-tos",
        "--webroot", "-w", ACME_WEBROOT,
        "--cert-name", domain, "-d", domain,
        "--server", settings.acme_directory,
    ]
    if settings.acme_email:
        argv += ["--email", settings.acme_email, "--no-eff-email"]
    else:
        argv += ["--register-unsafely-without-email"]
    return shlex.join(argv)


def self_signed_command(domain: str) -> str:
    """openssl: a self-signed certificate for `domain` (only when tls_self_signed asks for it)."""
    paths = cert_paths(domain, TlsSettings(tls_self_signed=True))
    folder = paths.fullchain.rsplit("/", 1)[0]
    argv = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
        "-days", str(SELF_SIGNED_DAYS),
        "-subj", f"/CN={domain}",
        "-addext", f"subjectAltName=DNS:{domain}",
        "-keyout", paths.privkey, "-out", paths.fullchain,
    ]
    return f"install -d -m 0700 {shlex.quote(folder)} && {shlex.join(argv)} 2>/dev/null && chmod 0600 {shlex.quote(paths.privkey)}"


def pebble_cert_command() -> str:
    """openssl: the lab pebble's own listener certificate, for 127.0.0.1 and localhost."""
    argv = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        "-subj", "/CN=assotic lab ACME server (pebble)",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", PEBBLE_KEY, "-out", PEBBLE_CERT,
    ]
    return f"{shlex.join(argv)} 2>/dev/null && chmod 0600 {PEBBLE_KEY}"
