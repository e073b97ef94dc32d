"""roles/nginx: the shared web front of a web host.

Two steps, because certificates sit between them (deploy.py orders them):

1. `nginx_front()`: Debian's nginx, the default servers (ACME challenges for every name on
   port 80, nothing for unknown names) and the TLS settings. After it, certbot's webroot
   challenges work for any domain pointing at the host.
2. `nginx(vhosts)`: one file per vhost, /etc/nginx/sites-enabled/assotic-<domain>.conf,
   from templates/nginx/vhost.conf.j2 and the location template of its kind. Its 443 server
   needs the certificate, so it runs after roles/tls made them.

Application roles never configure nginx: they hand over assotic.needs.Vhost objects.
Every change goes through one transaction: files are staged outside nginx's view, the ones
this deploy wants are moved into place together, `nginx -t` checks the whole configuration
and nginx is reloaded; if the check fails every file is put back (assotic-nginx-activate).
Nothing runs when nothing changed, so a second deploy changes nothing. Knobs: docs/web.md.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File, FindFiles
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server, systemd

from assotic.needs import Vhost
from roles.prepared import prepared_fact
from roles.remote_files import FolderFiles, put_text, reload_after
from roles.tls import ACME_WEBROOT, TlsSettings, cert_paths

from .render import (
    ACTIVATE_SCRIPT,
    DEFAULTS,
    SITES_ENABLED,
    NginxDataError,
    NginxSettings,
    activate_script,
    check_vhosts,
    default_server_config,
    front_files,
    security_headers,
    stale_vhost_files,
    staging_path,
    vhost_config,
    vhost_files,
    vhost_path,
    web_openings,
)

__all__ = [
    "NginxDataError",
    "NginxSettings",
    "default_server_config",
    "nginx",
    "nginx_front",
    "nginx_settings",
    "security_headers",
    "vhost_config",
    "vhost_path",
    "web_openings",
]

NGINX_PACKAGES = ["nginx", "ssl-cert"]  # ssl-cert: the snakeoil certificate of the default server
DEBIAN_DEFAULT_SITE = f"{SITES_ENABLED}/default"
NGINX_CONF = "/etc/nginx/nginx.conf"
# Debian 12's nginx.conf allows TLS 1.0 and 1.1 at http level (Lynis HTTP-6710). Every assotic
# server sets its own protocols (snippets/assotic-tls.conf), but a server added by hand or by
# another package would inherit these. Debian 13's line already reads TLSv1.2 TLSv1.3.
WEAK_NGINX_PROTOCOLS = "ssl_protocols TLSv1 TLSv1.1 "


def nginx_settings(host_data, distribution: dict | None) -> NginxSettings:
    major = (distribution or {}).get("major")
    return NginxSettings.from_data(host_data, debian_major=major)


@deploy("nginx front", data_defaults=DEFAULTS)
def nginx_front() -> None:
    settings = nginx_settings(host.data, host.get_fact(LinuxDistribution))
    apt.packages(name="Install nginx", packages=NGINX_PACKAGES)
    files.directory(name=f"Create the ACME webroot {ACME_WEBROOT}", path=ACME_WEBROOT,
                    mode="0755", user="root", group="root")
    put_text(ACTIVATE_SCRIPT, activate_script(), mode="0755")
    systemd.service(name="Enable and start nginx", service="nginx", running=True, enabled=True)
    protocols = files.replace(name=f"Drop TLS 1.0 and 1.1 from {NGINX_CONF}", path=NGINX_CONF,
                              text=WEAK_NGINX_PROTOCOLS, replace="ssl_protocols ")
    reload_after(f"Reload nginx for {NGINX_CONF}", "nginx -t -q && systemctl reload nginx", [protocols],
                 stamp="nginx-conf", covers=[NGINX_CONF])
    # Debian's default site is a default_server on 80 too: it goes in the same transaction.
    # On the first run nginx is not installed when facts are read, so the default site is
    # removed whenever the front changes (the script skips files that are not there).
    activate("front (default servers, TLS settings)", front_files(settings),
             removals=[DEBIAN_DEFAULT_SITE], run_if_only_removals=_exists(DEBIAN_DEFAULT_SITE))


@deploy("nginx vhosts", data_defaults=DEFAULTS)
def nginx(vhosts: list[Vhost]) -> None:
    settings = nginx_settings(host.data, host.get_fact(LinuxDistribution))
    tls = TlsSettings.from_data(host.data)
    vhosts = check_vhosts(vhosts)
    wanted = vhost_files(vhosts, {v.domain: cert_paths(v.domain, tls) for v in vhosts}, settings)
    present = host.get_fact(FindFiles, path=SITES_ENABLED, fname="assotic-*.conf", maxdepth=1)
    activate("vhosts " + ", ".join(v.domain for v in vhosts), wanted, stale_vhost_files(present, wanted))


def activate(label: str, wanted: dict[str, str], removals: list[str],
             run_if_only_removals: bool = True) -> None:
    """Stage the files that differ from the host, then install them all, test and reload.

    `removals` go in the same transaction; when nothing is staged, the transaction runs only
    if `run_if_only_removals` (the caller knows from facts that one of them is there).
    """
    staged = []
    for path, content in wanted.items():
        # One fact per folder, not one per file: a no-op deploy stays cheap with many vhosts.
        on_host = prepared_fact(FolderFiles, folder=posixpath.dirname(path)).get(path)
        if on_host is not None and on_host[0] == hashlib.sha1(content.encode()).hexdigest():
            continue
        put_text(staging_path(path), content)
        staged.append(path)
    if not staged and not (removals and run_if_only_removals):
        return
    what = ", ".join([*staged, *(f"remove {p}" for p in removals)])
    server.shell(
        name=f"Test and activate nginx {label}: {what}",
        # Named one by one: a copy left staged by a killed deploy is installed only when
        # this deploy wants it too.
        commands=[shlex.join([ACTIVATE_SCRIPT, *(a for p in staged for a in ("--install", p)), *removals])],
    )


def _exists(path: str) -> bool:
    # File answers None when nothing is there, False when something else (a link) is.
    return host.get_fact(File, path=path) is not None
