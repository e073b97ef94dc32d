"""What roles/nginx promises on every web host that serves vhosts, checked on the host.

Expected values come from the host's data through the role's own pure functions, so a
check fails when the host drifts from its data. Requests go to 127.0.0.1 on the host
itself, with the tenant's name (curl --resolve), as a browser would send it.
"""

from __future__ import annotations

import re
import shlex

import pytest

from roles import nginx as nginx_role
from roles.nginx import render
from roles.tls import TlsSettings, cert_paths

pytestmark = pytest.mark.hosts_in("web")
UNKNOWN_HOST = "unknown-name.invalid"


@pytest.fixture(scope="module")
def vhosts(needs):
    if not needs.vhosts:
        pytest.skip("no vhost on this host: nginx is not deployed here")
    return needs.vhosts


@pytest.fixture(scope="module")
def settings(host, data, vhosts) -> render.NginxSettings:
    major = int(host.system_info.release.split(".")[0])
    return render.NginxSettings.from_data(data, debian_major=major)


@pytest.fixture(scope="module")
def tenant_words(data, pyinfra_host) -> list[str]:
    """Words that would betray a tenant's content: its domains, name and slug."""
    words = []
    for tenant in data.platform.tenants_on(pyinfra_host.name):
        words += [tenant.name, tenant.slug, *(domain for _, domain in tenant.domains())]
    return words


def curl(host, url: str, resolve: str | None = None, header: str | None = None) -> tuple[int, dict, str]:
    """(status, lower-case headers, body) of one request, from the host to itself."""
    # A generous limit: this checks answers, not speed (make bench measures that); a pool's
    # first request after a deploy may wait for a worker to start on a busy host.
    args = ["curl", "-sk", "--max-time", "30", "-o", "/dev/stdout", "-D", "/dev/stderr"]
    if resolve:
        args += ["--resolve", resolve]
    if header:
        args += ["-H", header]
    result = host.run(shlex.join([*args, url]))
    status, headers = 0, {}
    for line in result.stderr.splitlines():
        if line.startswith("HTTP/"):
            status, headers = int(line.split()[1]), {}
        elif ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers, result.stdout


def why_no_answer(host, url: str, resolve: str) -> str:
    """curl's own error and timings for a request that got no HTTP answer (for messages)."""
    result = host.run(shlex.join(["curl", "-sSk", "--max-time", "30", "-o", "/dev/null", "--resolve", resolve,
                                  "-w", "http %{http_code} in %{time_total}s", url]))
    return f"curl exit {result.rc}: {result.stderr.strip()} {result.stdout.strip()}"


def test_nginx_is_enabled_and_running(host, vhosts):
    service = host.service("nginx")
    assert service.is_enabled and service.is_running
    assert host.run("nginx -t -q").rc == 0


def test_nginx_listens_on_80_and_443(host, vhosts):
    for port in (80, 443):
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_config_files_are_the_rendered_ones(host, data, settings, vhosts):
    tls = TlsSettings.from_data(data)
    expected = {**render.front_files(settings),
                **render.vhost_files(vhosts, {v.domain: cert_paths(v.domain, tls) for v in vhosts}, settings)}
    for path, content in expected.items():
        assert host.file(path).content_string == content, path
    present = host.check_output(f"find {render.SITES_ENABLED} -mindepth 1 -maxdepth 1").split()
    assert sorted(present) == sorted(p for p in expected if p.startswith(render.SITES_ENABLED)), \
        "sites-enabled holds exactly our vhosts (no Debian default site, no stale tenant)"
    assert host.file(render.ACTIVATE_SCRIPT).content_string == render.activate_script()


def test_each_domain_answers_over_https_with_the_security_headers(host, settings, vhosts):
    for vhost in vhosts:
        url, resolve = f"https://{vhost.domain}/", f"{vhost.domain}:443:127.0.0.1"
        status, headers, _ = curl(host, url, resolve=resolve)
        assert status and status < 500, (vhost.domain, status, status or why_no_answer(host, url, resolve))
        for name, value in nginx_role.security_headers(settings):
            assert headers.get(name.lower()) == value, (vhost.domain, name)
        max_age = int(re.search(r"max-age=(\d+)", headers["strict-transport-security"]).group(1))
        assert max_age >= render.HSTS_MIN_AGE
        assert headers.get("server") == "nginx", "server_tokens off: no version"


def test_http_redirects_to_https(host, vhosts):
    for vhost in vhosts:
        status, headers, _ = curl(host, f"http://{vhost.domain}/some/path?x=1", resolve=f"{vhost.domain}:80:127.0.0.1")
        assert status in (301, 308), vhost.domain
        assert headers["location"] == f"https://{vhost.domain}/some/path?x=1"


def test_acme_challenges_are_served_for_any_name_on_80(host, vhosts):
    status, _, _ = curl(host, "http://127.0.0.1/.well-known/acme-challenge/nothing-here", header=f"Host: {UNKNOWN_HOST}")
    assert status == 404  # served by the webroot location: a missing token, not a redirect


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_unknown_names_get_no_tenant_content(host, vhosts, tenant_words, scheme):
    port = 443 if scheme == "https" else 80
    for header in (None, f"Host: {UNKNOWN_HOST}"):
        url = f"{scheme}://{UNKNOWN_HOST}/" if header is None else f"{scheme}://127.0.0.1/"
        status, headers, body = curl(host, url, resolve=f"{UNKNOWN_HOST}:{port}:127.0.0.1", header=header)
        assert status in (404, 421, 444) or status == 0, (scheme, status)
        leaked = [w for w in tenant_words if w.lower() in (body + str(headers)).lower()]
        assert leaked == [], f"{scheme} default server shows tenant content: {leaked}"


def test_tls_1_1_is_refused_and_1_2_and_1_3_accepted(host, vhosts):
    domain = vhosts[0].domain

    def handshake(option: str, extra: str = "") -> int:
        return host.run(f"echo | timeout 10 openssl s_client -connect 127.0.0.1:443 -servername {domain} "
                        f"{option} {extra}").rc

    # SECLEVEL=0 on the client side: otherwise OpenSSL 3 refuses TLS 1.1 by itself and the
    # check would pass whatever the server does.
    assert handshake("-tls1_1", "-cipher DEFAULT@SECLEVEL=0") != 0
    assert handshake("-tls1_2") == 0
    assert handshake("-tls1_3") == 0
