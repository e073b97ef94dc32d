"""One way to render the files under templates/: strict, so a missing value is an error.

`render("<role>/<file>.j2", <name>=context)` renders templates/<role>/<file>.j2 with one
context object under a name of its own (`nextcloud=`, `paheko=`, `standin=`), so its names
never collide with pyinfra operation arguments. Pure: the roles and their unit tests call it.

StrictUndefined: a misspelt variable fails the render (and its unit test) instead of
writing an empty value into a configuration file on a host.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2


def template_environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


# Every template of every role, under templates/<role>/.
TEMPLATES_ROOT = Path(__file__).resolve().parent.parent / "templates"


def php_literal(value: Any) -> str:
    """A Python value as a PHP literal: strings single-quoted (only \\ and ' are special there)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(php_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{php_literal(k)} => {php_literal(v)}" for k, v in value.items()) + "]"
    raise TypeError(f"no PHP literal for {type(value).__name__}")


_environment = template_environment(TEMPLATES_ROOT)
_environment.filters["php"] = php_literal
_environment.filters["json"] = lambda v: json.dumps(v, sort_keys=True)


def render(template: str, **context: Any) -> str:
    """Render templates/<template> with one named context object."""
    return _environment.get_template(template).render(**context)


def stable_minute(*parts: str) -> int:
    """A minute 0-59 derived from names, so daily jobs of tenants spread out but never move."""
    return int(hashlib.sha256("/".join(parts).encode()).hexdigest(), 16) % 60
