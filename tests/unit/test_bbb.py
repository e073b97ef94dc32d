"""roles/bbb and assotic/sip without a host: data checks, every rendered file, the planned
operations against fake Ubuntu facts. BigBlueButton itself never runs here (docs/bbb.md)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fake_facts import FakeHost

from assotic.artifacts import Artifact
from assotic import preflight, sip
from assotic.preflight import InventoryView
from roles.bbb import model, repositories
from roles.bbb.model import BbbDataError, BbbSettings, TurnServer

PASSWORD = "pw&<provider>\"x"
API_SECRET = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
TURN_SECRET = "turn-shared-secret-0123456789"
SIP = {"provider": "sip.example-provider.fr", "username": "0912345678",
       "password_secret": "sip/bbb-1/password", "numbers": ["+33912345678", "+33187654321"],
       "provider_ips": ["203.0.113.0/24", "2001:db8::/32"], "mask_caller_id": True, "pin_attempts": 3}


def settings(**data) -> BbbSettings:
    return BbbSettings.from_data("bbb-1", {"bbb_domain": "meet.example.org", "bbb_sip": SIP, **data},
                                 [TurnServer("turn.example.org")])


def xmllint(text: str) -> None:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint missing: apt-get install libxml2-utils")
    result = subprocess.run(["xmllint", "--noout", "-"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- data checks (preflight) ---------------------------------------------------------------------


def test_good_sip_data_passes():
    assert sip.bbb_problems("inventory/x.py", "bbb-1", {"bbb_sip": SIP}) == []


def test_every_sip_problem_is_reported_at_once_with_its_field():
    bad = {**SIP, "numbers": ["0612345678", "+33 9 12"], "provider_ips": [], "pin_attempts": 0,
           "colour": "blue"}
    del bad["username"]
    fields = {p.field for p in sip.bbb_problems("inventory/x.py", "bbb-1", {"bbb_sip": bad})}
    assert fields == {"bbb-1.bbb_sip.numbers", "bbb-1.bbb_sip.provider_ips", "bbb-1.bbb_sip.pin_attempts",
                      "bbb-1.bbb_sip.colour", "bbb-1.bbb_sip.username"}


def test_a_malformed_number_is_named():
    problems = sip.bbb_problems("inventory/x.py", "bbb-1", {"bbb_sip": {**SIP, "numbers": ["+0123"]}})
    assert "E.164" in problems[0].expected and "+0123" in problems[0].expected


def test_version_must_be_a_known_line():
    assert sip.bbb_problems("i.py", "bbb-1", {"bbb_version": "focal-270"})[0].field == "bbb-1.bbb_version"
    assert sip.bbb_problems("i.py", "bbb-1", {"bbb_version": "noble-400"}) == []
    assert sip.bbb_problems("i.py", "bbb-1", {"bbb_version": "jammy-300-3.0.10"}) == []


class Store:
    def __init__(self, names):
        self.names = set(names)

    def __contains__(self, name):
        return name in self.names


def test_a_missing_sip_password_is_a_problem_naming_make_secret_set():
    view = {"bbb-1": {"bbb_sip": SIP}}
    problems = sip.sip_secret_problems("inventory/x.py", view, ["bbb-1"], Store([]))
    assert [p.field for p in problems] == ["bbb-1.bbb_sip.password_secret"]
    assert "make secret-set NAME=sip/bbb-1/password" in problems[0].expected
    assert sip.sip_secret_problems("inventory/x.py", view, ["bbb-1"], Store(["sip/bbb-1/password"])) == []


def test_preflight_refuses_bad_sip_data_of_a_bbb_host():
    view = InventoryView("inventory/x.py", {"bbb": ["bbb-1"]},
                         {"bbb-1": {"bbb_sip": {**SIP, "provider_ips": []}}})
    assert [p.field for p in preflight.inventory_problems(view)] == ["bbb-1.bbb_sip.provider_ips"]


def test_platform_secrets_turn_and_bbb_are_generated():
    view = InventoryView("i.py", {"web": ["web-1"], "bbb": ["bbb-1"], "turn": ["turn-1", "turn-2"]}, {})
    assert preflight.platform_secret_names(view) == ["turn/static_auth_secret", "bbb/bbb-1/api_secret"]
    assert preflight.platform_secret_names(InventoryView("i.py", {"web": ["web-1"]}, {})) == []


# -- rendered files ------------------------------------------------------------------------------


def test_gateway_is_valid_xml_with_the_documented_params():
    text = model.sip_gateway(settings().sip, PASSWORD)
    xmllint(text)
    gateway = ET.fromstring(text).find("gateway")
    params = {p.get("name"): p.get("value") for p in gateway.findall("param")}
    assert gateway.get("name") == "sip.example-provider.fr"
    assert params["username"] == "0912345678" and params["password"] == PASSWORD
    assert params["realm"] == "sip.example-provider.fr" and params["proxy"] == "sip.example-provider.fr"
    assert params["register"] == "true" and params["context"] == "public"


def test_gateway_uses_the_proxy_when_given():
    params = {p.get("name"): p.get("value") for p in ET.fromstring(model.sip_gateway(
        settings(bbb_sip={**SIP, "proxy": "proxy.example-provider.fr"}).sip, "x")).iter("param")}
    assert params["proxy"] == "proxy.example-provider.fr" and params["realm"] == "sip.example-provider.fr"


def dialplan(**sip_data):
    text = model.sip_dialplan(settings(bbb_sip={**SIP, **sip_data}).sip)
    xmllint(text)
    return ET.fromstring(text)


def actions(extension, tag="action"):
    return [(a.get("application"), a.get("data")) for a in extension.iter(tag)]


def test_dialplan_answers_with_dtmf_and_asks_the_pin_with_bounded_tries():
    root = dialplan(pin_attempts=4)
    first, pin, join, bad = root.findall("extension")
    condition = first.find("condition")
    assert condition.get("field") == "destination_number"
    assert "33912345678" in condition.get("expression") and "33187654321" in condition.get("expression")
    apps = [a for a, _ in actions(first)]
    assert apps.index("start_dtmf") < apps.index("answer") < apps.index("transfer")
    digits = dict(actions(pin))["play_and_get_digits"].split()
    assert digits[2] == "4"  # max tries from data
    assert dict(actions(bad))["hangup"] == "CALL_REJECTED"
    assert bad.findall("condition")[1].get("expression") == "^x{4,}$"  # then the call ends


def test_dialplan_transfers_only_to_an_active_conference():
    join = dialplan().findall("extension")[2]
    fields = [c.get("field") for c in join.findall("condition")]
    assert fields == ["destination_number", "${pin}", "${conference ${pin} list}"]
    assert ("transfer", "${pin} XML default") in actions(join)
    assert ("set", "bbb_authorized=true") in actions(join)
    assert actions(join, "anti-action")[0][0] == "transfer"


def test_caller_id_masking_is_optional():
    assert any(a == "set_profile_var" for a, _ in actions(dialplan(mask_caller_id=True)))
    assert not any(a == "set_profile_var" for a, _ in actions(dialplan(mask_caller_id=False)))


def test_turn_stun_servers_lists_stun_turn_and_turns():
    text = model.turn_stun_servers(settings(), TURN_SECRET)
    xmllint(text)
    values = [a.get("value") for a in ET.fromstring(text).iter("{http://www.springframework.org/schema/beans}constructor-arg")]
    assert "stun:turn.example.org:3478" in values
    assert "turn:turn.example.org:3478" in values
    assert "turns:turn.example.org:443?transport=tcp" in values
    assert values.count(TURN_SECRET) == 2


def test_web_properties_set_salt_dial_number_and_footer():
    text = model.web_properties(settings(), API_SECRET)
    lines = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert lines["securitySalt"] == API_SECRET
    assert lines["bigbluebutton.web.serverURL"] == "https://meet.example.org"
    assert lines["defaultDialAccessNumber"] == "+33912345678"
    assert "%%DIALNUM%%" in lines["defaultWelcomeMessageFooter"]
    assert "%%CONFNUM%%" in lines["defaultWelcomeMessageFooter"]


def test_web_properties_without_sip_have_no_dial_in():
    text = model.web_properties(settings(bbb_sip=None), API_SECRET)
    assert "defaultDialAccessNumber" not in text and "DIALNUM" not in text


def test_bbb_openings_sip_only_from_the_provider():
    openings = model.bbb_openings(settings())
    public = {(o.nft_port, o.protocol) for o in openings if not o.sources}
    assert public == {("80", "tcp"), ("443", "tcp"), ("16384-32768", "udp")}
    sip_openings = [o for o in openings if o.sources]
    assert {(o.nft_port, o.protocol) for o in sip_openings} == {("5060", "udp"), ("5060", "tcp"), ("16384-32768", "udp")}
    assert all(o.sources == ("203.0.113.0/24", "2001:db8::/32") for o in sip_openings)


def test_apply_config_passes_bash_syntax_check():
    text = model.apply_config(settings())
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    assert "enableUFWRules" not in text  # the firewall is assotic's nftables


JAMMY_LINES = {
    "rmescandon-yq": "deb [signed-by=/etc/apt/keyrings/rmescandon-yq.gpg] "
                     "https://ppa.launchpadcontent.net/rmescandon/yq/ubuntu jammy main",
    "bigbluebutton-support": "deb [signed-by=/etc/apt/keyrings/bigbluebutton-support.gpg] "
                             "https://ppa.launchpadcontent.net/bigbluebutton/support/ubuntu jammy main",
    "martin-uni-mainz-coturn": "deb [signed-by=/etc/apt/keyrings/martin-uni-mainz-coturn.gpg] "
                               "https://ppa.launchpadcontent.net/martin-uni-mainz/coturn/ubuntu jammy main",
    "nodesource": "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] "
                  "https://deb.nodesource.com/node_18.x nodistro main",
    "mongodb-org-6.0": "deb [arch=amd64,arm64 signed-by=/etc/apt/keyrings/mongodb-org-6.0.gpg] "
                       "https://repo.mongodb.org/apt/ubuntu jammy/mongodb-org/6.0 multiverse",
    "docker": "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] "
              "https://download.docker.com/linux/ubuntu jammy stable",
    "bigbluebutton": "deb [signed-by=/etc/apt/keyrings/bigbluebutton.gpg] "
                     "https://ubuntu.bigbluebutton.org/jammy-300 bigbluebutton-jammy main",
}
NOBLE_LINES = {
    "nodesource": "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] "
                  "https://deb.nodesource.com/node_22.x nodistro main",
    "docker": "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] "
              "https://download.docker.com/linux/ubuntu noble stable",
    "bigbluebutton": "deb [signed-by=/etc/apt/keyrings/bigbluebutton.gpg] "
                     "https://ubuntu.bigbluebutton.org/noble-400 bigbluebutton-noble main",
}


@pytest.mark.parametrize("version, lines", [("jammy-300", JAMMY_LINES), ("noble-400", NOBLE_LINES)])
def test_every_repository_of_bbb_install_renders_its_line(version, lines):
    sources = repositories.apt_sources(version)
    assert {s.name: s.line for s in sources} == lines
    assert sources[-1].name == "bigbluebutton"  # BBB's own last: it depends on the others
    for source in sources:
        assert source.list_path == f"/etc/apt/sources.list.d/{source.name}.list"
        assert source.key_url.startswith("https://")


def test_a_pinned_release_keeps_its_repository_path():
    bbb = repositories.apt_sources("jammy-300-3.0.10")[-1]
    assert bbb.url == "https://ubuntu.bigbluebutton.org/jammy-300-3.0.10"


def test_pins_are_the_published_ones_and_the_gaps_are_known():
    pins = {s.name: s.key_fingerprint for s in repositories.apt_sources("jammy-300")}
    assert pins["docker"] == "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
    assert pins["nodesource"] == "6F71F525282841EEDAF851B42F59B5F99B1BE0B4"
    assert pins["mongodb-org-6.0"] == "39BD841E4BE5FB195A65400E6A26B1AE64C3C388"
    assert pins["bigbluebutton-support"] == "2E1B01D0E95B94BC"  # long key id only
    assert {n for n, pin in pins.items() if pin is None} == {"bigbluebutton", "rmescandon-yq"}
    with pytest.raises(ValueError, match="40 or 16"):
        repositories.AptSource("x", "https://x", "s", "main", "https://x/key", "CC86BB64")


def colons(*primaries, subkey="1111111111111111111111111111111111111111"):
    out = []
    for fpr in primaries:
        out += ["pub:-:4096:1:" + fpr[-16:] + ":1:::-:::scESC::::::23::0:", f"fpr:::::::::{fpr}:",
                "uid:-::::1::X::Someone <x@example.org>::::::::::0:",
                "sub:-:4096:1:" + subkey[-16:] + ":1::::::e::::::23:", f"fpr:::::::::{subkey}:"]
    return "\n".join(out) + "\n"


DOCKER = next(s for s in repositories.apt_sources("jammy-300") if s.name == "docker")
SUPPORT_PPA = next(s for s in repositories.apt_sources("jammy-300") if s.name == "bigbluebutton-support")
BBB_SOURCE = repositories.apt_sources("jammy-300")[-1]


def test_the_pinned_key_is_accepted_subkeys_ignored():
    assert repositories.primary_fingerprints(colons(DOCKER.key_fingerprint)) == [DOCKER.key_fingerprint]
    assert repositories.key_refusal(DOCKER, colons(DOCKER.key_fingerprint)) is None
    repositories.check_key(DOCKER, colons(DOCKER.key_fingerprint))
    assert repositories.key_refusal(SUPPORT_PPA, colons("0" * 24 + "2E1B01D0E95B94BC")) is None


def test_a_key_whose_fingerprint_does_not_match_is_refused():
    other = "AAAA" * 10
    with pytest.raises(repositories.KeyRefused, match=f"docker: .* holds {other}, expected only 9DC8"):
        repositories.check_key(DOCKER, colons(other))
    # the right key plus a stranger slipped in: refused too
    assert "holds " + other in repositories.key_refusal(DOCKER, colons(DOCKER.key_fingerprint, other))
    assert repositories.key_refusal(SUPPORT_PPA, colons(other)) is not None
    assert "no OpenPGP key" in repositories.key_refusal(DOCKER, "")
    # no pin: any key is taken (an open risk in docs/bbb.md), but not an empty download
    assert repositories.key_refusal(BBB_SOURCE, colons(other)) is None
    assert repositories.key_refusal(BBB_SOURCE, "") is not None


@pytest.fixture(scope="module")
def throwaway_key(tmp_path_factory):
    """An armored public key made for the test, and its fingerprint."""
    if shutil.which("gpg") is None or shutil.which("curl") is None:
        pytest.skip("gpg or curl missing")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg = ["timeout", "60", "gpg", "--batch", "--no-tty", "--homedir", str(home)]
    try:
        subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key", "Test <t@example.org>",
                              "ed25519", "sign", "never"], check=True, capture_output=True)
        armored = subprocess.run(gpg + ["--armor", "--export"], check=True, capture_output=True).stdout
        listing = subprocess.run(gpg + ["--with-colons", "--list-keys"], check=True,
                                 capture_output=True, text=True).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
    key = home / "key.asc"
    key.write_bytes(armored)
    return key, repositories.primary_fingerprints(listing)[0]


@pytest.mark.parametrize("pinned", ["same", "other", "none"])
def test_the_key_install_command_checks_like_key_refusal(throwaway_key, tmp_path, monkeypatch, pinned):
    key, fpr = throwaway_key
    monkeypatch.setattr(repositories, "KEYRINGS", str(tmp_path))
    pin = {"same": fpr, "other": "AAAA" * 10, "none": None}[pinned]
    source = repositories.AptSource("test", "https://x", "s", "main", f"file://{key}", pin)
    result = subprocess.run(["sh", "-c", repositories.key_install_command(source)],
                            capture_output=True, text=True, timeout=120)
    keyring = tmp_path / "test.gpg"
    if pinned == "other":
        assert result.returncode != 0 and "key refused" in result.stderr
        assert not keyring.exists()
    else:
        assert result.returncode == 0, result.stderr
        assert keyring.read_bytes()[:1] != b"-"  # binary, as a .gpg keyring must be
        shown = subprocess.run(["gpg", "--show-keys", "--with-colons", str(keyring)],
                               capture_output=True, text=True, env={"GNUPGHOME": str(tmp_path)})
        assert repositories.primary_fingerprints(shown.stdout) == [fpr]


# -- requirements (prepare time) -----------------------------------------------------------------

UBUNTU_2204 = {"name": "Ubuntu", "major": 22, "release_meta": {"VERSION_ID": "22.04"}}
DEBIAN_12 = {"name": "Debian", "major": 12, "release_meta": {"VERSION_ID": "12"}}


def test_requirements_pass_on_jammy_4_cores_8_gb():
    assert model.requirement_problems(settings(), UBUNTU_2204, 4, 8_000_000) == []


def test_requirements_name_what_was_found_and_needed():
    problems = model.requirement_problems(settings(), DEBIAN_12, 2, 2_000_000)
    assert "needs Ubuntu 22.04; found Debian 12" in problems[0]
    assert "4 CPU cores; found 2" in problems[1]
    assert "4 GB of memory; found 1.9 GB" in problems[2]
    assert model.requirement_problems(settings(bbb_version="noble-400"), UBUNTU_2204, 8, 9_000_000)


def bbb_host(facts=None, **data) -> FakeHost:
    base = {"bbb_domain": "meet.example.org", "bbb_sip": SIP, **data}
    stub = {"LinuxDistribution": UBUNTU_2204, "Cpus": 4, "MemTotalKb": 8_000_000,
            "Directory": None, "File": None, "Sha1File": None, "Md5File": None, "Sha256File": None,
            "FindInFile": None, "FolderFiles": {}, "PathStats": {},  # a fresh host: nothing there
            "DebPackages": {}, "SystemdStatus": {}, "SystemdEnabled": {}, "Which": "/usr/bin/x",
            "ChangedSinceStamp": True,  # never reloaded by assotic: no stamp
            "AptSources": [], "DebArch": "amd64", "Command": None,
            "SharedSecretDigests": {},  # neither bbb-apps-akka.conf nor the webhooks' config yet
            **(facts or {})}
    return FakeHost("bbb-1", {"bbb": ["bbb-1"], "turn": ["turn-1"]}, base, stub,
                    other_hosts={"turn-1": {"turn_domain": "turn.example.org"}})


def test_check_requirements_raises_naming_the_host():
    from roles.bbb import check_requirements

    fake = bbb_host({"LinuxDistribution": DEBIAN_12, "Cpus": 2})
    with pytest.raises(BbbDataError, match=r"bbb-1: cannot run BigBlueButton jammy-300: .*found Debian 12.*found 2"):
        fake.plan(check_requirements)


class Secrets:
    values = {"bbb/bbb-1/api_secret": API_SECRET, "turn/static_auth_secret": TURN_SECRET,
              "sip/bbb-1/password": PASSWORD}

    def get(self, name):
        return self.values[name]


def plan_names(fake: FakeHost):
    from roles.bbb import bigbluebutton, turn_servers_of

    ops = fake.plan(lambda: bigbluebutton(Secrets(), turn_servers_of(fake.inventory)))
    return ops, [op.name.split(" | ", 1)[-1] for op in ops]


def test_first_deploy_plan_on_fake_ubuntu():
    ops, names = plan_names(bbb_host())
    expected_order = [
        *[step for source in repositories.apt_sources("jammy-300") for step in (
            f"Fetch and check the signing key of {source.name} into {source.keyring}",
            f"Render {source.list_path}")],
        "Update apt lists (a repository or its key changed)",
        "Install what bbb-install installs before BigBlueButton jammy-300",
        "Install BigBlueButton jammy-300",
        # bbb-install's install_ssl: a port-80 site, nginx reloaded, then certbot
        "Render /etc/nginx/sites-available/bigbluebutton",
        "Reload nginx for the ACME challenge",
        "Request a certificate for meet.example.org from https://acme-v02.api.letsencrypt.org/directory",
        "Render /etc/bigbluebutton/bbb-web.properties",
        "Render /etc/bigbluebutton/turn-stun-servers.xml",
        "Render /etc/bigbluebutton/bbb-conf/apply-config.sh",
        "Render /usr/share/bigbluebutton/nginx/default-fe.nginx",  # @bbb-fe of try_files
        "Render /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml",
        "Render /opt/freeswitch/conf/dialplan/public/sip.example-provider.fr.xml",
        # --setip once serverURL is https (bbb-install's last step), then the other components
        # on the API secret of bbb-web.properties
        "Set BigBlueButton's host name meet.example.org (bbb-conf --setip)",
        "Give bbb-apps-akka and bbb-webhooks the API secret of bbb-web.properties",
        "Restart BigBlueButton (bbb-conf --restart)",
    ]
    positions = [names.index(n) for n in expected_order]
    assert positions == sorted(positions)
    by_name = {n: op for n, op in zip(names, ops, strict=True)}
    gateway = by_name["Render /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml"]
    assert "chmod 640 /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml" in gateway.commands
    assert "chown root:daemon /opt/freeswitch/conf/sip_profiles/external/sip.example-provider.fr.xml" in gateway.commands
    props = by_name["Render /etc/bigbluebutton/bbb-web.properties"]
    assert "chown root:bigbluebutton /etc/bigbluebutton/bbb-web.properties" in props.commands
    for op in ops:  # secrets travel in uploaded files only, never in a command line
        for secret in (PASSWORD, API_SECRET, TURN_SECRET):
            assert all(secret not in c for c in op.commands), op.name


def test_first_deploy_checks_each_pinned_key_before_trusting_it():
    ops, names = plan_names(bbb_host())
    by_name = {n: op for n, op in zip(names, ops, strict=True)}
    fetch = by_name["Fetch and check the signing key of docker into /etc/apt/keyrings/docker.gpg"]
    assert "--show-keys --with-colons" in fetch.commands[0]
    assert "9DC858229FC7DD38854AE2D88D81803C0EBFCD88$" in fetch.commands[0]
    source = by_name["Render /etc/apt/sources.list.d/mongodb-org-6.0.list"]
    assert "apt-get install" not in " ".join(source.commands)
    install = by_name["Install what bbb-install installs before BigBlueButton jammy-300"]
    assert any("nodejs" in c and "mongodb-org" in c and "docker-ce" in c for c in install.commands)


def second_run_facts(version="jammy-300"):
    """A host where a first deploy went through: keyrings there, source files as rendered."""
    import hashlib

    lists = {s.list_path: (hashlib.sha1((s.line + "\n").encode()).hexdigest(), "root", "root", 0o644)
             for s in repositories.apt_sources(version)}
    return {("FolderFiles", (("folder", "/etc/apt/sources.list.d"),)): lists,
            ("Directory", (("path", "/etc/apt/keyrings"),)): {"mode": 755, "user": "root", "group": "root"},
            **{("File", (("path", s.keyring),)): {"mode": 644, "user": "root", "group": "root"}
               for s in repositories.apt_sources(version)}}


@pytest.mark.parametrize("version", ["jammy-300", "noble-400"])
def test_second_deploy_adds_and_refreshes_no_repository(version):
    facts = second_run_facts(version)
    if version == "noble-400":
        facts["LinuxDistribution"] = {"name": "Ubuntu", "major": 24, "release_meta": {"VERSION_ID": "24.04"}}
    ops, names = plan_names(bbb_host(facts, bbb_version=version))
    assert not [n for n in names if "signing key" in n or n.startswith("Render /etc/apt/")]
    by_name = {n: op for n, op in zip(names, ops, strict=True)}
    update = by_name["Update apt lists (a repository or its key changed)"]
    condition = update.global_arguments["_if"]
    assert callable(condition) and condition() is False  # apt update is skipped
    assert by_name["Create /etc/apt/keyrings"].commands == []


def test_second_deploy_plan_skips_setip_and_certificate():
    import datetime

    now = datetime.datetime.now()
    fake = bbb_host({"FindInFile": ["playback_host: meet.example.org"], "File": {"mode": 644, "mtime": now},
                     "Date": now})
    _, names = plan_names(fake)
    assert not any("--setip" in n or "Request a certificate" in n for n in names)


def test_firewall_openings_of_a_bbb_host():
    from roles.plan import firewall_openings

    comments = {o.comment for o in firewall_openings(bbb_host().host.data, groups=bbb_host().host.groups)}
    assert {"SSH", "BigBlueButton HTTPS", "BigBlueButton WebRTC media",
            "SIP from sip.example-provider.fr", "RTP from sip.example-provider.fr"} <= comments


def test_nextcloud_bbb_jobs_use_the_app_config_keys():
    import json

    jobs = [json.loads(j) for j in model.nextcloud_bbb_jobs("/opt/nc/occ", "/srv/x/config",
                                                            "https://meet.example.org/bigbluebutton/", API_SECRET)]
    assert [j["args"][:3] for j in jobs] == [["config:app:set", "bbb", "api.url"],
                                             ["config:app:set", "bbb", "api.secret"]]


# -- backups of a BBB host -------------------------------------------------------------------------


def test_bbb_host_backup_adds_freeswitch_and_recordings_only_when_asked():
    from roles import backup
    from roles.bbb import backup_paths

    assert backup_paths({}) == ("/opt/freeswitch/etc/freeswitch",)
    assert backup_paths({"bbb_backup_recordings": True})[-1] == "/var/bigbluebutton/published"
    with pytest.raises(BbbDataError, match="bbb_backup_recordings: True or False"):
        backup_paths({"bbb_backup_recordings": "yes"})
    data = {"backup_target": {"host": "backup-1", "address": "192.0.2.9"}}
    host_job, = backup.jobs_for([], "bbb-1", data, backup_paths({}))
    assert host_job.name == "host" and "/etc" in host_job.paths  # /etc/bigbluebutton with it
    assert "/opt/freeswitch/etc/freeswitch" in host_job.paths


def test_a_bbb_host_with_a_backup_target_gets_its_repository_secrets_and_account():
    from roles import backup_target

    target = {"backup_target": {"host": "backup-1", "address": "192.0.2.9"}}
    view = InventoryView("i.py", {"bbb": ["bbb-1"], "backup": ["backup-1"]}, {"bbb-1": target})
    names = preflight.platform_secret_names(view)
    assert "hosts/bbb-1/restic_password" in names and "hosts/bbb-1/backup_ssh_key" in names

    class Secrets:
        def get(self, name):
            return "0" * 64

    clients = backup_target.clients_of("backup-1", [("bbb-1", ["bbb"], target)], Secrets())
    assert [c.account for c in clients] == ["restic-bbb-1"]


# -- FreeSWITCH's CLI (make bbb-check, tests/verify/test_bbb.py) -----------------------------------

ESL_PASSWORD = "3f9a1c0d5e7b2a64"  # what bbb-conf --setip puts there: openssl rand -hex 8


def test_fs_cli_gets_the_esl_password_from_a_private_file_never_from_argv(tmp_path):
    """Run the real shell with stand-ins for xmlstarlet and fs_cli that record what they get."""
    esl = tmp_path / "event_socket.conf.xml"
    esl.write_text('<configuration name="event_socket.conf"><settings>'
                   f'<param name="password" value="{ESL_PASSWORD}"/></settings></configuration>\n')
    bin_dir, log = tmp_path / "bin", tmp_path / "fs_cli.log"
    bin_dir.mkdir()
    (bin_dir / "xmlstarlet").write_text(  # prints the value, as `sel -t -m ... -v @value` does
        "#!/bin/sh\nfor last; do :; done\nsed -n 's/.*name=\"password\" value=\"\\([^\"]*\\)\".*/\\1/p' \"$last\"\n")
    fake_fs_cli = bin_dir / "fs_cli"
    fake_fs_cli.write_text(
        f"#!/bin/sh\n{{ echo \"argv: $*\"; echo \"home: $HOME\"; stat -c 'mode: %a' \"$HOME/.fs_cli_conf\";"
        f" cat \"$HOME/.fs_cli_conf\"; }} > {log}\necho 'Status: REGED'\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    command = model.fs_cli_command("sofia status gateway x", esl_config=str(esl), fs_cli=str(fake_fs_cli))
    assert ESL_PASSWORD not in command
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "REGED" in result.stdout
    lines = log.read_text().splitlines()
    assert lines[0] == "argv: -x sofia status gateway x"  # no -p, no password
    assert lines[2] == "mode: 600"
    assert lines[3:] == ["[default]", "host => 127.0.0.1", f"password => {ESL_PASSWORD}"]
    home = lines[1].split(": ", 1)[1]
    assert home != str(tmp_path) and not Path(home).exists()  # removed after the call


def test_fs_cli_command_uses_bbb_s_binary_and_event_socket_file():
    command = model.fs_cli_command("status")
    assert "timeout 20 /opt/freeswitch/bin/fs_cli -x status" in command
    assert "/opt/freeswitch/etc/freeswitch/autoload_configs/event_socket.conf.xml" in command


def test_bbb_check_asks_the_gateway_through_bbb_s_fs_cli():
    from commands.bbb_check import host_commands

    wanted = shlex.quote(model.gateway_status_command(settings().sip))
    as_root = dict(host_commands(bbb_host(ssh_user="root").host))
    assert as_root["gateway sip.example-provider.fr"] == f"sh -c {wanted}"
    as_admin = dict(host_commands(bbb_host(ssh_user="admin").host))
    assert as_admin["gateway sip.example-provider.fr"] == f"sudo -n sh -c {wanted}"


def test_verify_asks_the_gateway_through_bbb_s_fs_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "verify_bbb", Path(__file__).resolve().parents[1] / "verify" / "test_bbb.py")
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)

    class Host:
        def check_output(self, command):
            self.command = command
            return "Status: REGED"

    probe = Host()
    verify.test_gateway_is_registered(probe, settings())
    assert probe.command == "sh -c " + shlex.quote(model.gateway_status_command(settings().sip))


def properties(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_dial_in_footer_does_not_add_breaks_bbb_web_adds_itself():
    # bbb-web joins message and footer with "<br><br>" (ParamsProcessorUtil.processWelcomeMessage)
    footer = properties(model.web_properties(settings(), API_SECRET))["defaultWelcomeMessageFooter"]
    assert not footer.startswith("<br>"), footer
    assert footer.startswith("To join this meeting by phone")


def test_web_properties_hold_the_logout_url_bbb_conf_would_append():
    # Every bbb-conf run appends bigbluebutton.web.logoutURL=default when the key is missing:
    # without it, each restart would change our file and the next deploy would put it back.
    assert properties(model.web_properties(settings(), API_SECRET))["bigbluebutton.web.logoutURL"] == "default"


# -- the real-release plan: first install, a current host, a changed secret ------------------------


def rendered_files(secret: str = API_SECRET) -> dict[str, tuple[str, str, str]]:
    """path -> (content, group, mode) of every file the role renders on bbb-1 (jammy-300)."""
    s = BbbSettings.from_data("bbb-1", {"bbb_domain": "meet.example.org", "bbb_sip": SIP},
                              [TurnServer("turn.example.org")])
    return {
        model.WEB_PROPERTIES: (model.web_properties(s, secret), "bigbluebutton", "640"),
        model.TURN_XML: (model.turn_stun_servers(s, TURN_SECRET), "bigbluebutton", "640"),
        model.APPLY_CONFIG: (model.apply_config(s), "root", "755"),
        model.NGINX_SITE: (model.nginx_site(s), "root", "644"),
        model.DEFAULT_FE: (model.default_fe(), "root", "644"),
        model.gateway_path(s.sip): (model.sip_gateway(s.sip, PASSWORD), "daemon", "640"),
        model.dialplan_path(s.sip): (model.sip_dialplan(s.sip), "daemon", "640"),
    }


def current_host_facts(secret_on_host: str = API_SECRET) -> dict:
    """A host where the deploy of API_SECRET went through: every file, package, key, the
    certificate, --setip done, the other components on the same secret, no reload pending."""
    import datetime
    import hashlib

    facts = second_run_facts()
    folders: dict[str, dict] = {}
    for path, (content, group, mode) in rendered_files(secret_on_host).items():
        folder = path.rsplit("/", 1)[0]
        folders.setdefault(folder, {})[path] = (hashlib.sha1(content.encode()).hexdigest(),
                                                "root", group, int(mode, 8))
    for folder, entries in folders.items():
        facts[("FolderFiles", (("folder", folder),))] = entries
    packages = [*repositories.upstream_packages("jammy-300"), *model.PACKAGES]
    now = datetime.datetime.now()
    facts.update({
        "DebPackages": {name: ["1.0"] for name in packages},
        ("File", (("path", "/etc/letsencrypt/live/meet.example.org/fullchain.pem"),)):
            {"mode": 644, "user": "root", "group": "root", "mtime": now},
        "FindInFile": ['bbbWebAPI="https://meet.example.org/bigbluebutton/api"'],
        "SharedSecretDigests": {"akka": model.secret_digest(secret_on_host),
                                "webhooks": model.secret_digest(secret_on_host)},
        "ChangedSinceStamp": False,
    })
    return facts


def changing(ops) -> list[str]:
    """Names of the planned operations that would change the host (commands, and _if true)."""
    out = []
    for op in ops:
        condition = op.global_arguments.get("_if")
        conditions = condition if isinstance(condition, list) else [condition] if condition else []
        if op.commands and all(_would_run(c) for c in conditions):
            out.append(op.name.split(" | ", 1)[-1])
    return out


def _would_run(condition) -> bool:
    try:
        return bool(condition())
    except RuntimeError:  # follows an operation that runs in this deploy: it runs too
        return True


def no_secret_in(ops) -> None:
    for op in ops:
        for secret in (PASSWORD, API_SECRET, TURN_SECRET, NEW_SECRET):
            assert all(secret not in c for c in op.commands), (op.name, secret)


NEW_SECRET = "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2H1g0F9e"


def test_a_current_host_plans_no_change():
    ops, _ = plan_names(bbb_host(current_host_facts()))
    assert changing(ops) == []
    no_secret_in(ops)


def test_a_changed_api_secret_is_written_and_shared_without_setip():
    fake = bbb_host(current_host_facts(secret_on_host=NEW_SECRET))  # the store now says API_SECRET
    ops, _ = plan_names(fake)
    assert changing(ops) == ["Render /etc/bigbluebutton/bbb-web.properties",
                             "Give bbb-apps-akka and bbb-webhooks the API secret of bbb-web.properties",
                             "Restart BigBlueButton (bbb-conf --restart)"]
    no_secret_in(ops)


def test_a_component_left_on_the_old_secret_is_put_on_the_new_one():
    facts = current_host_facts()
    facts["SharedSecretDigests"] = {"akka": model.secret_digest(API_SECRET),
                                    "webhooks": model.secret_digest("the-old-one-0123456789")}
    ops, _ = plan_names(bbb_host(facts))
    assert changing(ops) == ["Give bbb-apps-akka and bbb-webhooks the API secret of bbb-web.properties",
                             "Restart BigBlueButton (bbb-conf --restart)"]


def test_a_first_install_plans_the_whole_path_without_secrets():
    ops, names = plan_names(bbb_host())
    assert "Set BigBlueButton's host name meet.example.org (bbb-conf --setip)" in changing(ops)
    sites = [op for op, n in zip(ops, names, strict=True) if n == "Render /etc/nginx/sites-available/bigbluebutton"]
    assert len(sites) == 2  # port 80 for certbot, then the whole site
    setip = next(op for op, n in zip(ops, names, strict=True) if "--setip" in n)
    assert setip.commands == ["bbb-conf --setip meet.example.org"]
    no_secret_in(ops)


def test_the_site_before_the_certificate_has_no_https_server():
    http_only = model.nginx_site(settings(), https=False)
    assert "listen 80;" in http_only and "/.well-known/acme-challenge/" in http_only
    assert "listen 443" not in http_only and "ssl_certificate" not in http_only
    full = model.nginx_site(settings())
    assert "listen 443 ssl http2;" in full and "try_files $uri @bbb-fe;" in full
    assert "location @bbb-fe {" in model.default_fe()


def test_the_secret_sync_writes_what_bbb_conf_setsecret_writes(tmp_path):
    web, akka, hooks = tmp_path / "bbb-web.properties", tmp_path / "akka.conf", tmp_path / "default.yml"
    web.write_text(f"bigbluebutton.web.serverURL=https://x\nsecuritySalt={API_SECRET}\n")
    akka.write_text('services {\n  bbbWebAPI = "https://x/bigbluebutton/api"\n  sharedSecret = "changeme"\n}\n')
    hooks.write_text("bbb:\n  serverDomain: x\n  sharedSecret: changeme\n  auth2_0: false\n")
    akka.chmod(0o640)
    command = model.secret_sync_command(str(web), str(akka), str(hooks))
    assert API_SECRET not in command
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert akka.read_text() == ('services {\n  bbbWebAPI = "https://x/bigbluebutton/api"\n'
                                f'  sharedSecret="{API_SECRET}"\n}}\n')
    assert hooks.read_text() == f"bbb:\n  serverDomain: x\n  sharedSecret: {API_SECRET}\n  auth2_0: false\n"
    assert oct(akka.stat().st_mode & 0o777) == "0o640"  # owner and mode kept
    assert not list(tmp_path.glob("*.assotic-new"))
    again = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and hooks.read_text().count(API_SECRET) == 1


def test_the_secret_digests_fact_reads_both_files(tmp_path):
    from roles.bbb.facts import SharedSecretDigests

    akka, hooks = tmp_path / "akka.conf", tmp_path / "default.yml"
    akka.write_text(f'  sharedSecret = "{API_SECRET}"\n')
    hooks.write_text("bbb:\n  sharedSecret: other\n")
    command = SharedSecretDigests().command(akka=str(akka), webhooks=str(hooks))
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30).stdout
    assert SharedSecretDigests().process(output.splitlines()) == {
        "akka": model.secret_digest(API_SECRET), "webhooks": model.secret_digest("other")}
    hooks.unlink()
    output = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30).stdout
    assert set(SharedSecretDigests().process(output.splitlines())) == {"akka"}


def test_apply_config_sets_what_install_ssl_sets(tmp_path):
    """Run apply-config.sh in a folder, with stand-ins for xmlstarlet, yq and chown."""
    root = tmp_path / "root"
    (root / "etc/bigbluebutton/bbb-conf").mkdir(parents=True)
    (root / "etc/bigbluebutton/bbb-conf/apply-lib.sh").write_text("")
    (root / "usr/share/bigbluebutton/nginx").mkdir(parents=True)
    sip_nginx = root / "usr/share/bigbluebutton/nginx/sip.nginx"
    sip_nginx.write_text("location /ws {\n  proxy_pass https://10.0.0.5:7443;\n}\n")
    (root / "opt/freeswitch/conf/sip_profiles/external").mkdir(parents=True)
    (root / "usr/local/bigbluebutton/core/scripts").mkdir(parents=True)
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("xmlstarlet", "yq", "chown"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {log}\n")
        (bin_dir / tool).chmod(0o755)
    script = tmp_path / "apply-config.sh"
    script.write_text(model.apply_config(settings(bbb_ip="203.0.113.7"), root=str(root)))
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "proxy_pass http://203.0.113.7:5066;" in sip_nginx.read_text()
    calls = log.read_text()
    ext = f"{root}/opt/freeswitch/conf/sip_profiles/external.xml"
    assert f"""xmlstarlet edit --inplace --update //param[@name="wss-binding"]/@value --value 203.0.113.7:7443 {ext}""" in calls
    assert f"""xmlstarlet edit --inplace --update //param[@name="ws-binding"]/@value --value 203.0.113.7:5066 {ext}""" in calls
    sfu = f"{root}/etc/bigbluebutton/bbb-webrtc-sfu/production.yml"
    for edit in ('.freeswitch.ip = "203.0.113.7"', '.freeswitch.sip_ip = "203.0.113.7"',
                 '.mediasoup.webrtc.listenIps[0].announcedIp = "203.0.113.7"',
                 '.mediasoup.plainRtp.listenIp.announcedIp = "203.0.113.7"'):
        assert f"yq e -i {edit} {sfu}" in calls
    assert f"yq e -i .public.media.sipjsHackViaWs = true {root}/etc/bigbluebutton/bbb-html5.yml" in calls
    assert f"chown bigbluebutton:bigbluebutton {sfu}" in calls
    assert oct((root / "etc/bigbluebutton/bbb-webrtc-sfu/production.yml").stat().st_mode & 0o777) == "0o640"


