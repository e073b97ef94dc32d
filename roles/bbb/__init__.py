"""roles/bbb: BigBlueButton on a host of its own (group `bbb`), with SIP dial-in.

What bbb-install does, as pyinfra operations, with the version line pinned in data
(`bbb_version`, default jammy-300): the repositories bbb-install adds for that version
(repositories.py: PPAs, NodeSource, MongoDB, Docker, BBB's own), their keys, the packages, a
Let's Encrypt certificate through BBB's nginx webroot (a port-80 site first, as install_ssl),
then every local setting where BBB's upgrades keep it (/etc/bigbluebutton/:
bbb-web.properties, turn-stun-servers.xml, bbb-conf/apply-config.sh) and the dial-in
files of FreeSWITCH (our own file names, which no package owns), the host name
(`bbb-conf --setip`, once serverURL is https) and the API secret shared with bbb-apps-akka and
bbb-webhooks (share_api_secret). The firewall is the
base role's: `bbb_openings` declares what BBB needs.

Re-running the deploy after an apt upgrade re-asserts every file; a file an upgrade or a
person changed shows up as a changed operation ("drift"), and BBB restarts.

`check_requirements()` runs first (deploy.py), at prepare time: a host that is not the
right Ubuntu, or has fewer than 4 cores or less than 4 GB, stops the whole deploy before
any host is changed. None of this runs in the lab (Ubuntu and BBB's repository are not
reachable there); tests/unit/test_bbb.py runs the plan against fake Ubuntu facts.
"""

from __future__ import annotations

import re
import shlex
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File, FindInFile
from pyinfra.facts.hardware import Cpus
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from assotic.layout import TURN_SECRET
from roles.remote_files import Unchanged, put_text, reload_after
from roles.tls.model import DEFAULTS as TLS_DEFAULTS
from roles.tls.model import TlsSettings

from .facts import MemTotalKb, SharedSecretDigests
from .model import (
    AKKA_CONF,
    APPLY_CONFIG,
    DEFAULT_FE,
    DEFAULTS,
    FREESWITCH_GROUP,
    NGINX_SITE,
    PACKAGES,
    TURN_XML,
    WEB_PROPERTIES,
    WEBHOOKS_CONF,
    BbbDataError,
    BbbSettings,
    TurnServer,
    apply_config,
    backup_paths,
    certbot_command,
    default_fe,
    dialplan_path,
    gateway_path,
    nextcloud_bbb_jobs,
    nginx_site,
    requirement_problems,
    secret_digest,
    secret_sync_command,
    sip_dialplan,
    sip_gateway,
    turn_stun_servers,
    web_properties,
)
from .model import bbb_openings as _openings
from .repositories import apt_sources, key_install_command, upstream_packages

__all__ = ["BbbDataError", "BbbSettings", "backup_paths", "bbb_openings", "bigbluebutton",
           "check_requirements", "nextcloud_integration", "turn_servers_of"]



def bbb_openings(host_data: Any) -> list:
    """The firewall openings of a bbb host (roles.plan.firewall_openings hands them to base)."""
    return _openings(BbbSettings.from_data(_host_name(host_data), host_data))


def _host_name(host_data: Any) -> str:
    pyinfra_host = getattr(host_data, "__dict__", {}).get("host")
    return getattr(pyinfra_host, "name", "bbb")


def turn_servers_of(inventory: Any) -> list[TurnServer]:
    """The coturn hosts of the inventory (group turn), as BBB hands them to browsers."""
    from roles.coturn import CoturnSettings

    servers = []
    for turn_host in inventory.get_group("turn", []) if "turn" in inventory.groups else []:
        settings = CoturnSettings.from_data(turn_host.data)
        servers.append(TurnServer(settings.domain, settings.listening_port, settings.tls_port))
    return servers


