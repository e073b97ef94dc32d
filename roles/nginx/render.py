"""Pure rendering of every file the nginx role writes, and the firewall openings it needs.

No host access: unit tests render every template for every kind of vhost. Each template
gets one context object, `nginx`, so its names never collide with pyinfra arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assotic.templating import template_environment

from assotic.needs import Vhost
from roles.base import Opening
from roles.tls.model import ACME_WEBROOT, CertPaths

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "nginx"

# Defaults of every host-data knob the role reads (documented in docs/web.md).
DEFAULTS: dict[str, Any] = {
    "nginx_hsts_max_age": 31536000,  # one year
    "nginx_hsts_include_subdomains": False,
}
# Nextcloud's security scan asks for at least 15552000 s (180 days).
HSTS_MIN_AGE = 15552000

# Mozilla's "intermediate" server-side TLS profile for nginx 1.22 / 1.26 with OpenSSL 3
# (https://ssl-config.mozilla.org/): TLS 1.2 and 1.3, forward-secret AEAD suites only.
# TLS 1.3 suites are OpenSSL's defaults and need no list. No ssl_stapling: Let's Encrypt
# ended OCSP in 2025, and pebble has none.
TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
TLS_CURVES = ("X25519", "prime256v1", "secp384r1")

# The default server's certificate on 443: made once by Debian's ssl-cert package.
SNAKEOIL_CERT = "/etc/ssl/certs/ssl-cert-snakeoil.pem"
SNAKEOIL_KEY = "/etc/ssl/private/ssl-cert-snakeoil.key"

# Kinds of vhost: each has templates/nginx/locations-<kind>.conf.j2.
PHP_KINDS = ("nextcloud", "paheko")
KINDS = (*PHP_KINDS, "standin", "proxy")

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_UPSTREAM_RE = re.compile(r"^(\[[0-9a-f:]+\]|[a-z0-9.-]+):\d{1,5}$|^unix:/[\w/.@-]+$")
_SIZE_RE = re.compile(r"^\d+[kKmMgG]?$")
_PATH_RE = re.compile(r"^/[\w/.@-]*$")
_URL_PREFIX_RE = re.compile(r"^/[\w-]+/$")
_EXTENSION_RE = re.compile(r"^[a-z0-9]{1,8}$")


class NginxDataError(ValueError):
    """Host data or a vhost the nginx role cannot use; the message names the field."""


@dataclass(frozen=True)
class NginxSettings:
    """Everything the nginx role reads from host data, checked once."""

    hsts_max_age: int = DEFAULTS["nginx_hsts_max_age"]
    hsts_include_subdomains: bool = DEFAULTS["nginx_hsts_include_subdomains"]
    # nginx 1.25.1 moved HTTP/2 from `listen ... http2` to `http2 on;` and warns about the old
    # form: Debian 12 ships 1.22 (old form only), Debian 13 ships 1.26.
    http2_directive: bool = False

    @classmethod
    def from_data(cls, data: Any, debian_major: int | None = None) -> NginxSettings:
        def get(name: str) -> Any:
            value = data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)
            return DEFAULTS[name] if value is None else value

        errors = []
        max_age = get("nginx_hsts_max_age")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < HSTS_MIN_AGE:
            errors.append(f"nginx_hsts_max_age: expected seconds >= {HSTS_MIN_AGE}, got {max_age!r}")
        subdomains = get("nginx_hsts_include_subdomains")
        if not isinstance(subdomains, bool):
            errors.append(f"nginx_hsts_include_subdomains: expected True or False, got {subdomains!r}")
        if errors:
            raise NginxDataError("nginx role host data:\n  " + "\n  ".join(errors))
        return cls(
            hsts_max_age=max_age,
            hsts_include_subdomains=subdomains,
            http2_directive=debian_major is not None and debian_major >= 13,
        )

    @property
    def hsts(self) -> str:
        return f"max-age={self.hsts_max_age}" + ("; includeSubDomains" if self.hsts_include_subdomains else "")


def security_headers(settings: NginxSettings) -> tuple[tuple[str, str], ...]:
    """Headers every tenant response carries (`add_header ... always`, so errors too).

    Nextcloud would send Referrer-Policy, X-Content-Type-Options and X-Frame-Options itself;
    its vhost passes `modHeadersAvailable` so that PHP leaves them to nginx (no duplicates).
    """
    return (
        ("Strict-Transport-Security", settings.hsts),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "SAMEORIGIN"),
        # Minimal: nothing here uses these; camera and microphone stay allowed for video calls.
        ("Permissions-Policy", "geolocation=(), payment=(), usb=(), interest-cohort=()"),
    )


def check_vhost(vhost: Vhost) -> Vhost:
    """Refuse a vhost that would render a broken or unsafe server block; say which field."""
    where = f"vhost {vhost.domain!r} ({vhost.instance.app} of {vhost.instance.slug})"
    errors = []
    if not _DOMAIN_RE.match(vhost.domain or ""):
        errors.append("domain: expected a lowercase domain name")
    if vhost.kind not in KINDS:
        errors.append(f"kind: expected one of {', '.join(KINDS)}, got {vhost.kind!r}")
    if vhost.kind in (*PHP_KINDS, "standin") and not (vhost.web_root and _PATH_RE.match(vhost.web_root)):
        errors.append(f"web_root: an absolute path is required for kind {vhost.kind}, got {vhost.web_root!r}")
    if vhost.kind in PHP_KINDS and not (vhost.php_socket and _PATH_RE.match(vhost.php_socket)):
        errors.append(f"php_socket: a PHP-FPM socket path is required for kind {vhost.kind}")
    if vhost.php_socket is not None and not _PATH_RE.match(vhost.php_socket):
        errors.append(f"php_socket: expected an absolute path, got {vhost.php_socket!r}")
    if vhost.kind == "proxy" and not (vhost.upstream and _UPSTREAM_RE.match(vhost.upstream)):
        errors.append(f"upstream: 'host:port' or 'unix:/path' is required for kind proxy, got {vhost.upstream!r}")
    for alias in vhost.static_aliases:
        if not (_URL_PREFIX_RE.match(alias.url_prefix) and _PATH_RE.match(alias.folder)
                and alias.extensions and all(_EXTENSION_RE.match(e) for e in alias.extensions)):
            errors.append(f"static_aliases: expected a URL prefix like /custom_apps/, an absolute "
                          f"folder and file extensions, got {alias!r}")
    if not _SIZE_RE.match(vhost.max_body_size):
        errors.append(f"max_body_size: expected a size like 512M, got {vhost.max_body_size!r}")
    if errors:
        raise NginxDataError(f"{where}:\n  " + "\n  ".join(errors))
    return vhost


def check_vhosts(vhosts: Iterable[Vhost]) -> list[Vhost]:
    vhosts = [check_vhost(v) for v in vhosts]
    domains = [v.domain for v in vhosts]
    duplicates = sorted({d for d in domains if domains.count(d) > 1})
    if duplicates:
        raise NginxDataError(f"vhosts: the same domain twice on one host: {duplicates}")
    return vhosts


@dataclass(frozen=True)
class NginxContext:
    """What the templates see as `nginx`."""

    settings: NginxSettings
    vhost: Vhost | None = None
    cert: CertPaths | None = None
    headers: tuple[tuple[str, str], ...] = ()
    acme_webroot: str = ACME_WEBROOT
    snakeoil_cert: str = SNAKEOIL_CERT
    snakeoil_key: str = SNAKEOIL_KEY
    tls_protocols: tuple[str, ...] = TLS_PROTOCOLS
    tls_ciphers: tuple[str, ...] = TLS_CIPHERS
    tls_curves: tuple[str, ...] = TLS_CURVES
    snippets: dict[str, str] = field(default_factory=dict)


_environment = template_environment(TEMPLATES_DIR)

# Files every web host gets, besides one per vhost.
HTTP_CONF = "/etc/nginx/conf.d/assotic-http.conf"
DEFAULT_SERVER_CONF = "/etc/nginx/conf.d/assotic-default-server.conf"
TLS_SNIPPET = "/etc/nginx/snippets/assotic-tls.conf"
ACME_SNIPPET = "/etc/nginx/snippets/assotic-acme-challenge.conf"
SITES_ENABLED = "/etc/nginx/sites-enabled"


def _context(settings: NginxSettings, **kwargs: Any) -> NginxContext:
    snippets = {"tls": TLS_SNIPPET, "acme": ACME_SNIPPET}
    return NginxContext(settings=settings, headers=security_headers(settings), snippets=snippets, **kwargs)


def render(template_name: str, context: NginxContext) -> str:
    return _environment.get_template(template_name).render(nginx=context)


def vhost_path(domain: str) -> str:
    return f"{SITES_ENABLED}/assotic-{domain}.conf"


def vhost_config(vhost: Vhost, cert: CertPaths, settings: NginxSettings) -> str:
    """/etc/nginx/sites-enabled/assotic-<domain>.conf: port 80 (ACME + redirect) and 443."""
    return render("vhost.conf.j2", _context(settings, vhost=check_vhost(vhost), cert=cert))


def default_server_config(settings: NginxSettings) -> str:
    """The servers for names no tenant owns: ACME challenges and 404 on 80, 421 on 443."""
    return render("default-server.conf.j2", _context(settings))


def http_config(settings: NginxSettings) -> str:
    return render("http.conf.j2", _context(settings))


def tls_snippet(settings: NginxSettings) -> str:
    return render("snippet-tls.conf.j2", _context(settings))


def acme_snippet(settings: NginxSettings) -> str:
    return render("snippet-acme-challenge.conf.j2", _context(settings))


def front_files(settings: NginxSettings) -> dict[str, str]:
    """{path: content} of what every web host gets before any vhost."""
    return {
        HTTP_CONF: http_config(settings),
        TLS_SNIPPET: tls_snippet(settings),
        ACME_SNIPPET: acme_snippet(settings),
        DEFAULT_SERVER_CONF: default_server_config(settings),
    }


def vhost_files(vhosts: Iterable[Vhost], certs: Mapping[str, CertPaths], settings: NginxSettings) -> dict[str, str]:
    """{path: content}, one file per vhost; `certs` maps each domain to its certificate."""
    return {vhost_path(v.domain): vhost_config(v, certs[v.domain], settings) for v in check_vhosts(vhosts)}


def stale_vhost_files(present: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """Our vhost files on the host that no vhost asks for any more (a tenant left)."""
    wanted = set(wanted)
    return sorted(p for p in present if p.startswith(f"{SITES_ENABLED}/assotic-") and p not in wanted)


def web_openings(vhosts: Iterable[Vhost]) -> list[Opening]:
    """TCP 80 (ACME challenges, redirects) and 443, from anywhere, when the host serves vhosts."""
    if not list(vhosts):
        return []
    return [
        Opening(port=80, protocol="tcp", comment="HTTP: ACME challenges and redirects to HTTPS"),
        Opening(port=443, protocol="tcp", comment="HTTPS"),
    ]


NGINX_DIR = "/etc/nginx"
STAGING_DIR = f"{NGINX_DIR}/assotic-staging"
ACTIVATE_SCRIPT = "/usr/local/sbin/assotic-nginx-activate"


def staging_path(path: str) -> str:
    """Where a file of /etc/nginx waits for `nginx -t`: the same relative path under STAGING_DIR."""
    if not path.startswith(f"{NGINX_DIR}/"):
        raise ValueError(f"not a file of {NGINX_DIR}: {path}")
    return f"{STAGING_DIR}/{path[len(NGINX_DIR) + 1:]}"


def activate_script() -> str:
    """/usr/local/sbin/assotic-nginx-activate: install staged files, `nginx -t`, reload or roll back."""
    return _environment.get_template("assotic-nginx-activate.j2").render(nginx_dir=NGINX_DIR)