def test_bbb_ip_must_be_an_ipv4_address():
    with pytest.raises(BbbDataError, match="bbb-1.bbb_ip: an IPv4 address"):
        settings(bbb_ip="meet.example.org")
    assert "IP=$(ip -4 -o route get 192.0.2.1" in model.apply_config(settings())


# -- the Nextcloud app "bbb" against the pinned Nextcloud (make check) -----------------------------


def nc_tenant(slug="amap", nextcloud="web-2", bigbluebutton="bbb-1"):
    from types import SimpleNamespace

    apps = SimpleNamespace(nextcloud=SimpleNamespace(host=nextcloud) if nextcloud else None,
                           bigbluebutton=SimpleNamespace(host=bigbluebutton) if bigbluebutton else None)
    apps.enabled = lambda: {name: app for name, app in vars(apps).items()
                            if name != "enabled" and app is not None}
    return SimpleNamespace(slug=slug, apps=apps)


def pinned_nextcloud():
    from pathlib import Path as P

    # the pins of group_data/all.py, read without running the rest of it
    text = (P(__file__).resolve().parents[2] / "group_data" / "all.py").read_text()
    start = text.index("releases = {")
    end = text.index("\n}\n", start) + 3
    namespace: dict = {}
    exec(text[start:end], namespace)
    return namespace["releases"]["nextcloud"]


