"""Facts roles/paheko reads on a host."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from assotic.needs import as_instance_user

# PRAGMA user_version is where Paheko keeps the version its database was made or upgraded for
# (include/lib/Paheko/DB.php, getVersion/setVersion).
_READ_VERSION = ('$db = new SQLite3($argv[1], SQLITE3_OPEN_READONLY); '
                 'echo (int) $db->querySingle("PRAGMA user_version");')


class PahekoSchemaVersion(FactBase):
    """The schema version of an instance's database (Paheko's integer encoding), None if absent.

    Read as the instance's user, so SQLite never leaves a root-owned -wal or -shm file beside it.
    Facts are read before any operation runs: on a new host neither that user nor PHP exists
    yet, and neither does the database, so the file is tested first, by the shell.
    """

    def command(self, user: str, db_file: str) -> str:
        read = shlex.join([*as_instance_user(user), "/usr/bin/php", "-r", _READ_VERSION, db_file])
        return f"if [ -e {shlex.quote(db_file)} ]; then {read}; else echo absent; fi"

    def process(self, output: list[str]):
        answer = " ".join(output).strip()
        if answer == "absent":
            return None
        if not answer.isdigit() or int(answer) == 0:
            raise ValueError(f"could not read the Paheko database version: {answer!r}")
        return int(answer)
