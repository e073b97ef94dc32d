"""roles/releases.py: one upload and one unpack of a release per host, planned without a host."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from fake_facts import FakeHost

from assotic import artifacts
from assotic.artifacts import Artifact
from roles import releases

CONTENT = b"pretend release tarball\n" * 100


def make_artifact() -> Artifact:
    url = "http://127.0.0.1:9/unreachable/paheko-1.3.12.tar.gz"
    return Artifact(name="paheko", version="1.3.12", filename=Path(url).name, url=url,
                    sha256=hashlib.sha256(CONTENT).hexdigest())


def test_unpack_command_checks_again_builds_aside_and_marks_last():
    a = make_artifact()
    steps = releases.unpack_command(a).split(" && ")
    assert steps[:2] == [f"exec 9> {releases.unpack_lock(a)}", "flock 9"]  # one unpack at a time
    assert steps[2].startswith(f"echo '{a.sha256}  {a.remote_path}' | sha256sum --check")
    assert steps[3] == f"rm -f {releases.unpacked_marker(a)}"
    assert steps[-2] == f"mv {a.install_dir}.partial {a.install_dir}"
    # Written last, next to the tree: Nextcloud's integrity check reports any extra file in it.
    assert steps[-1] == f"echo '{a.sha256}' > {releases.unpacked_marker(a)}"
    assert not releases.unpacked_marker(a).startswith(a.install_dir + "/")
    assert any(s.startswith("chown -R root:root") for s in steps)
    assert any("go-w" in s for s in steps)


def test_unpack_command_really_unpacks_once_into_a_read_only_tree(tmp_path, monkeypatch):
    """Run the generated shell against a real tarball in tmp_path (root paths swapped)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("chown root:root needs root")
    tarball = tmp_path / "paheko-1.3.12.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        data = b"<?php echo 1;\n"
        info = tarfile.TarInfo("paheko-1.3.12/www/index.php")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    # Artifact's paths come from assotic.artifacts, the marker's from roles.releases.
    monkeypatch.setattr(artifacts, "REMOTE_CACHE", str(tmp_path))
    for module in (artifacts, releases):
        monkeypatch.setattr(module, "OPT_ROOT", str(tmp_path / "opt"))
    a = Artifact("paheko", "1.3.12", tarball.name, "http://x/y", hashlib.sha256(tarball.read_bytes()).hexdigest())
    (tmp_path / "opt").mkdir()
    subprocess.run(["sh", "-c", releases.unpack_command(a)], check=True)
    tree = Path(a.install_dir)
    assert (tree / "www/index.php").read_bytes() == b"<?php echo 1;\n"
    assert Path(releases.unpacked_marker(a)).read_text().strip() == a.sha256
    assert sorted(p.name for p in tree.iterdir()) == ["www"]  # nothing of ours inside the tree
    assert oct((tree / "www/index.php").stat().st_mode & 0o777) == "0o644"


def release_facts(a: Artifact, unpacked: bool) -> dict:
    """What install_release asks the host: its two folders, the upload (already there, same
    checksum) and the unpack markers, new and old place."""
    return {
        ("Directory", (("path", artifacts.REMOTE_CACHE),)): {"mode": 700, "user": "root", "group": "root"},
        ("Directory", (("path", artifacts.OPT_ROOT),)): {"mode": 755, "user": "root", "group": "root"},
        ("File", (("path", a.remote_path),)): {"mode": 600, "user": "root", "group": "root"},
        ("Sha1File", (("path", a.remote_path),)): hashlib.sha1(CONTENT).hexdigest(),
        ("File", (("path", releases.unpacked_marker(a)),)): {"mode": 644} if unpacked else None,
        ("File", (("path", f"{a.install_dir}/{releases.OLD_UNPACKED_MARKER}"),)): None,
    }


def test_install_release_skips_the_unpack_when_the_marker_exists(monkeypatch, tmp_path):
    monkeypatch.setattr(releases, "_scheduled", {})
    a = make_artifact()
    local = tmp_path / a.filename
    local.write_bytes(CONTENT)
    unpack = f"Unpack {a.label} into {a.install_dir}"

    returned = []
    ops = FakeHost("web-1", {"web": ["web-1"]}, {}, release_facts(a, unpacked=True)).plan(
        lambda: returned.append(releases.install_release(a, local)))
    assert returned == [None]
    assert f"Upload {a.filename}" in [op.name for op in ops]
    assert unpack not in [op.name for op in ops]

    def two_tenants():
        returned.extend([releases.install_release(a, local), releases.install_release(a, local)])

    returned.clear()
    ops = FakeHost("web-2", {"web": ["web-2"]}, {}, release_facts(a, unpacked=False)).plan(two_tenants)
    # A second tenant on the same host in the same run: nothing scheduled twice.
    assert [op.name for op in ops].count(unpack) == 1
    assert returned[0] is not None and returned[1] is returned[0]
    assert [op.commands for op in ops if op.name == unpack] == [[releases.unpack_command(a)]]