def test_the_app_bbb_refuses_the_debian_13_nextcloud_pin():
    pins = pinned_nextcloud()
    assert pins["12"]["version"] == "34.0.4" and pins["13"]["version"] == "35.0.1"
    problems = preflight.nextcloud_app_problems([("group_data/tenants/amap.yml", nc_tenant())], pins,
                                            {"web-2": "13"})
    assert [(p.file, p.field) for p in problems] == [("group_data/tenants/amap.yml", "apps.bigbluebutton")]
    assert "Nextcloud 33-34" in problems[0].expected and "gets Nextcloud 35.0.1" in problems[0].expected
    assert "web-2 (Debian 13)" in problems[0].expected
    # Debian 12's 34.0.4 is admitted; an undeclared host may get either pin: refused
    assert preflight.nextcloud_app_problems([("a.yml", nc_tenant())], pins, {"web-2": "12"}) == []
    assert len(preflight.nextcloud_app_problems([("a.yml", nc_tenant())], pins, {})) == 1
    # no BigBlueButton, or no Nextcloud: nothing to check
    assert preflight.nextcloud_app_problems([("a.yml", nc_tenant(bigbluebutton=None))], pins, {"web-2": "13"}) == []
    assert preflight.nextcloud_app_problems([("a.yml", nc_tenant(nextcloud=None))], pins, {}) == []


