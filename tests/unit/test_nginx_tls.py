"""roles/nginx and roles/tls without any host: data checks, rendered files, openings, commands,
and the nginx activation script run against a fake nginx."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from assotic.needs import AppInstance, HostNeeds, Vhost
from roles.plan import firewall_openings, plan_host
from roles.nginx import render
from roles.tls import model
from roles.tls import render as tls_render

REPO = Path(__file__).resolve().parents[2]
SETTINGS = render.NginxSettings()
LE = model.TlsSettings()
LAB = model.TlsSettings(acme_lab_server=True, acme_directory=model.PEBBLE_DIRECTORY)


def vhost(kind="standin", domain="cloud.ulap.example.org", **kwargs) -> Vhost:
    defaults = {
        "nextcloud": {"web_root": "/srv/code/nextcloud", "php_socket": "/run/php/assotic-nextcloud_ulap.sock"},
        "paheko": {"web_root": "/srv/code/paheko/www", "php_socket": "/run/php/assotic-paheko_ulap.sock"},
        "standin": {"web_root": "/var/www/assotic-standin/x"},
        "proxy": {"upstream": "127.0.0.1:8065"},
    }.get(kind, {})
    return Vhost(domain, AppInstance("ulap", "nextcloud"), kind, **{**defaults, **kwargs})


def config(v: Vhost, settings=SETTINGS) -> str:
    return render.vhost_config(v, model.cert_paths(v.domain, LE), settings)


# -- openings -----------------------------------------------------------------------------


def test_web_openings_only_with_vhosts():
    assert render.web_openings([]) == []
    ports = [(o.port, o.protocol) for o in render.web_openings([vhost()])]
    assert ports == [(80, "tcp"), (443, "tcp")]


def test_firewall_openings_add_the_web_ports_from_the_needs():
    assert [o.port for o in firewall_openings({})] == [22]
    assert [o.port for o in firewall_openings({}, HostNeeds(vhosts=[vhost()]))] == [22, 80, 443]


# -- vhosts -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", render.KINDS)
def test_every_kind_renders_ports_80_and_443_with_headers_and_certificate(kind):
    text = config(vhost(kind))
    assert text.count("server_name cloud.ulap.example.org;") == 2
    assert "return 301 https://$host$request_uri;" in text
    assert "include /etc/nginx/snippets/assotic-acme-challenge.conf;" in text
    assert "ssl_certificate /etc/letsencrypt/live/cloud.ulap.example.org/fullchain.pem;" in text
    assert "include /etc/nginx/snippets/assotic-tls.conf;" in text
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in text
    assert "default_server" not in text
    assert text.count("{") == text.count("}")
    assert "server_tokens off;" in text


def test_php_kinds_pass_to_their_own_socket():
    assert "fastcgi_pass unix:/run/php/assotic-nextcloud_ulap.sock;" in config(vhost("nextcloud"))
    paheko = config(vhost("paheko"))
    assert "/_route.php" in paheko and "fastcgi_pass unix:/run/php/assotic-paheko_ulap.sock;" in paheko
    assert "root /srv/code/paheko/www;" in paheko


def test_nextcloud_leaves_its_headers_to_nginx_and_repeats_them_where_a_location_adds_one():
    text = config(vhost("nextcloud"))
    assert "fastcgi_param modHeadersAvailable true;" in text
    # server level + the static-assets location, which sets Cache-Control
    assert text.count('add_header X-Frame-Options "SAMEORIGIN" always;') == 2
    assert "location = /.well-known/caldav" in text


def test_standin_without_php_serves_static_files_only():
    text = config(vhost("standin"))
    assert "fastcgi_pass" not in text and "try_files $uri $uri/ =404;" in text
    with_php = config(vhost("standin", php_socket="/run/php/assotic-standin_ulap.sock"))
    assert "try_files $uri $uri/ /index.php$is_args$args;" in with_php


def test_proxy_upgrades_websockets():
    text = config(vhost("proxy"))
    assert "proxy_pass http://127.0.0.1:8065;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "map $http_upgrade $connection_upgrade" in render.http_config(SETTINGS)


def test_http2_form_follows_the_debian_release():
    bookworm = render.NginxSettings.from_data({}, debian_major=12)
    trixie = render.NginxSettings.from_data({}, debian_major=13)
    assert "listen 443 ssl http2;" in config(vhost(), bookworm)
    assert "http2 on;" not in config(vhost(), bookworm)
    assert "listen 443 ssl;" in config(vhost(), trixie) and "http2 on;" in config(vhost(), trixie)


def test_hsts_knobs():
    settings = render.NginxSettings.from_data({"nginx_hsts_max_age": 63072000, "nginx_hsts_include_subdomains": True})
    assert settings.hsts == "max-age=63072000; includeSubDomains"
    with pytest.raises(render.NginxDataError) as error:
        render.NginxSettings.from_data({"nginx_hsts_max_age": 3600, "nginx_hsts_include_subdomains": "yes"})
    assert "nginx_hsts_max_age" in str(error.value) and "nginx_hsts_include_subdomains" in str(error.value)


@pytest.mark.parametrize("bad, field", [
    (vhost("nextcloud", php_socket=None), "php_socket"),
    (vhost("proxy", upstream=None), "upstream"),
    (vhost("bogus"), "kind"),
    (vhost(domain="Cloud_ULAP"), "domain"),
    (vhost(web_root="relative/path"), "web_root"),
    (vhost(max_body_size="lots"), "max_body_size"),
])
def test_bad_vhosts_are_refused_with_the_field(bad, field):
    with pytest.raises(render.NginxDataError, match=field):
        render.check_vhost(bad)


def test_the_same_domain_twice_is_refused():
    with pytest.raises(render.NginxDataError, match="twice"):
        render.check_vhosts([vhost(), vhost("proxy")])


# -- default server, TLS settings -------------------------------------------------------


def test_default_server_answers_acme_and_nothing_else():
    text = render.default_server_config(render.NginxSettings.from_data({}, debian_major=12))
    assert "listen 80 default_server;" in text and "listen 443 ssl http2 default_server;" in text
    assert "return 421;" in text and "return 404;" in text
    assert f"ssl_certificate {render.SNAKEOIL_CERT};" in text
    assert "acme-challenge" in render.acme_snippet(SETTINGS)
    assert f"root {model.ACME_WEBROOT};" in render.acme_snippet(SETTINGS)


def test_tls_snippet_is_mozilla_intermediate():
    text = render.tls_snippet(SETTINGS)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:" in text
    assert "ssl_session_tickets off;" in text and "ssl_stapling" not in text
    assert all(c.startswith("ECDHE-") for c in render.TLS_CIPHERS)


def test_stale_vhost_files_are_ours_only():
    present = [render.vhost_path("a.example.org"), render.vhost_path("old.example.org"), "/etc/nginx/sites-enabled/other"]
    assert render.stale_vhost_files(present, [render.vhost_path("a.example.org")]) == [render.vhost_path("old.example.org")]
    assert render.staging_path(render.vhost_path("a.example.org")) == \
        "/etc/nginx/assotic-staging/sites-enabled/assotic-a.example.org.conf"


def test_every_example_tenant_renders(lab_host_data):
    domains = []
    for host_name in ("web-1", "web-2"):
        needs = plan_host(host_name, lab_host_data, ["web"], "12").needs
        files = render.vhost_files(needs.vhosts, {d: model.cert_paths(d, LAB) for d in needs.domains}, SETTINGS)
        assert len(files) == len(needs.vhosts) > 0
        domains += needs.domains
    assert len(domains) == len(set(domains)) == 6  # nextcloud and paheko domains; Mattermost has no role yet


# -- TLS data and commands ----------------------------------------------------------------


def test_tls_defaults_are_lets_encrypt_without_email():
    assert model.TlsSettings.from_data({}) == LE
    assert LE.acme_directory == "https://acme-v02.api.letsencrypt.org/directory"
    command = model.certbot_command("a.example.org", LE)
    assert "--register-unsafely-without-email" in command
    assert f"--server {LE.acme_directory}" in command and f"-w {model.ACME_WEBROOT}" in command
    assert LE.ca_bundle is None


def test_tls_email_and_bad_values():
    settings = model.TlsSettings.from_data({"acme_email": "hosting@example.org"})
    assert "--email hosting@example.org --no-eff-email" in model.certbot_command("a.example.org", settings)
    with pytest.raises(model.TlsDataError) as error:
        model.TlsSettings.from_data({"acme_directory": "http://x", "acme_email": "nope", "tls_self_signed": "yes"})
    assert all(k in str(error.value) for k in ("acme_directory", "acme_email", "tls_self_signed"))


def test_lab_server_needs_the_pebble_directory():
    assert LAB.ca_bundle == model.PEBBLE_CERT
    with pytest.raises(model.TlsDataError, match="acme_directory"):
        model.TlsSettings.from_data({"acme_lab_server": True})


def test_self_signed_only_when_asked():
    self_signed = model.TlsSettings.from_data({"tls_self_signed": True})
    assert model.cert_paths("a.example.org", self_signed).fullchain == "/etc/ssl/assotic/a.example.org/fullchain.pem"
    assert model.cert_paths("a.example.org", LE).fullchain == "/etc/letsencrypt/live/a.example.org/fullchain.pem"
    assert "subjectAltName=DNS:a.example.org" in model.self_signed_command("a.example.org")
    with pytest.raises(model.TlsDataError):
        model.cert_paths("a.example.org; rm -rf /", LE)


def test_lab_files_name_the_lab_and_listen_on_loopback():
    unit = tls_render.pebble_unit()
    assert "PEBBLE_VA_ALWAYS_VALID=1" in unit and "lab" in unit.lower()
    assert '"listenAddress": "127.0.0.1:14000"' in tls_render.pebble_config()
    assert '"managementListenAddress": "127.0.0.1:15000"' in tls_render.pebble_config()
    assert f"REQUESTS_CA_BUNDLE={model.PEBBLE_CERT}" in tls_render.certbot_lab_drop_in()
    assert "systemctl reload nginx" in tls_render.renewal_hook()


# -- the activation script, against a fake nginx --------------------------------------------


@pytest.fixture
def nginx_dir(tmp_path):
    """An /etc/nginx look-alike and fake `nginx` / `systemctl` that log what they are asked."""
    etc = tmp_path / "nginx"
    (etc / "sites-enabled").mkdir(parents=True)
    (etc / "sites-available").mkdir()
    (etc / "sites-available" / "default").write_text("debian default\n")
    (etc / "sites-enabled" / "default").symlink_to(etc / "sites-available" / "default")
    (etc / "sites-enabled" / "assotic-old.example.org.conf").write_text("old tenant\n")
    (etc / "conf.d").mkdir()
    (etc / "conf.d" / "assotic-http.conf").write_text("http v1\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    # The fake `nginx -t` fails when any file says BROKEN.
    (bin_dir / "nginx").write_text(f'#!/bin/sh\necho "nginx $*" >> {log}\n! grep -rqs BROKEN {etc}/conf.d {etc}/sites-enabled\n')
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "systemctl $*" >> {log}\n')
    for tool in ("nginx", "systemctl"):
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "activate"
    script.write_text(render.activate_script())
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ASSOTIC_NGINX_DIR": str(etc)}

    def run(*removals: str, staged: dict[str, str], left_staged: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
        """Activate the `staged` files (named to the script) and remove `removals`;
        `left_staged`: copies already in the staging folder that this run does not name."""
        for rel, content in {**(left_staged or {}), **staged}.items():
            (etc / "assotic-staging" / rel).parent.mkdir(parents=True, exist_ok=True)
            (etc / "assotic-staging" / rel).write_text(content)
        installs = [a for rel in staged for a in ("--install", str(etc / rel))]
        return subprocess.run([str(script), *installs, *(str(etc / r) for r in removals)], env=env,
                              capture_output=True, text=True)

    return SimpleNamespace(etc=etc, log=log, run=run)


def test_activation_installs_everything_then_reloads(nginx_dir):
    etc = nginx_dir.etc
    result = nginx_dir.run("sites-enabled/default", "sites-enabled/assotic-old.example.org.conf",
                           staged={"conf.d/assotic-http.conf": "http v2\n",
                                   "sites-enabled/assotic-new.example.org.conf": "new tenant\n"})
    assert result.returncode == 0, result.stderr
    assert (etc / "conf.d" / "assotic-http.conf").read_text() == "http v2\n"
    assert (etc / "sites-enabled" / "assotic-new.example.org.conf").read_text() == "new tenant\n"
    assert sorted(p.name for p in (etc / "sites-enabled").iterdir()) == ["assotic-new.example.org.conf"]
    assert nginx_dir.log.read_text().splitlines() == ["nginx -t -q", "systemctl reload-or-restart nginx"]
    assert not (etc / "assotic-rollback").exists() and list((etc / "assotic-staging").rglob("*.conf")) == []


def test_a_rejected_configuration_puts_every_file_back_and_does_not_reload(nginx_dir):
    etc = nginx_dir.etc
    result = nginx_dir.run("sites-enabled/default", "sites-enabled/assotic-old.example.org.conf",
                           staged={"conf.d/assotic-http.conf": "http v2\n",
                                   "sites-enabled/assotic-new.example.org.conf": "BROKEN\n"})
    assert result.returncode == 1 and "previous one is back" in result.stderr
    assert (etc / "conf.d" / "assotic-http.conf").read_text() == "http v1\n"
    assert not (etc / "sites-enabled" / "assotic-new.example.org.conf").exists()
    assert (etc / "sites-enabled" / "assotic-old.example.org.conf").read_text() == "old tenant\n"
    assert (etc / "sites-enabled" / "default").is_symlink()  # Debian's link, restored as a link
    assert "systemctl" not in nginx_dir.log.read_text()
    assert not (etc / "assotic-rollback").exists() and list((etc / "assotic-staging").rglob("*.conf")) == []


def test_a_copy_left_staged_by_a_killed_deploy_goes_live_only_when_named(nginx_dir):
    """A deploy killed between staging a vhost and activating it leaves the copy staged; if
    that change is abandoned (its data edited back), the next activation of another file
    must not install it (tests/lab/test_interrupted_deploy.py kills there)."""
    etc = nginx_dir.etc
    abandoned = {"sites-enabled/assotic-old.example.org.conf": "old tenant, abandoned edit\n"}
    result = nginx_dir.run(staged={"conf.d/assotic-http.conf": "http v2\n"}, left_staged=abandoned)
    assert result.returncode == 0, result.stderr
    assert (etc / "conf.d" / "assotic-http.conf").read_text() == "http v2\n"
    assert (etc / "sites-enabled" / "assotic-old.example.org.conf").read_text() == "old tenant\n"

    # Wanted again later: the deploy finds the staged copy right, names it, and it goes live.
    result = nginx_dir.run(staged=abandoned)
    assert result.returncode == 0, result.stderr
    assert (etc / "sites-enabled" / "assotic-old.example.org.conf").read_text() == "old tenant, abandoned edit\n"


def test_a_file_named_but_not_staged_changes_nothing(nginx_dir):
    etc = nginx_dir.etc
    result = subprocess.run([str(etc.parent / "activate"), "--install", str(etc / "conf.d/assotic-http.conf")],
                            env={**os.environ, "ASSOTIC_NGINX_DIR": str(etc)}, capture_output=True, text=True)
    assert result.returncode == 1 and "is not staged" in result.stderr
    assert (etc / "conf.d" / "assotic-http.conf").read_text() == "http v1\n"
    assert not nginx_dir.log.exists() and not (etc / "assotic-rollback").exists()