def fifty_page_release(tmp_path, monkeypatch) -> Artifact:
    """A release of 50 files in tmp_path, the host's folders swapped for tmp_path ones."""
    if os.geteuid() != 0:
        pytest.skip("chown root:root needs root")
    tarball = tmp_path / "paheko-1.3.12.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for n in range(50):
            data = f"<?php echo {n};\n".encode()
            info = tarfile.TarInfo(f"paheko-1.3.12/www/page{n}.php")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(artifacts, "REMOTE_CACHE", str(tmp_path))
    for module in (artifacts, releases):
        monkeypatch.setattr(module, "OPT_ROOT", str(tmp_path / "opt"))
    (tmp_path / "opt").mkdir()
    return Artifact("paheko", "1.3.12", tarball.name, "http://x/y", hashlib.sha256(tarball.read_bytes()).hexdigest())


def with_tar(tmp_path, script: str) -> dict[str, str]:
    """An environment whose `tar` is this shell script (found first on PATH)."""
    fake = tmp_path / "bin" / "tar"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}


def assert_whole_tree(a: Artifact) -> None:
    tree = Path(a.install_dir)
    assert Path(releases.unpacked_marker(a)).read_text().strip() == a.sha256
    assert sorted(p.name for p in (tree / "www").iterdir()) == sorted(f"page{n}.php" for n in range(50))
    assert (tree / "www/page0.php").read_text() == "<?php echo 0;\n"
    assert not Path(f"{a.install_dir}.partial").exists()


def test_an_unpack_killed_halfway_leaves_no_marker_and_the_next_one_starts_afresh(tmp_path, monkeypatch):
    """A deploy killed during the unpack (tests/lab/test_interrupted_deploy.py, point 4): tar
    is stopped with SIGKILL after writing part of the tree. No marker may exist then (the next
    deploy decides from it, install_release), and the next unpack makes the whole tree."""
    a = fifty_page_release(tmp_path, monkeypatch)
    # A tar that writes one file, says so, and hangs: where the kill lands, every time.
    killed = subprocess.Popen(["sh", "-c", releases.unpack_command(a)], stdout=subprocess.PIPE, text=True,
                              env=with_tar(tmp_path, "while [ \"$1\" != -C ]; do shift; done\n"
                                           "mkdir -p \"$2/www\" && echo partial > \"$2/www/page0.php\""
                                           " && echo started && exec sleep 60"),
                              start_new_session=True)
    try:
        assert killed.stdout.readline().strip() == "started"
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=10)
    marker, tree = Path(releases.unpacked_marker(a)), Path(a.install_dir)
    assert not marker.exists() and not tree.exists()
    assert Path(f"{a.install_dir}.partial/www/page0.php").exists()  # the half-made tree, aside

    subprocess.run(["sh", "-c", releases.unpack_command(a)], check=True, timeout=60)
    assert_whole_tree(a)


def test_the_unpack_of_a_killed_deploy_still_running_and_the_next_one_take_turns(tmp_path, monkeypatch):
    """A killed deploy leaves its unpack running on the host (no tty: sshd sends it no SIGHUP,
    seen in the lab); the next deploy finds no marker yet and unpacks too. They must not share
    the folders: each would remove or move the other's `.partial` and one of them fail."""
    a = fifty_page_release(tmp_path, monkeypatch)
    orphan = subprocess.Popen(["sh", "-c", releases.unpack_command(a)], stdout=subprocess.PIPE, text=True,
                              env=with_tar(tmp_path, 'echo started; sleep 2; exec /bin/tar "$@"'))
    assert orphan.stdout.readline().strip() == "started"
    rerun = subprocess.run(["sh", "-c", releases.unpack_command(a)], capture_output=True, text=True, timeout=60)
    assert orphan.wait(timeout=60) == 0
    assert rerun.returncode == 0, rerun.stderr
    assert_whole_tree(a)
