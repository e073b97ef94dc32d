"""`make dns`: the records of each association, from data only (assotic/dns.py), and how
`make dns-check` compares a server's answers with them."""

from __future__ import annotations

import pytest

from assotic.dns import MISSING, OK, WRONG, Record, association_records, caa_fields, compare_record, txt_text, zone_text
from assotic.mail import parse_relay
from assotic.preflight import host_data_problems
from assotic.tenants import Tenant
from commands import dns_check
from commands.__main__ import COMMANDS, parser_of
from commands.dns_check import BadServer, make_resolver, parse_server
from roles.tls.model import caa_issuer

RELAY = parse_relay({"host": "smtp.hosting.example.net", "login": "x", "spf": "include:spf.hosting.example.net"})
ADDRESSES = {"web-1": ("203.0.113.10", "2001:db8::10"), "web-2": ("203.0.113.20", None)}


def tenant(mail=None) -> Tenant:
    return Tenant.model_validate({
        "slug": "ulap", "name": "ULAP", "contact": {"email": "bureau@ulap.example.org"},
        "apps": {"nextcloud": {"host": "web-1", "domain": "cloud.ulap.example.org"},
                 "paheko": {"host": "web-2", "domain": "gestion.ulap.example.org"}},
        "admins": [{"name": "A", "email": "a@ulap.example.org"}], **({"mail": mail} if mail else {})})


def lines(records):
    return [r.zone_line() for r in records]


def test_every_domain_points_at_its_hosts_addresses_with_the_cas_caa():
    records, missing = association_records(tenant(), ADDRESSES, "letsencrypt.org", RELAY)
    assert missing == []
    assert lines(records)[:5] == [
        "cloud.ulap.example.org. 3600 IN A 203.0.113.10",
        "cloud.ulap.example.org. 3600 IN AAAA 2001:db8::10",
        'cloud.ulap.example.org. 3600 IN CAA 0 issue "letsencrypt.org"',
        "gestion.ulap.example.org. 3600 IN A 203.0.113.20",
        'gestion.ulap.example.org. 3600 IN CAA 0 issue "letsencrypt.org"',
    ]


def test_spf_and_dmarc_go_on_the_senders_domain_for_the_relay_that_sends_it():
    own = {"from": "contact@ulap.example.org",
           "relay": {"host": "mail.provider.example", "port": 465, "tls": "implicit", "login": "u",
                     "spf": "include:_spf.provider.example"}}
    records, _ = association_records(tenant(own), ADDRESSES, None, RELAY)
    assert 'ulap.example.org. 3600 IN TXT "v=spf1 include:_spf.provider.example -all"' in lines(records)
    assert ('_dmarc.ulap.example.org. 3600 IN TXT "v=DMARC1; p=none; rua=mailto:bureau@ulap.example.org"'
            in lines(records))
    default, _ = association_records(tenant(), ADDRESSES, None, RELAY)
    assert 'cloud.ulap.example.org. 3600 IN TXT "v=spf1 include:spf.hosting.example.net -all"' in lines(default)


def test_what_data_cannot_tell_is_named_not_guessed():
    no_spf = parse_relay({"host": "smtp.hosting.example.net", "login": "x"})
    records, missing = association_records(tenant(), {"web-1": ("203.0.113.10", None)}, None, no_spf)
    assert any("gestion.ulap.example.org" in m and "web-2" in m for m in missing)
    assert any("smtp.hosting.example.net has no `spf`" in m for m in missing)
    assert not any(r.type == "CAA" for r in records)
    text = zone_text(tenant(), records, missing)
    assert text.startswith("; ULAP (ulap)") and "; MISSING: " in text


def test_the_caa_issuer_is_known_for_lets_encrypt_and_unknown_for_the_labs_pebble():
    assert caa_issuer({}) == "letsencrypt.org"
    assert caa_issuer({"acme_directory": "https://127.0.0.1:14000/dir"}) is None
    assert caa_issuer({"acme_directory": "https://acme.example/dir", "acme_caa_issuer": "example.com"}) == "example.com"


