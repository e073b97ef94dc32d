"""The BigBlueButton role's data and every file it renders. Pure: no pyinfra host access.

Facts followed (docs.bigbluebutton.org and bbb-install, v3.0.x-release):
- packages come from https://ubuntu.bigbluebutton.org/<version> (suite bigbluebutton-<codename>)
  and the other repositories bbb-install adds (repositories.py); it needs >= 4 cores, ~4 GB;
- local settings survive upgrades in /etc/bigbluebutton/ (bbb-web.properties overrides,
  turn-stun-servers.xml, bbb-conf/apply-config.sh, run by `bbb-conf --restart`);
- dial-in: a gateway in /opt/freeswitch/conf/sip_profiles/external/<provider>.xml (context
  public) and a dialplan in /opt/freeswitch/conf/dialplan/public/<provider>.xml that asks for
  the conference PIN, checks `conference <pin> list` and transfers to `<pin> XML default`;
  defaultDialAccessNumber and defaultWelcomeMessageFooter (%%DIALNUM%%, %%CONFNUM%%) in
  bbb-web.properties show the number to participants.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from assotic.layout import bbb_api_secret
from assotic.sip import BBB_VERSIONS, DEFAULT_BBB_VERSION, SipDialIn, sip_problems, version_line
from roles.base.model import Opening
from assotic.templating import render

PACKAGES = ("bigbluebutton", "bbb-html5")
ETC = "/etc/bigbluebutton"
WEB_PROPERTIES = f"{ETC}/bbb-web.properties"
TURN_XML = f"{ETC}/turn-stun-servers.xml"
APPLY_CONFIG = f"{ETC}/bbb-conf/apply-config.sh"
NGINX_SITE = "/etc/nginx/sites-available/bigbluebutton"
# Where BBB's nginx includes come from (/etc/bigbluebutton/nginx links here). bbb-install's
# install_ssl creates default-fe.nginx there: no package ships it, and it defines the
# `@bbb-fe` location the site's `try_files $uri @bbb-fe` falls back to.
NGINX_INCLUDES = "/usr/share/bigbluebutton/nginx"
DEFAULT_FE = f"{NGINX_INCLUDES}/default-fe.nginx"
# bbb-conf --setip writes bbbWebAPI (with the protocol of serverURL) and copies securitySalt
# from bbb-web.properties into this file; bbb-conf --setsecret writes sharedSecret here too.
AKKA_CONF = f"{ETC}/bbb-apps-akka.conf"
# bbb-conf --setsecret also writes the webhooks' sharedSecret, when bbb-webhooks is installed.
WEBHOOKS_CONF = "/usr/local/bigbluebutton/bbb-webhooks/config/default.yml"
ACME_WEBROOT = "/var/www/bigbluebutton-default/assets"  # bbb-install's webroot
RECORDING_YML = "/usr/local/bigbluebutton/core/scripts/bigbluebutton.yml"  # has the host name
FREESWITCH_CONF = "/opt/freeswitch/conf"  # BBB's FreeSWITCH (-> /opt/freeswitch/etc/freeswitch)
# BBB's freeswitch.service runs as user freeswitch, group daemon (bbb-install's unit; the
# dial-in docs chown the dialplan freeswitch:daemon). Root owns our files, group daemon reads.
FREESWITCH_GROUP = "daemon"
MEDIA_PORTS = "16384-32768"  # UDP media (BBB's firewall docs)
MIN_CORES = 4
MIN_MEMORY_KB = 3940000  # bbb-install's "at least 4 GB" test on MemTotal

# What the host's nightly backup job adds to /etc (which holds /etc/bigbluebutton) on a BBB
# host: FreeSWITCH's real configuration folder (FREESWITCH_CONF is a symlink to it, and restic
# saves a symlink, not what it points to), and the published recordings when data asks.
FREESWITCH_REAL_CONF = "/opt/freeswitch/etc/freeswitch"
PUBLISHED_RECORDINGS = "/var/bigbluebutton/published"

# BBB's FreeSWITCH CLI is not on PATH, and its ESL password is not FreeSWITCH's default:
# bbb-conf --setip replaces ClueCon with a random one and writes it into event_socket.conf.xml
# (bigbluebutton-config/bin/bbb-conf, "Update ESL passwords"), where bbb-conf --check reads it.
FS_CLI = "/opt/freeswitch/bin/fs_cli"
ESL_CONFIG = f"{FREESWITCH_REAL_CONF}/autoload_configs/event_socket.conf.xml"

DEFAULTS: dict[str, Any] = {
    "bbb_backup_recordings": False,  # published recordings can be large: off unless asked
    "bbb_version": DEFAULT_BBB_VERSION,
    "bbb_domain": None,  # default: the inventory host name
    "bbb_sip": None,
    "bbb_welcome_footer": None,  # default: the dial-in text when bbb_sip is set
    "bbb_ip": None,  # FreeSWITCH/WebRTC address (bbb-install's $IP); default: the default route's
}


class BbbDataError(ValueError):
    """Host data or a host the BBB role cannot use; the message names the host and the field."""


@dataclass(frozen=True)
class TurnServer:
    """A coturn host BBB hands to browsers (its secret is the shared turn secret)."""

    domain: str
    listening_port: int = 3478
    tls_port: int = 443


@dataclass(frozen=True)
class BbbSettings:
    host_name: str
    version: str
    domain: str
    sip: SipDialIn | None = None
    welcome_footer: str | None = None
    ip: str | None = None
    turn_servers: tuple[TurnServer, ...] = field(default=())

    @classmethod
    def from_data(cls, host_name: str, data: Any, turn_servers=()) -> BbbSettings:
        def get(name: str) -> Any:
            value = data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)
            return DEFAULTS[name] if value is None else value

        version = get("bbb_version")
        if version_line(version) is None:
            raise BbbDataError(f"{host_name}.bbb_version: one of {', '.join(BBB_VERSIONS)}; got {version!r}")
        sip = None
        if get("bbb_sip") is not None:
            sip, problems = sip_problems("host data", host_name, get("bbb_sip"))
            if problems:
                raise BbbDataError("; ".join(str(p) for p in problems))
        ip = get("bbb_ip")
        if ip is not None and not _is_ipv4(ip):
            raise BbbDataError(f"{host_name}.bbb_ip: an IPv4 address (the one FreeSWITCH and "
                               f"WebRTC media use); got {ip!r}")
        return cls(host_name=host_name, version=version, domain=get("bbb_domain") or host_name,
                   sip=sip, welcome_footer=get("bbb_welcome_footer"), ip=ip,
                   turn_servers=tuple(turn_servers))

    @property
    def line(self) -> str:
        return version_line(self.version)

    @property
    def codename(self) -> str:
        return BBB_VERSIONS[self.line]["codename"]

    @property
    def ubuntu(self) -> str:
        return BBB_VERSIONS[self.line]["ubuntu"]

    @property
    def url(self) -> str:
        return f"https://{self.domain}/bigbluebutton/"

    @property
    def secret_name(self) -> str:
        return bbb_api_secret(self.host_name)


def _is_ipv4(value: Any) -> bool:
    import ipaddress

    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


# -- Requirements (checked at prepare time, from facts) --------------------------------------


def requirement_problems(settings: BbbSettings, distro: Mapping | None, cores: int | None,
                         memory_kb: int | None) -> list[str]:
    """What stops BBB on this host; [] when it can run. Found values are named in each."""
    problems = []
    name = (distro or {}).get("name")
    release = str((distro or {}).get("release_meta", {}).get("VERSION_ID") or "")
    if name != "Ubuntu" or release != settings.ubuntu:
        found = f"{name} {release}".strip() if name else "an unknown system"
        problems.append(f"BigBlueButton {settings.version} needs Ubuntu {settings.ubuntu}; found {found}")
    if cores is None or cores < MIN_CORES:
        problems.append(f"BigBlueButton needs at least {MIN_CORES} CPU cores; found {cores}")
    if memory_kb is None or memory_kb < MIN_MEMORY_KB:
        found = f"{memory_kb / 1024 / 1024:.1f} GB" if memory_kb else "unknown"
        problems.append(f"BigBlueButton needs at least 4 GB of memory; found {found}")
    return problems


# -- Firewall --------------------------------------------------------------------------------


def bbb_openings(settings: BbbSettings) -> list[Opening]:
    """HTTP(S) and WebRTC media from anywhere; SIP and its RTP from the provider's networks only."""
    openings = [
        Opening(80, "tcp", "BigBlueButton HTTP (ACME, redirect)"),
        Opening(443, "tcp", "BigBlueButton HTTPS"),
        Opening(MEDIA_PORTS, "udp", "BigBlueButton WebRTC media"),
    ]
    if settings.sip is not None:
        sources = tuple(settings.sip.provider_ips)
        openings += [
            Opening(settings.sip.port, "udp", f"SIP from {settings.sip.provider}", sources),
            Opening(settings.sip.port, "tcp", f"SIP from {settings.sip.provider}", sources),
            Opening(settings.sip.rtp_ports, "udp", f"RTP from {settings.sip.provider}", sources),
        ]
    return openings


