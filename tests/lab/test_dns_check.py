"""`make dns-check` against a real DNS server: Debian's nsd, started for the test on
127.0.0.1 at a free high port, serving the records `make dns` prints for the lab.

No container is needed: the lab inventory is read (as `make dns` reads it), nothing connects
to a host, and dns-check asks only the nsd given with --server. The lab has no mail relay,
so `make dns` would have no SPF to print: in a copy of the example tenants, the test gives
each association a relay with an SPF mechanism, and ulap its own sender domain.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.resolver
import pytest
import yaml

from assotic.layout import MAIL_RELAY_SECRET, tenant_mail_relay_secret

from lab.harness import ensure_ssh_key

REPO = Path(__file__).resolve().parents[2]
NSD = shutil.which("nsd") or (Path("/usr/sbin/nsd") if Path("/usr/sbin/nsd").is_file() else None)
IN_CI = bool(os.environ.get("ASSOTIC_CI") or os.environ.get("CI"))

# .ci/run installs nsd: in CI a missing nsd is a failure, elsewhere a skip.
pytestmark = pytest.mark.skipif(NSD is None and not IN_CI, reason="nsd is not installed (apt-get install nsd)")

ZONE = "example.org"  # every lab domain is under it (checked below)
SPF = "ip4:192.0.2.25"
RELAY = {"host": "relay.lab.example.org", "login": "lab@lab.example.org", "spf": SPF}
ULAP_FROM = "contact@ulap.example.org"
START_TIMEOUT = 10  # seconds nsd gets to answer its first question


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (nsd listens on both)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port on 127.0.0.1 for both UDP and TCP")


@pytest.fixture(scope="module")
def lab_env(tmp_path_factory):
    """The environment of `make dns` on the lab inventory: a throw-away secrets store (the
    inventory needs one to load; no secret is read), the lab's SSH key (its path is checked,
    no host is reached) and the example tenants, ulap with its own relay."""
    work = tmp_path_factory.mktemp("dns-lab")
    tenants = work / "tenants"
    shutil.copytree(REPO / "group_data" / "tenants", tenants)
    slugs = []
    for tenant_file in sorted(tenants.glob("*.yml")):
        data = yaml.safe_load(tenant_file.read_text())
        data["mail"] = {**data.get("mail", {}), "relay": RELAY,
                        **({"from": ULAP_FROM} if data["slug"] == "ulap" else {})}
        tenant_file.write_text(yaml.safe_dump(data, allow_unicode=True))
        slugs.append(data["slug"])
    ensure_ssh_key()
    env = {**os.environ, "ASSOTIC_SECRETS_FILE": str(work / "store.enc.json"),
           "ASSOTIC_SECRETS_KEY": str(work / "secrets.key"), "ASSOTIC_TENANTS_DIR": str(tenants),
           "ASSOTIC_CHECK_ONLY": "1"}
    subprocess.run([sys.executable, "-m", "commands", "secrets", "init"], cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=60)
    # make check wants the password of every relay (the associations', and the lab relay's once
    # `make lab` made it); any value does, nothing logs in.
    for name in [MAIL_RELAY_SECRET, *(tenant_mail_relay_secret(slug) for slug in slugs)]:
        subprocess.run([sys.executable, "-m", "commands", "secrets", "set", name],
                       cwd=REPO, env=env, input="not-used-by-dns", text=True, check=True,
                       capture_output=True, timeout=60)
    return env


def commands(env, *argv, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "commands", *argv, "--inventory", "inventory/lab.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def lab_records(lab_env) -> list[str]:
    """The zone lines `make dns` prints for the lab, each once (two associations share
    chat.example.org)."""
    result = commands(lab_env, "dns")
    missing = [line for line in result.stdout.splitlines() if line.startswith("; MISSING")]
    # Pebble, the lab's ACME server, is no public CA: no CAA. Everything else is known.
    assert missing and all("no CAA record" in line for line in missing), result.stdout + result.stderr
    assert result.returncode == 1
    records = [line for line in result.stdout.splitlines() if line and not line.startswith(";")]
    records = [line.split("  ;", 1)[0] for line in dict.fromkeys(records)]
    assert all(line.split(None, 1)[0].endswith(f"{ZONE}.") for line in records)
    assert f'ulap.example.org. 3600 IN TXT "v=spf1 {SPF} -all"' in records
    return records


@contextmanager
def nsd_serving(tmp_path: Path, records: list[str]):
    """nsd in the foreground, serving ZONE with these records; yields its port."""
    assert NSD is not None, "nsd is not installed: .ci/run installs it (apt-get install nsd)"
    port = free_port()
    zone_file = tmp_path / f"{ZONE}.zone"
    zone_file.write_text("\n".join([
        f"$ORIGIN {ZONE}.",
        f"@ 3600 IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300",
        f"@ 3600 IN NS ns.{ZONE}.",
        *records, ""]))
    # nsd.conf(5) of nsd 4.6: everything in tmp_path, no privilege drop and no chroot (it
    # runs as whoever runs the test, on a high port), no compiled database, no control socket.
    (tmp_path / "nsd.conf").write_text(f"""server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{tmp_path}"
    zonelistfile: "{tmp_path}/zone.list"
    xfrdfile: "{tmp_path}/xfrd.state"
    xfrdir: "{tmp_path}"
    pidfile: "{tmp_path}/nsd.pid"
    logfile: "{tmp_path}/nsd.log"
    server-count: 1
    verbosity: 1