def test_preflight_stops_before_connecting_on_an_unsupported_pin(capsys):
    pins = {"nextcloud": pinned_nextcloud()}
    with pytest.raises(SystemExit) as stop:
        preflight.exit_with(preflight.pinned_release_problems(pins, [nc_tenant()], {"web-2": "13"}))
    assert stop.value.code == 2
    assert "amap.yml: apps.bigbluebutton:" in capsys.readouterr().err
    assert preflight.pinned_release_problems(pins, [nc_tenant()], {"web-2": "12"}) == []


# -- the Nextcloud app "bbb" of an association (roles/bbb.nextcloud_integration) -------------------

def integration_plan(url_fact, secret_fact):
    """Plan nextcloud_integration on web-1 for an association whose meetings are on bbb-1,
    with the two occ values Nextcloud answers now."""
    from types import SimpleNamespace

    from roles.bbb import nextcloud_integration
    from roles.nextcloud import instance, occ_prefix

    release = Artifact("nextcloud", "34.0.4", "nextcloud-34.0.4.tar.bz2", "https://x/nc.tar.bz2", "0" * 64)
    tenant = SimpleNamespace(slug="amap", apps=SimpleNamespace(bigbluebutton=SimpleNamespace(host="bbb-1")))
    occ = occ_prefix(instance(tenant), release)
    facts = {("OccValue", (("args", "config:app:get bbb api.url"), ("occ", occ))): url_fact,
             ("OccValue", (("args", "config:app:get bbb api.secret"), ("occ", occ))): secret_fact,
             "File": None, "Directory": None}  # the job files are new each time
    fake = FakeHost("web-1", {"web": ["web-1"], "bbb": ["bbb-1"]}, {}, facts,
                    other_hosts={"bbb-1": {"bbb_domain": "meet.example.org", "bbb_sip": SIP}})
    ops = fake.plan(lambda: nextcloud_integration(tenant, release, Secrets(), fake.inventory))
    return ops, instance(tenant)