# -- Files -----------------------------------------------------------------------------------


def properties_escape(value: str) -> str:
    """A .properties value: backslashes and line breaks escaped, non-ASCII as \\uXXXX."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n")
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04x}" for c in out)


# bbb-web puts "<br><br>" between the welcome message and this footer itself
# (ParamsProcessorUtil.processWelcomeMessage): the footer starts with its own text.
DEFAULT_DIAL_FOOTER = ("To join this meeting by phone, dial:<br>  %%DIALNUM%%<br>"
                       "Then enter %%CONFNUM%%# as the conference PIN number.")


def web_properties(settings: BbbSettings, api_secret: str) -> str:
    """/etc/bigbluebutton/bbb-web.properties: our overrides of bbb-web's defaults (0640)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,}", api_secret or ""):
        raise BbbDataError(f"{settings.secret_name}: expected a generated secret of 16+ URL-safe characters")
    footer = settings.welcome_footer
    if footer is None and settings.sip is not None:
        footer = DEFAULT_DIAL_FOOTER
    entries = [
        ("bigbluebutton.web.serverURL", f"https://{settings.domain}"),
        ("securitySalt", api_secret),
        # Every bbb-conf run appends this line to bbb-web.properties when the key is missing
        # (its own default, "default": the server URL). Written here, the file stays ours
        # and the next deploy finds it unchanged.
        ("bigbluebutton.web.logoutURL", "default"),
    ]
    if settings.sip is not None:
        entries.append(("defaultDialAccessNumber", settings.sip.dial_number))
    if footer is not None:
        entries.append(("defaultWelcomeMessageFooter", footer))
    return render("bbb/bbb-web.properties.j2", bbb=settings,
                  entries=[(k, properties_escape(v)) for k, v in entries])