remote-control:
    control-enable: no
zone:
    name: {ZONE}
    zonefile: "{zone_file}"
""")
    server = subprocess.Popen([str(NSD), "-d", "-c", str(tmp_path / "nsd.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], port, 1
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                resolver.resolve(f"{ZONE}.", "SOA")
                break
            except (dns.exception.DNSException, OSError):
                log = (tmp_path / "nsd.log").read_text() if (tmp_path / "nsd.log").exists() else ""
                assert server.poll() is None, f"nsd exited ({server.returncode}):\n{log}"
                assert time.monotonic() < deadline, f"nsd did not answer within {START_TIMEOUT} s:\n{log}"
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def report(result) -> dict[str, list[str]]:
    lines = result.stdout.splitlines()
    return {status: [line for line in lines if line.startswith(status)] for status in ("ok", "MISSING", "WRONG")}


def test_the_complete_lab_zone_is_all_ok(lab_env, lab_records, tmp_path):
    with nsd_serving(tmp_path, lab_records) as port:
        result = commands(lab_env, "dns-check", "--server", f"127.0.0.1:{port}")
    found = report(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert found["MISSING"] == found["WRONG"] == []
    # Each association's records once each (chat.example.org for both that share it).
    expected = commands(lab_env, "dns").stdout.splitlines()
    assert len(found["ok"]) == sum(1 for line in expected if line and not line.startswith(";"))
    assert "every record is ok" in result.stdout


def test_a_removed_a_record_and_a_changed_spf_are_named_and_the_rest_is_ok(lab_env, lab_records, tmp_path):
    removed = "gestion.ulap.example.org. 3600 IN A 192.0.2.10"
    spf = f'ulap.example.org. 3600 IN TXT "v=spf1 {SPF} -all"'
    assert removed in lab_records and spf in lab_records
    changed = [line for line in lab_records if line != removed]
    changed[changed.index(spf)] = 'ulap.example.org. 3600 IN TXT "v=spf1 ip4:198.51.100.7 -all"'
    with nsd_serving(tmp_path, changed) as port:
        result = commands(lab_env, "dns-check", "--server", f"127.0.0.1:{port}")
    found = report(result)
    assert result.returncode == 1, result.stdout + result.stderr
    assert found["MISSING"] == ["MISSING  gestion.ulap.example.org A: expected 192.0.2.10, the server has none"]
    assert found["WRONG"] == [f'WRONG    ulap.example.org TXT: expected "v=spf1 {SPF} -all", '
                              'got "v=spf1 ip4:198.51.100.7 -all"']
    expected = commands(lab_env, "dns").stdout.splitlines()
    assert len(found["ok"]) == sum(1 for line in expected if line and not line.startswith(";")) - 2
    assert "gestion.ulap.example.org AAAA 2001:db8::10" in "\n".join(found["ok"])
    assert "2 record(s) missing, wrong or unchecked" in result.stdout


def test_a_server_that_does_not_answer_fails_soon_and_says_so(lab_env):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = commands(lab_env, "dns-check", "--server", f"127.0.0.1:{port}", timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"127.0.0.1 port {port}" in result.stdout
    assert "did not answer" in result.stdout or "UNCHECKED" in result.stdout
    assert not report(result)["ok"]
    assert took < 30, f"dns-check took {took:.1f} s against a closed port"


def test_caa_txt_in_pieces_and_a_refused_name_as_nsd_serves_them(tmp_path):
    """What the lab zone lacks (no CAA: pebble is no public CA), what dnspython hands over in
    pieces (a TXT record of several strings) and a refusal, read from nsd as dns-check does."""
    from assotic.dns import Record
    from commands.dns_check import answers_of, check_records, make_resolver

    with nsd_serving(tmp_path, [f'cloud.{ZONE}. 3600 IN CAA 0 issue "letsencrypt.org"',
                                f'cloud.{ZONE}. 3600 IN CAA 0 iodef "mailto:x@{ZONE}"',
                                f'{ZONE}. 3600 IN TXT "v=spf1 " "{SPF} -all"']) as port:
        resolver = make_resolver(("127.0.0.1", port))
        assert sorted(answers_of(resolver, f"cloud.{ZONE}", "CAA")) == [
            (0, "iodef", f"mailto:x@{ZONE}"), (0, "issue", "letsencrypt.org")]
        assert answers_of(resolver, ZONE, "TXT") == [f"v=spf1 {SPF} -all"]
        assert answers_of(resolver, f"nowhere.{ZONE}", "A") is None  # NXDOMAIN
        assert answers_of(resolver, f"cloud.{ZONE}", "A") is None  # the name, without that type
        # A name outside its zone: nsd refuses it; that record is unchecked, the next one is.
        elsewhere = Record("www.example.net", "A", "192.0.2.1", "outside the zone")
        here = Record(f"cloud.{ZONE}", "CAA", '0 issue "letsencrypt.org"', "ACME")
        first, second = check_records(resolver, [elsewhere, here])
        assert first.startswith("UNCHECKED www.example.net A:") and "REFUSED" in first
        assert second.status == "ok"
