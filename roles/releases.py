"""roles/releases: put a resolved release on a host, one upload and one unpack per version.

assotic/artifacts.py finds and verifies each pinned release on the deploy machine; the app
roles (nextcloud, paheko, mattermost) then call `install_release` here with the local file.
Each host gets one uploaded copy (/var/cache/assotic/artifacts/<file>, compared by checksum,
so a second deploy uploads nothing) and one read-only unpacked tree
(/opt/assotic/<app>-<version>/, root-owned), made once, behind a marker file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from assotic.artifacts import OPT_ROOT, REMOTE_CACHE, Artifact

# Written last, NEXT TO the tree (/opt/assotic/.<app>-<version>.unpacked): its presence means the
# tree is complete. Never inside it: Nextcloud's integrity check (lib/private/IntegrityCheck/
# Checker.php) lists every file of its code root without a signature as EXTRA_FILE.
OLD_UNPACKED_MARKER = ".assotic-unpacked"  # where deploys before 2026-12 put it, inside the tree


def unpacked_marker(artifact: Artifact) -> str:
    return f"{OPT_ROOT}/.{artifact.name}-{artifact.version}.unpacked"


def unpack_lock(artifact: Artifact) -> str:
    return f"{OPT_ROOT}/.{artifact.name}-{artifact.version}.lock"


def unpack_command(artifact: Artifact) -> str:
    """Shell that unpacks the uploaded release into its read-only tree, atomically.

    The sha256 is checked again on the host (the upload could have been cut short),
    the tree is made in `<dir>.partial` and renamed at the end, with the marker file
    (outside the tree) written last: a half-made tree is never taken for a finished one.
    One unpack at a time per release (flock, held until the shell exits): a deploy killed
    during an unpack leaves it running on the host (no tty, so sshd sends it no SIGHUP), and
    the next deploy, which finds no marker yet, must not unpack into the same folders at once.
    """
    target = artifact.install_dir
    partial = f"{target}.partial"
    marker = unpacked_marker(artifact)
    return " && ".join([
        f"exec 9> {unpack_lock(artifact)}",
        "flock 9",
        f"echo '{artifact.sha256}  {artifact.remote_path}' | sha256sum --check --quiet",
        f"rm -f {marker}",
        f"rm -rf {partial} {target}",
        f"mkdir -p {partial}",
        # Release tarballs hold one top folder (nextcloud/, paheko-1.3.12/, mattermost/).
        f"tar -xf {artifact.remote_path} -C {partial} --strip-components=1 --no-same-owner",
        # Root-owned and read-only for everyone else: apps run as their own users.
        f"chown -R root:root {partial}",
        f"chmod -R u+rwX,go+rX,go-w {partial}",
        f"mv {partial} {target}",
        f"echo '{artifact.sha256}' > {marker}",
    ])


def install_release(artifact: Artifact, local_path: Path):
    """Upload one copy of the release to the host and unpack it once. Returns the unpack op.

    files.put compares checksums, so a second deploy uploads nothing; the unpack step is
    guarded by the marker file, so it runs once per version. A tree unpacked by an earlier
    deploy still holds the marker inside it: moved out, the tree is not unpacked again.
    """
    # Several tenants share one release on a host: schedule its steps once per run.
    key = (host.name, artifact.filename)
    if key in _scheduled:
        return _scheduled[key]
    _scheduled[key] = None
    files.directory(name=f"Create {REMOTE_CACHE}", path=REMOTE_CACHE, user="root", group="root",
                    mode="0700", present=True)
    files.directory(name=f"Create {OPT_ROOT}", path=OPT_ROOT, user="root", group="root",
                    mode="0755", present=True)
    files.put(name=f"Upload {artifact.filename}", src=str(local_path), dest=artifact.remote_path,
              user="root", group="root", mode="0600")
    marker = unpacked_marker(artifact)
    if host.get_fact(File, path=marker) is not None:
        return None
    old_marker = f"{artifact.install_dir}/{OLD_UNPACKED_MARKER}"
    if host.get_fact(File, path=old_marker) is not None:
        server.shell(name=f"Move the unpack marker of {artifact.label} out of its tree",
                     commands=[f"mv -f {old_marker} {marker}"])
        return None
    _scheduled[key] = server.shell(name=f"Unpack {artifact.label} into {artifact.install_dir}",
                                   commands=[unpack_command(artifact)])
    return _scheduled[key]


# (host name, file name) -> the unpack operation scheduled in this run (None: nothing to do).
_scheduled: dict[tuple[str, str], Any] = {}