def turn_stun_servers(settings: BbbSettings, turn_secret: str | None) -> str:
    """/etc/bigbluebutton/turn-stun-servers.xml: stun, turn (UDP) and turns (TLS) per coturn host."""
    if settings.turn_servers and not turn_secret:
        raise BbbDataError("turn/static_auth_secret: missing, but the inventory has turn hosts")
    return render("bbb/turn-stun-servers.xml.j2", bbb=settings, secret=turn_secret)


def apply_config(settings: BbbSettings, root: str = "") -> str:
    """apply-config.sh; `root` prefixes every path it touches (tests run it in a folder)."""
    return render("bbb/apply-config.sh.j2", bbb=settings, conf=FREESWITCH_CONF, group=FREESWITCH_GROUP,
                  root=root)


def nginx_site(settings: BbbSettings, https: bool = True) -> str:
    """BBB's nginx site; https False: the port-80 part alone, which certbot needs before a
    certificate exists (the 443 server would name files that are not there yet)."""
    return render("bbb/bigbluebutton.nginx.j2", bbb=settings, webroot=ACME_WEBROOT, https=https)


def default_fe() -> str:
    """default-fe.nginx: the `@bbb-fe` location (BBB's landing page), as bbb-install makes it."""
    return render("bbb/default-fe.nginx.j2")


def fs_cli_command(api_command: str, esl_config: str = ESL_CONFIG, fs_cli: str = FS_CLI) -> str:
    """Shell (run as root) that runs one FreeSWITCH API command through BBB's fs_cli.

    bbb-conf hands fs_cli the ESL password with -p, i.e. on a command line any local user can
    read. Here the password goes from event_socket.conf.xml into a shell variable, then by
    printf (a shell builtin: no process gets it as an argument) into a 0600 `.fs_cli_conf`
    in a private temporary HOME, which fs_cli reads (its [default] profile); the folder is
    removed on exit. 127.0.0.1, as fs_cli's built-in profile that bbb-conf uses.
    """
    xpath = shlex.quote('configuration/settings/param[@name="password"]')
    return ("umask 077; esl_home=$(mktemp -d) || exit 1; trap 'rm -rf \"$esl_home\"' EXIT; "
            f"esl_password=$(xmlstarlet sel -t -m {xpath} -v @value {shlex.quote(esl_config)}) || exit 1; "
            "printf '[default]\\nhost => 127.0.0.1\\npassword => %s\\n' \"$esl_password\" "
            "> \"$esl_home/.fs_cli_conf\" || exit 1; "
            f"HOME=\"$esl_home\" timeout 20 {shlex.quote(fs_cli)} -x {shlex.quote(api_command)}")


