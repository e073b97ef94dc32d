"""roles/coturn: a TURN server for BigBlueButton, on a Debian host of group `turn`.

Debian's coturn, configured as BigBlueButton's external-TURN guidance says: shared
secret (use-auth-secret, from the secrets store), TLS on `turn_tls_port`, a UDP relay
range, relays to private and special-purpose ranges denied, no admin CLI. The
certificate comes from the ACME server with certbot's standalone mode (no web server
on a TURN host), or is self-signed when data says so (the lab). Knobs: docs/bbb.md.

A second deploy changes nothing: files are compared by checksum, the certificate is
made only when missing, coturn restarts only when one of its files changed.
"""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server, systemd

from roles.remote_files import put_text, reload_after
from roles.tls.model import DEFAULTS as TLS_DEFAULTS
from roles.tls.model import TlsSettings

from .model import (
    DEFAULTS,
    RENEWAL_HOOK,
    SECRET_NAME,
    SERVICE_DROP_IN,
    TURN_CERT,
    TURN_CERT_DIR,
    TURNSERVER_CONF,
    CoturnDataError,
    CoturnSettings,
    certbot_standalone_command,
    coturn_openings,
    renewal_hook,
    self_signed_command,
    service_drop_in,
    turnserver_conf,
)

__all__ = ["CoturnDataError", "CoturnSettings", "SECRET_NAME", "coturn", "coturn_openings",
           "turn_openings", "turnserver_conf"]


def turn_openings(host_data: Any) -> list:
    """The firewall openings of a turn host (roles.plan.firewall_openings hands them to base)."""
    return coturn_openings(CoturnSettings.from_data(host_data))


@deploy("coturn TURN server", data_defaults={**DEFAULTS, **TLS_DEFAULTS})
def coturn(secrets: Any) -> None:
    settings = CoturnSettings.from_data(host.data)
    apt.packages(name="Install coturn and openssl", packages=["coturn", "openssl"])
    files.directory(name=f"Create {TURN_CERT_DIR}", path=TURN_CERT_DIR, user="root",
                    group="turnserver", mode="0750")
    certificate = certificate_steps(settings)

    # The shared secret is inside: root writes it, coturn's group reads it, nobody else.
    config = put_text(TURNSERVER_CONF, turnserver_conf(settings, secrets.get(SECRET_NAME)),
                      mode="0640", group="turnserver")
    drop_in = put_text(SERVICE_DROP_IN, service_drop_in())
    systemd.service(name="Enable and start coturn", service="coturn", running=True, enabled=True)
    # A shell restart: systemd.service(restarted=True) skips a unit that was not running
    # when facts were gathered (Debian's package starts coturn, but only once configured).
    # A new certificate later comes with certbot's hook, which restarts coturn itself.
    reload_after("Restart coturn", "systemctl daemon-reload && systemctl restart coturn",
                 [config, drop_in, *certificate], stamp="coturn",
                 covers=[TURNSERVER_CONF, SERVICE_DROP_IN])


def certificate_steps(settings: CoturnSettings) -> list:
    """Make coturn's certificate once; from then on certbot.timer renews it (hook: copy, reload)."""
    if settings.certificate == "acme":
        apt.packages(name="Install certbot", packages=["certbot"])
        put_text(RENEWAL_HOOK, renewal_hook(settings), mode="0755")
    if host.get_fact(File, path=TURN_CERT) is not None:
        return []
    if settings.certificate == "self-signed":
        return [server.shell(name=f"Make a self-signed certificate for {settings.domain}",
                             commands=[self_signed_command(settings)])]
    tls = TlsSettings.from_data(host.data)
    env = {"REQUESTS_CA_BUNDLE": tls.ca_bundle} if tls.ca_bundle else {}
    issued = server.shell(
        name=f"Request a certificate for {settings.domain} from {tls.acme_directory}",
        commands=[certbot_standalone_command(settings, tls.acme_directory, tls.acme_email)],
        _env=env,
    )
    copied = server.shell(name=f"Copy the certificate of {settings.domain} for coturn",
                          commands=[f"{RENEWAL_HOOK} || true"], _if=issued.did_change)
    return [issued, copied]
