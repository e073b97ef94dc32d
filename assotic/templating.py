"""One way to render the files under templates/: strict, so a missing value is an error.

StrictUndefined: a misspelt variable fails the render (and its unit test) instead of
writing an empty value into a configuration file on a host.
"""

from __future__ import annotations

from pathlib import Path

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
