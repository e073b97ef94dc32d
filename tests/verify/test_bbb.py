"""BigBlueButton on the hosts of group bbb: services, ports, our files and their modes.

The lab has no bbb host (BBB needs Ubuntu and its own repository): these checks run
against a production inventory, `make verify INVENTORY=inventory/<name>.py`.
"""

from __future__ import annotations

import shlex

import pytest

from roles.bbb import model
from roles.bbb.model import BbbSettings

pytestmark = pytest.mark.hosts_in("bbb")


@pytest.fixture(scope="module")
def settings(pyinfra_host, data) -> BbbSettings:
    return BbbSettings.from_data(pyinfra_host.name, data)


@pytest.mark.parametrize("service", ["nginx", "freeswitch", "bbb-web", "bbb-html5", "redis-server"])
def test_bbb_services_run(host, service):
    assert host.service(service).is_running


def test_https_and_media_ports(host):
    assert host.socket("tcp://0.0.0.0:443").is_listening
    assert host.socket("tcp://0.0.0.0:80").is_listening


@pytest.mark.parametrize("path, group, mode", [
    (model.WEB_PROPERTIES, "bigbluebutton", 0o640),
    (model.TURN_XML, "bigbluebutton", 0o640),
    (model.APPLY_CONFIG, "root", 0o755),
])
def test_our_files_and_modes(host, path, group, mode):
    f = host.file(path)
    assert (f.user, f.group, f.mode) == ("root", group, mode)


def test_sip_files_are_not_world_readable(host, settings):
    if settings.sip is None:
        pytest.skip("no bbb_sip in host data")
    for path in (model.gateway_path(settings.sip), model.dialplan_path(settings.sip)):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", model.FREESWITCH_GROUP, 0o640), path


def test_the_api_secret_is_the_store_s(host, data, settings):
    text = host.file(model.WEB_PROPERTIES).content_string
    assert f"securitySalt={data.platform.secrets.get(settings.secret_name)}" in text.splitlines()


def test_gateway_is_registered(host, settings):
    if settings.sip is None:
        pytest.skip("no bbb_sip in host data")
    # BBB's fs_cli, with the ESL password bbb-conf --setip set (model.fs_cli_command).
    status = host.check_output("sh -c " + shlex.quote(model.gateway_status_command(settings.sip)))
    assert "REGED" in status