def gateway_status_command(sip: SipDialIn) -> str:
    """The registration state of the dial-in gateway (REGED when registered)."""
    return fs_cli_command(f"sofia status gateway {sip.gateway_name}")


def gateway_path(sip: SipDialIn) -> str:
    return f"{FREESWITCH_CONF}/sip_profiles/external/{sip.gateway_name}.xml"


def dialplan_path(sip: SipDialIn) -> str:
    return f"{FREESWITCH_CONF}/dialplan/public/{sip.gateway_name}.xml"


def xml_attr(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def sip_gateway(sip: SipDialIn, password: str) -> str:
    """The FreeSWITCH gateway (holds the SIP password: 0640 root:daemon)."""
    return render("freeswitch/gateway.xml.j2", sip=sip, password=xml_attr(password), attr=xml_attr)


def sip_dialplan(sip: SipDialIn) -> str:
    """The public dialplan: answer, PIN with bounded tries, transfer only to a live conference."""
    did = "^\\+?(" + "|".join(re.escape(d) for d in sip.did_digits) + ")$"
    return render("freeswitch/dialplan.xml.j2", sip=sip, did=xml_attr(did), attr=xml_attr)


def secret_sync_command(web: str = WEB_PROPERTIES, akka: str = AKKA_CONF,
                        webhooks: str = WEBHOOKS_CONF) -> str:
    """Shell giving bbb-apps-akka and bbb-webhooks the securitySalt of bbb-web.properties.

    The files and keys bbb-conf --setsecret writes; not bbb-conf itself, which takes the
    secret as an argument and prints it. The secret goes from the file into a variable and
    from the environment into awk: it is on no command line. Files keep owner and mode.
    """
    return (f"set -e; umask 077; S=$(sed -n 's/^securitySalt=//p' {web} | tail -n 1); "
            "[ -n \"$S\" ]; export S; "
            f"if [ -f {akka} ]; then "
            "awk '{ gsub(/sharedSecret[ ]*=[ ]*\"[^\"]*\"/, \"sharedSecret=\\\"\" ENVIRON[\"S\"] \"\\\"\") } 1' "
            f"{akka} > {akka}.assotic-new && cat {akka}.assotic-new > {akka} && "
            f"rm -f {akka}.assotic-new; fi; "
            f"if [ -f {webhooks} ]; then "
            "awk 'match($0, /^[ \t#]*sharedSecret: /) { print substr($0, 1, RLENGTH) ENVIRON[\"S\"]; next } 1' "
            f"{webhooks} > {webhooks}.assotic-new && cat {webhooks}.assotic-new > {webhooks} && "
            f"rm -f {webhooks}.assotic-new; fi")


def secret_digest(secret: str) -> str:
    import hashlib

    return hashlib.sha256(secret.encode()).hexdigest()


def certbot_command(settings: BbbSettings, acme_directory: str, email: str | None) -> str:
    """certbot webroot, the way bbb-install asks: BBB's nginx serves the challenge on port 80."""
    argv = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--webroot", "-w",
            ACME_WEBROOT, "--cert-name", settings.domain, "-d", settings.domain,
            "--server", acme_directory, "--deploy-hook", "'systemctl reload nginx'"]
    argv += ["--email", email, "--no-eff-email"] if email else ["--register-unsafely-without-email"]
    return " ".join(argv)


# -- Nextcloud integration (app "bbb") -------------------------------------------------------

def nextcloud_bbb_jobs(occ: str, config_dir: str, api_url: str, api_secret: str) -> list[str]:
    """occ-secrets jobs (JSON) setting the Nextcloud app "bbb" (keys api.url, api.secret)."""
    import json

    return [json.dumps({"occ": occ, "args": ["config:app:set", "bbb", key, f"--value={value}"],
                        "env": {"NEXTCLOUD_CONFIG_DIR": config_dir}}, indent=2) + "\n"
            for key, value in (("api.url", api_url), ("api.secret", api_secret))]


def backup_paths(data: Any) -> tuple[str, ...]:
    """Folders the BBB host's backup job saves besides /etc (roles/backup host job)."""
    value = data.get("bbb_backup_recordings") if isinstance(data, Mapping) else \
        getattr(data, "bbb_backup_recordings", None)
    recordings = DEFAULTS["bbb_backup_recordings"] if value is None else value
    if not isinstance(recordings, bool):
        raise BbbDataError(f"bbb_backup_recordings: True or False; got {recordings!r}")
    return (FREESWITCH_REAL_CONF,) + ((PUBLISHED_RECORDINGS,) if recordings else ())