def check_requirements() -> None:
    """Raise, naming the host, what was found and what is needed, when BBB cannot run here."""
    settings = BbbSettings.from_data(host.name, host.data)
    problems = requirement_problems(settings, host.get_fact(LinuxDistribution),
                                    host.get_fact(Cpus), host.get_fact(MemTotalKb))
    if problems:
        raise BbbDataError(f"{host.name}: cannot run BigBlueButton {settings.version}: "
                           + "; ".join(problems) + ". Nothing was deployed.")


@deploy("BigBlueButton", data_defaults={**DEFAULTS, **TLS_DEFAULTS})
def bigbluebutton(secrets: Any, turn_servers: list[TurnServer]) -> None:
    settings = BbbSettings.from_data(host.name, host.data, turn_servers)
    install(settings)
    changed = configure(settings, secrets)
    changed += set_host_name(settings)
    changed += share_api_secret(settings, secrets.get(settings.secret_name), changed[0])
    # bbb-conf --restart restarts every BBB service and runs apply-config.sh.
    reload_after("Restart BigBlueButton (bbb-conf --restart)", "bbb-conf --restart", changed,
                 stamp="bigbluebutton", covers=configured_paths(settings))


def install(settings: BbbSettings) -> None:
    files.directory(name="Create /etc/apt/keyrings", path="/etc/apt/keyrings", mode="0755")
    # bbb-install's repositories for this version (repositories.py, docs/bbb.md): each key
    # fetched once, checked against its pin where one is known, then the source file.
    changed = []
    for source in apt_sources(settings.version):
        if host.get_fact(File, path=source.keyring) is None:
            changed.append(server.shell(
                name=f"Fetch and check the signing key of {source.name} into {source.keyring}",
                commands=[key_install_command(source)]))
        changed.append(put_text(source.list_path, source.line + "\n"))
    apt.update(name="Update apt lists (a repository or its key changed)", _if=any_changed(*changed))
    apt.packages(name=f"Install what bbb-install installs before BigBlueButton {settings.version}",
                 packages=list(upstream_packages(settings.version)))
    apt.packages(name=f"Install BigBlueButton {settings.version}", packages=list(PACKAGES))
    tls = TlsSettings.from_data(host.data)
    if host.get_fact(File, path=f"/etc/letsencrypt/live/{settings.domain}/fullchain.pem") is None:
        # As install_ssl: a port-80 site for this name first, so certbot's webroot challenge
        # is answered; configure() then renders the whole site, 443 included.
        put_text(NGINX_SITE, nginx_site(settings, https=False))
        server.shell(name="Reload nginx for the ACME challenge", commands=["systemctl reload nginx"])
        env = {"REQUESTS_CA_BUNDLE": tls.ca_bundle} if tls.ca_bundle else {}
        server.shell(name=f"Request a certificate for {settings.domain} from {tls.acme_directory}",
                     commands=[certbot_command(settings, tls.acme_directory, tls.acme_email)], _env=env)


def set_host_name(settings: BbbSettings) -> list:
    """`bbb-conf --setip <domain>` once https is in place, as bbb-install's last step.

    --setip takes the protocol from serverURL in bbb-web.properties (configure() made it
    https) and writes the name everywhere BBB keeps it; bbb-apps-akka's bbbWebAPI is the
    last place that tells a run with https from one before it. It also copies securitySalt
    into bbb-apps-akka.conf and gives FreeSWITCH its own ESL password.
    """
    done = f'bbbWebAPI[ ]*=[ ]*"https://{re.escape(settings.domain)}/bigbluebutton/api"'
    if host.get_fact(FindInFile, path=AKKA_CONF, pattern=done):
        return []
    return [server.shell(name=f"Set BigBlueButton's host name {settings.domain} (bbb-conf --setip)",
                         commands=[f"bbb-conf --setip {shlex.quote(settings.domain)}"])]


