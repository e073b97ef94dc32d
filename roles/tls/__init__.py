"""roles/tls: a certificate for every domain a host serves, and its renewal.

certbot from Debian asks the configured ACME server (`acme_directory`, Let's Encrypt by
default) with the webroot method: nginx (roles/nginx) serves the challenge files on port 80
for every name, so it must already run with its default server when this role runs
(deploy.py orders it so). In the lab, `acme_lab_server` installs Debian's pebble on the
host itself as the ACME server, so issuance and renewal are tested for real.
`tls_self_signed` makes openssl certificates instead: only when the data asks for it.

Knobs (host data, with defaults) are documented in docs/web.md. A second deploy changes
nothing: a certificate is requested only when its file does not exist yet.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server, systemd

from roles.remote_files import PathStats, put_text, reload_after

from . import render
from .model import (
    ACME_WEBROOT,
    CERTBOT_LAB_DROP_IN,
    DEFAULTS,
    PEBBLE_CERT,
    PEBBLE_CONFIG,
    PEBBLE_DIR,
    PEBBLE_REREGISTER,
    PEBBLE_UNIT,
    RENEWAL_HOOK,
    CertPaths,
    TlsDataError,
    TlsSettings,
    cert_paths,
    certbot_command,
    pebble_cert_command,
    self_signed_command,
)

__all__ = ["ACME_WEBROOT", "CertPaths", "TlsDataError", "TlsSettings", "cert_paths", "certificates"]


@deploy("TLS certificates", data_defaults=DEFAULTS)
def certificates(domains: list[str]) -> None:
    settings = TlsSettings.from_data(host.data)
    apt.packages(name="Install certbot and openssl", packages=["certbot", "openssl"])
    if settings.acme_lab_server:
        lab_acme_server()
    if settings.uses_acme:
        configure_renewal(settings)
    # Facts are read before anything runs: on the first deploy a certificate is missing and
    # its request runs once; from then on certbot.timer renews it and the deploy leaves it
    # alone. One stat for every domain (one SSH round trip, however many domains).
    fullchains = {d: cert_paths(d, settings).fullchain for d in domains}
    existing = host.get_fact(PathStats, paths=tuple(fullchains.values())) if domains else {}
    for domain in domains:
        if fullchains[domain] not in existing:
            issue_certificate(domain, settings)


def lab_acme_server() -> None:
    """pebble on loopback, with its own certificate: the lab's stand-in for Let's Encrypt."""
    apt.packages(name="Install pebble (lab ACME server)", packages=["pebble", "curl"])
    files.directory(name=f"Create {PEBBLE_DIR}", path=PEBBLE_DIR, mode="0700", user="root", group="root")
    if host.get_fact(File, path=PEBBLE_CERT) is None:
        server.shell(name=f"Make pebble's own certificate {PEBBLE_CERT}", commands=[pebble_cert_command()])
    config = put_text(PEBBLE_CONFIG, render.pebble_config())
    put_text(PEBBLE_REREGISTER, render.pebble_reregister_script(), mode="0755")
    unit = put_text(f"/etc/systemd/system/{PEBBLE_UNIT}", render.pebble_unit())
    systemd.service(name=f"Enable and start {PEBBLE_UNIT}", service=PEBBLE_UNIT, running=True, enabled=True)
    # A shell restart: systemd.service(restarted=True) skips a unit that was not running
    # when facts were gathered, as on the first run.
    reload_after(f"Restart {PEBBLE_UNIT}", f"systemctl daemon-reload && systemctl restart {PEBBLE_UNIT}",
                 [config, unit], stamp=PEBBLE_UNIT,
                 covers=[PEBBLE_CONFIG, f"/etc/systemd/system/{PEBBLE_UNIT}"])


def configure_renewal(settings: TlsSettings) -> None:
    """Debian's certbot.timer renews; our hook reloads nginx; the lab trusts pebble for it too."""
    put_text(RENEWAL_HOOK, render.renewal_hook(), mode="0755")
    if settings.acme_lab_server:
        drop_in = put_text(CERTBOT_LAB_DROP_IN, render.certbot_lab_drop_in())
    else:
        drop_in = files.file(name=f"Remove {CERTBOT_LAB_DROP_IN}", path=CERTBOT_LAB_DROP_IN, present=False)
    reload_after("Reload systemd units for certbot.service", "systemctl daemon-reload", [drop_in],
                 stamp="daemon-reload-certbot", covers=[CERTBOT_LAB_DROP_IN])
    systemd.service(name="Enable and start certbot.timer", service="certbot.timer", running=True, enabled=True)


def issue_certificate(domain: str, settings: TlsSettings) -> None:
    if settings.tls_self_signed:
        server.shell(name=f"Make a self-signed certificate for {domain}", commands=[self_signed_command(domain)])
        return
    env = {"REQUESTS_CA_BUNDLE": settings.ca_bundle} if settings.ca_bundle else {}
    server.shell(
        name=f"Request a certificate for {domain} from {settings.acme_directory}",
        commands=[certbot_command(domain, settings)],
        _env=env,
    )
