"""Rendering helpers shared by the PHP app roles (nextcloud, paheko, standin): pure, unit-tested.

Every template gets one context object under a name of its own (`nextcloud=`, `paheko=`,
`standin=`), so its names never collide with pyinfra operation arguments.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from assotic.templating import template_environment

TEMPLATES_ROOT = Path(__file__).resolve().parents[2] / "templates"


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