def share_api_secret(settings: BbbSettings, api_secret: str, web_properties_op: Any) -> list:
    """bbb-apps-akka and bbb-webhooks on the securitySalt of bbb-web.properties.

    What `bbb-conf --setsecret` writes, without it: it takes the secret on its command line
    and prints it. Runs when the digests the host reports differ from the secret's, or when
    bbb-web.properties changes in this deploy.
    """
    held = host.get_fact(SharedSecretDigests, akka=AKKA_CONF, webhooks=WEBHOOKS_CONF)
    wanted = secret_digest(api_secret)
    if held and all(digest == wanted for digest in held.values()) \
            and isinstance(web_properties_op, Unchanged):
        return []
    return [server.shell(name="Give bbb-apps-akka and bbb-webhooks the API secret of bbb-web.properties",
                         commands=[secret_sync_command()])]


def configure(settings: BbbSettings, secrets: Any) -> list:
    """Every customisation, where upgrades keep it; returns the operations that may change."""
    changed = [
        put_text(WEB_PROPERTIES, web_properties(settings, secrets.get(settings.secret_name)),
                 mode="0640", group="bigbluebutton"),
        put_text(TURN_XML, turn_stun_servers(
            settings, secrets.get(TURN_SECRET) if settings.turn_servers else None),
            mode="0640", group="bigbluebutton"),
        put_text(APPLY_CONFIG, apply_config(settings), mode="0755"),
    ]
    # The landing page's `@bbb-fe`, which bbb-install creates and the site's try_files needs.
    landing = put_text(DEFAULT_FE, default_fe())
    site = put_text(NGINX_SITE, nginx_site(settings))
    reload_after("Reload nginx", "systemctl reload nginx", [landing, site], stamp="nginx-bbb",
                 covers=[DEFAULT_FE, NGINX_SITE])
    if settings.sip is not None:
        sip = settings.sip
        changed += [
            put_text(gateway_path(sip), sip_gateway(sip, secrets.get(sip.password_secret)),
                     mode="0640", group=FREESWITCH_GROUP),
            put_text(dialplan_path(sip), sip_dialplan(sip), mode="0640", group=FREESWITCH_GROUP),
        ]
    return changed


def configured_paths(settings: BbbSettings) -> list[str]:
    """The files configure() writes that bbb-conf --restart applies."""
    sip = [gateway_path(settings.sip), dialplan_path(settings.sip)] if settings.sip is not None else []
    return [WEB_PROPERTIES, TURN_XML, APPLY_CONFIG, *sip]


def nextcloud_integration(tenant: Any, release: Any, secrets: Any, inventory: Any) -> None:
    """Point this association's Nextcloud app "bbb" at its BBB host (URL and API secret).

    The secret goes through the nextcloud role's occ-secrets runner: a 0600 job file,
    deleted right after, never a command line.
    """
    from assotic.needs import as_instance_user
    from roles.nextcloud import OCC_SECRETS, PHP_CLI, instance, occ_prefix
    from roles.nextcloud.facts import OccValue

    bbb_host = inventory.get_host(tenant.apps.bigbluebutton.host)
    settings = BbbSettings.from_data(bbb_host.name, bbb_host.data)
    inst = instance(tenant)
    api_secret = secrets.get(settings.secret_name)
    occ = occ_prefix(inst, release)
    # Read and compared in memory only, so a second deploy changes nothing.
    if (host.get_fact(OccValue, occ=occ, args="config:app:get bbb api.url") == settings.url
            and host.get_fact(OccValue, occ=occ, args="config:app:get bbb api.secret") == api_secret):
        return
    jobs = nextcloud_bbb_jobs(f"{release.install_dir}/occ", inst.config_dir, settings.url, api_secret)
    for index, job in enumerate(jobs):
        path = f"{inst.tmp_dir}/occ-bbb-{index}.json"
        files.put(name=f"Upload the BigBlueButton settings job {index} of {inst.user} (0600)",
                  src=StringIO(job), dest=path, user=inst.user, group=inst.user, mode="0600")
        run_job = shlex.join([*as_instance_user(inst.user), *PHP_CLI, OCC_SECRETS, path])
        server.shell(name=f"Nextcloud {tenant.slug}: set app bbb setting {index} (occ config:app:set)",
                     commands=[f"{run_job}; rc=$?; rm -f {shlex.quote(path)}; exit $rc"])