def test_public_addresses_in_the_inventory_are_checked():
    problems = host_data_problems("inventory/prod.py", "web-1", {"public_ipv4": "2001:db8::1",
                                                                 "public_ipv6": "nope"})
    assert [p.field for p in problems] == ["web-1.public_ipv4", "web-1.public_ipv6"]
    assert host_data_problems("inventory/prod.py", "web-1", {"public_ipv4": "203.0.113.10"}) == []


# --- make dns-check: the comparison, without a server (tests/lab/test_dns_check.py asks nsd) ---

A = Record("cloud.ulap.example.org", "A", "203.0.113.10", "nextcloud on web-1")
AAAA = Record("cloud.ulap.example.org", "AAAA", "2001:db8::10", "nextcloud on web-1")
SPF = Record("ulap.example.org", "TXT", '"v=spf1 include:spf.hosting.example.net -all"', "relay")
DMARC = Record("_dmarc.ulap.example.org", "TXT", '"v=DMARC1; p=none; rua=mailto:b@ulap.example.org"', "start")
CAA = Record("cloud.ulap.example.org", "CAA", '0 issue "letsencrypt.org"', "ACME")


def status(record, answers, expected=None):
    return compare_record(record, expected or [record.value], answers)


def test_addresses_compare_as_sets_and_ipv6_is_normalised():
    assert status(A, ["203.0.113.10"]).status == OK
    assert status(AAAA, ["2001:0db8:0000::0010"]).status == OK
    wrong = status(A, ["203.0.113.10", "198.51.100.1"])
    assert (wrong.status, wrong.got) == (WRONG, "198.51.100.1 203.0.113.10")
    assert "expected 203.0.113.10, got 198.51.100.1 203.0.113.10" in wrong.line()
    assert status(A, None).status == MISSING and status(A, []).status == MISSING


def test_spf_is_the_v_spf1_record_among_the_domains_txt_records():
    assert status(SPF, ["google-site-verification=abc", "v=spf1 include:spf.hosting.example.net -all"]).status == OK
    assert status(SPF, ["google-site-verification=abc"]).status == MISSING
    wrong = status(SPF, ["v=spf1 include:old.example -all"])
    assert wrong.status == WRONG and wrong.got == '"v=spf1 include:old.example -all"'
    two = status(SPF, ["v=spf1 include:spf.hosting.example.net -all", "v=spf1 a -all"])
    assert two.status == WRONG and "more than one" in two.got


def test_dmarc_and_caa():
    assert status(DMARC, ["v=DMARC1; p=none; rua=mailto:b@ulap.example.org"]).status == OK
    assert status(DMARC, ["v=DMARC1; p=reject"]).status == WRONG
    assert status(CAA, [(0, "issue", "letsencrypt.org"), (0, "iodef", "mailto:x@example.org")]).status == OK
    assert status(CAA, [(0, "ISSUE", "letsencrypt.org")]).status == OK
    assert status(CAA, [(0, "issue", "pki.goog")]).got == '0 issue "pki.goog"'
    assert status(CAA, [(0, "iodef", "mailto:x@example.org")]).status == MISSING
    assert caa_fields('128 issuewild "x.example"') == (128, "issuewild", "x.example")
    assert txt_text('"v=spf1 -all"') == "v=spf1 -all"


def test_the_server_is_an_address_and_a_port_never_a_name():
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("192.0.2.53") == ("192.0.2.53", 53)
    assert parse_server("[2001:db8::53]:5300") == ("2001:db8::53", 5300)
    assert parse_server("[::1]") == ("::1", 53)
    for bad in ("ns.example.org:53", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:x", "[::1:53",
                "[::1]x", "", "1.2.3.4:53:53"):
        with pytest.raises(BadServer):
            parse_server(bad)
    resolver = make_resolver(("127.0.0.1", 5353))
    assert (resolver.nameservers, resolver.port) == (["127.0.0.1"], 5353)
    assert resolver.lifetime <= 10  # a server that does not answer is given up on quickly


def test_a_malformed_server_is_refused_before_anything_is_loaded_or_asked(capsys):
    parser = parser_of("dns-check", COMMANDS["dns-check"], dns_check)
    args = parser.parse_args(["--inventory", "no/such/inventory.py", "--server", "ns.example.org"])
    assert dns_check.run(args) == 2
    assert "expected an IP address" in capsys.readouterr().out
