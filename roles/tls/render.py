"""Pure rendering of every file the TLS role writes: no host access, unit-tested."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import model

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "tls"


@dataclass(frozen=True)
class TlsContext:
    """What the templates see as `tls`."""

    pebble_listen: str = model.PEBBLE_LISTEN
    pebble_management_listen: str = model.PEBBLE_MANAGEMENT_LISTEN
    pebble_cert: str = model.PEBBLE_CERT
    pebble_key: str = model.PEBBLE_KEY
    pebble_config: str = model.PEBBLE_CONFIG
    pebble_directory: str = model.PEBBLE_DIRECTORY
    pebble_unit: str = model.PEBBLE_UNIT
    pebble_reregister: str = model.PEBBLE_REREGISTER


_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(template_name: str) -> str:
    return _environment.get_template(template_name).render(tls=TlsContext())


def pebble_config() -> str:
    return render("pebble-config.json.j2")


def pebble_unit() -> str:
    return render("assotic-lab-pebble.service.j2")


def renewal_hook() -> str:
    return render("reload-nginx.j2")


def certbot_lab_drop_in() -> str:
    return render("certbot-assotic-lab-pebble.conf.j2")


def pebble_reregister_script() -> str:
    return render("assotic-lab-pebble-reregister.j2")
