"""No reload or restart is pending on the host (roles/remote_files.reload_after).

Each one writes a stamp in /var/lib/assotic/reloaded/ listing the files it covers, once it
has succeeded. A covered file newer than its stamp means the service may still run the old
file: a deploy was killed between the two, or someone edited the file by hand. The next
deploy runs the reload; this check names it meanwhile.
"""

from __future__ import annotations

from roles.remote_files import RELOAD_STAMPS

PENDING = (f'for stamp in {RELOAD_STAMPS}/*; do [ -f "$stamp" ] || continue; '
           'while IFS= read -r path; do [ -n "$path" ] || continue; '
           'find "$path" -maxdepth 1 -newer "$stamp" -printf "${stamp##*/}: %p\\n" 2>/dev/null; '
           'done < "$stamp"; done; true')  # a covered file may be gone (a removed pool)


def test_every_host_has_reload_stamps(host):
    # ssh, nftables, journald and fail2ban at least, on every host the base role deployed.
    names = host.check_output(f"ls {RELOAD_STAMPS}").split()
    assert {"ssh", "nftables", "systemd-journald", "fail2ban"} <= set(names), names


def test_no_reload_is_pending(host):
    pending = host.check_output(PENDING)
    assert pending == "", f"newer than the last reload (deploy again to apply them):\n{pending}"