def test_the_nextcloud_app_bbb_is_set_through_private_job_files_never_argv():
    ops, inst = integration_plan(None, None)  # a new association: the app has no settings yet
    names = [op.name.split(" | ", 1)[-1] for op in ops]
    assert names == [f"Upload the BigBlueButton settings job 0 of {inst.user} (0600)",
                     "Nextcloud amap: set app bbb setting 0 (occ config:app:set)",
                     f"Upload the BigBlueButton settings job 1 of {inst.user} (0600)",
                     "Nextcloud amap: set app bbb setting 1 (occ config:app:set)"]
    uploads = [op for op in ops if op.name.endswith("(0600)")]
    assert all(op.commands and "chmod 600" in " ".join(op.commands) for op in uploads)
    shells = [op.commands for op in ops if "occ config:app:set" in op.name]
    assert shells[1] == [f"runuser -u {inst.user} -- sh -c 'umask 0027 && unset TMPDIR && exec \"$@\"' sh /usr/bin/php "
                         f"-d apc.enable_cli=1 /opt/assotic/nextcloud-occ-secrets.php "
                         f"{inst.tmp_dir}/occ-bbb-1.json; rc=$?; rm -f {inst.tmp_dir}/occ-bbb-1.json; exit $rc"]
    every_command = " ".join(c for op in ops for c in op.commands)
    assert API_SECRET not in every_command


def test_the_nextcloud_app_bbb_already_set_plans_nothing():
    from roles.bbb.model import BbbSettings

    url = BbbSettings.from_data("bbb-1", {"bbb_domain": "meet.example.org", "bbb_sip": SIP}).url
    assert integration_plan(url, API_SECRET)[0] == []
    # Only the secret differs (rotated in the store): both settings are written again.
    assert len(integration_plan(url, "an-old-secret")[0]) == 4
