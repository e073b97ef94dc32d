"""Facts read through `mmctl --local`, as an instance's user, and the team admins read from the
instance's database. Read-only: they change nothing.

Each answers empty when it cannot reach the server or its tables (a first deploy, before the
unit runs): the role then schedules every step, which run in order after the unit started.
"""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase


class MmctlJson(FactBase):
    """The JSON list an mmctl command prints with --json ([] when it cannot answer)."""

    def command(self, mmctl: str, args: str) -> str:
        # `mmctl` is the prefix built by roles.mattermost.mmctl_prefix (runuser, env, --local).
        return f"{mmctl} {args} --json 2>/dev/null || true"

    def process(self, output: list[str]):
        text = "\n".join(output).strip()
        start = text.find("[")
        try:
            value = json.loads(text[start:]) if start >= 0 else []
        except ValueError:
            return []
        return value if isinstance(value, list) else []


# Local mode serves no route that reads or changes a team member's roles (docs/mattermost.md),
# so who is a team admin is read from the instance's own database, as PostgreSQL's superuser
# over its local socket (peer authentication: no password anywhere). Columns as Mattermost's
# store writes them (server/channels/store/sqlstore/team_store.go); unquoted, PostgreSQL folds
# them to lower case.
TEAM_ADMINS_SQL = (
    "SELECT t.name, u.username, lower(u.email) FROM teammembers tm"
    " JOIN teams t ON t.id = tm.teamid JOIN users u ON u.id = tm.userid"
    " WHERE tm.deleteat = 0 AND tm.schemeadmin AND t.deleteat = 0 ORDER BY 1, 2"
)


class MattermostTeamAdmins(FactBase):
    """{team name: [username and e-mail of each team admin]}; {} before Mattermost created its
    tables (a first deploy): the role then promotes every declared admin."""

    def command(self, database: str) -> str:
        return (f"runuser -u postgres -- psql -XAtq -F '|' -d {shlex.quote(database)} "
                f"-c \"{TEAM_ADMINS_SQL}\" 2>/dev/null || true")

    def process(self, output: list[str]) -> dict[str, list[str]]:
        admins: dict[str, list[str]] = {}
        for line in output:
            fields = line.strip().split("|")
            if len(fields) == 3 and fields[0]:
                admins.setdefault(fields[0], []).extend(fields[1:])
        return admins
