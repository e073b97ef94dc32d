"""What roles/tls promises on every web host that serves vhosts, checked on the host.

In the lab (acme_lab_server) the certificates come from the host's own pebble, and a
renewal is forced for real: the served certificate must change.
"""

from __future__ import annotations

import time

import pytest

from roles.tls import model, render

pytestmark = pytest.mark.hosts_in("web")


@pytest.fixture(scope="module")
def domains(needs):
    if not needs.vhosts:
        pytest.skip("no vhost on this host: no certificate wanted")
    return needs.domains


@pytest.fixture(scope="module")
def settings(data) -> model.TlsSettings:
    return model.TlsSettings.from_data(data)


def served_certificate(host, domain: str, fields: str = "-issuer -subject -dates -serial -ext subjectAltName") -> str:
    return host.check_output(
        f"echo | openssl s_client -connect 127.0.0.1:443 -servername {domain} 2>/dev/null"
        f" | openssl x509 -noout {fields}")


def test_each_domain_serves_its_own_valid_certificate(host, settings, domains):
    for domain in domains:
        text = served_certificate(host, domain)
        assert f"DNS:{domain}" in text, text
        issuer = text.splitlines()[0]
        if settings.acme_lab_server:
            assert "Pebble" in issuer, issuer
        elif settings.tls_self_signed:
            assert f"CN = {domain}" in issuer or f"CN={domain}" in issuer, issuer
        # Not expired, and not expiring within a day.
        check = host.run(f"echo | openssl s_client -connect 127.0.0.1:443 -servername {domain} 2>/dev/null"
                         " | openssl x509 -noout -checkend 86400")
        assert check.rc == 0, f"{domain}: certificate expired or about to"


def test_certificate_files_exist(host, settings, domains):
    for domain in domains:
        paths = model.cert_paths(domain, settings)
        assert host.file(paths.fullchain).exists and host.file(paths.privkey).exists


def test_renewals_go_to_the_configured_acme_server(host, settings, domains):
    if not settings.uses_acme:
        pytest.skip("tls_self_signed: no ACME renewal")
    for domain in domains:
        conf = host.file(f"/etc/letsencrypt/renewal/{domain}.conf").content_string
        assert f"server = {settings.acme_directory}\n" in conf, domain
        assert f"webroot_path = {model.ACME_WEBROOT}" in conf, domain


def test_certbot_timer_is_enabled_and_the_hook_reloads_nginx(host, settings, domains):
    if not settings.uses_acme:
        pytest.skip("tls_self_signed: no ACME renewal")
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    hook = host.file(model.RENEWAL_HOOK)
    assert hook.mode == 0o755 and hook.user == "root"
    assert hook.content_string == render.renewal_hook()
    drop_in = host.file(model.CERTBOT_LAB_DROP_IN)
    if settings.acme_lab_server:
        assert drop_in.content_string == render.certbot_lab_drop_in()
    else:
        assert not drop_in.exists, "the lab's pebble trust must never reach a production host"


def test_lab_acme_server_runs_on_loopback_only(host, settings, domains):
    if not settings.acme_lab_server:
        pytest.skip("acme_lab_server is off: no pebble (production)")
    service = host.service(model.PEBBLE_UNIT)
    assert service.is_enabled and service.is_running
    assert host.socket(f"tcp://{model.PEBBLE_LISTEN}").is_listening
    assert not host.socket("tcp://0.0.0.0:14000").is_listening


def test_lab_renewal_really_renews_and_reloads_nginx(host, settings, domains):
    """Force a renewal against pebble with certbot.service's own environment: the deploy hook
    must reload nginx, so the served certificate changes. Lab only (never against a real CA)."""
    if not settings.acme_lab_server:
        pytest.skip("forced renewals only against the lab's pebble")
    domain = domains[0]
    before = served_certificate(host, domain, "-serial")
    env = host.check_output("systemctl show certbot.service -p Environment --value")
    assert f"REQUESTS_CA_BUNDLE={model.PEBBLE_CERT}" in env
    renew = host.run(f"env {env} certbot renew --force-renewal --no-random-sleep-on-renew --cert-name {domain}")
    assert renew.rc == 0, renew.stderr
    after = before
    for _ in range(50):  # nginx's old workers may serve a few more handshakes after reload
        after = served_certificate(host, domain, "-serial")
        if after != before:
            break
        time.sleep(0.1)
    assert after != before, "renewed, but nginx still serves the old certificate"
    assert "Pebble" in served_certificate(host, domain, "-issuer")
