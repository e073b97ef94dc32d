"""coturn on the hosts of group turn: service, ports, configuration, and a real STUN exchange."""

from __future__ import annotations

import json

import pytest

from roles.coturn.model import (
    DENIED_PEER_RANGES,
    SECRET_NAME,
    TURN_CERT,
    TURN_KEY,
    TURNSERVER_CONF,
    CoturnSettings,
)

pytestmark = pytest.mark.hosts_in("turn")

# Runs ON the turn host, to its own loopback: a plain RFC 5389 Binding Request (20 bytes:
# type 0x0001, length 0, magic cookie 0x2112A442, random 96-bit transaction id). It prints
# the response's type, whether the transaction id matches, and the XOR-MAPPED-ADDRESS.
STUN_PROBE = r"""
import json, os, socket, struct, sys
port = int(sys.argv[1]); tid = os.urandom(12)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid, ("127.0.0.1", port))
data, _ = s.recvfrom(2048)
kind, length, cookie = struct.unpack("!HHI", data[:8])
out = {"type": kind, "cookie": cookie, "tid_ok": data[8:20] == tid, "xor_mapped": None}
pos = 20
while pos + 4 <= 20 + length:
    atype, alen = struct.unpack("!HH", data[pos:pos + 4]); value = data[pos + 4:pos + 4 + alen]
    if atype == 0x0020 and value[1] == 0x01:
        xport = struct.unpack("!H", value[2:4])[0] ^ 0x2112
        xaddr = struct.unpack("!I", value[4:8])[0] ^ 0x2112A442
        out["xor_mapped"] = [socket.inet_ntoa(struct.pack("!I", xaddr)), xport]
    pos += 4 + alen + (-alen % 4)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def settings(data) -> CoturnSettings:
    return CoturnSettings.from_data(data)


def test_coturn_is_installed_enabled_and_running(host):
    assert host.package("coturn").is_installed
    service = host.service("coturn")
    assert service.is_enabled and service.is_running


def test_coturn_listens_on_its_ports(host, settings):
    # coturn binds each address of the host (not 0.0.0.0): look for the port on any of them.
    listening = host.socket.get_listening_sockets()
    for proto, port in (("udp", settings.listening_port), ("tcp", settings.listening_port),
                        ("tcp", settings.tls_port)):
        assert any(s.startswith(f"{proto}://") and s.endswith(f":{port}") for s in listening), (proto, port)


def test_config_is_root_turnserver_0640_and_not_world_readable(host):
    for path in (TURNSERVER_CONF, TURN_KEY):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "turnserver", 0o640), path


def test_config_has_the_secret_and_denies_private_peers(host, data, settings):
    lines = set(host.file(TURNSERVER_CONF).content_string.splitlines())
    assert {"use-auth-secret", "fingerprint", "no-cli", f"realm={settings.realm}"} <= lines
    assert f"static-auth-secret={data.platform.secrets.get(SECRET_NAME)}" in lines
    assert {f"denied-peer-ip={peer}" for peer in DENIED_PEER_RANGES} <= lines


def test_certificate_matches_the_turn_domain(host, settings):
    subject = host.check_output(f"openssl x509 -noout -subject -in {TURN_CERT}")
    assert settings.domain in subject


def test_stun_binding_request_gets_a_binding_success_with_xor_mapped_address(host, settings):
    result = host.run(f"python3 -c '{STUN_PROBE}' {settings.listening_port}")
    assert result.rc == 0, result.stderr
    answer = json.loads(result.stdout)
    print(f"STUN answer from 127.0.0.1:{settings.listening_port}: {answer}")
    assert answer["type"] == 0x0101  # Binding Success Response
    assert answer["cookie"] == 0x2112A442 and answer["tid_ok"]
    assert answer["xor_mapped"] is not None and answer["xor_mapped"][0] == "127.0.0.1"
