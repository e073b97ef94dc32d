"""assotic/artifacts.py without any host: mirror, cache, URL, checksums, messages, guards.

The host side (one upload, one unpack) is tests/unit/test_releases.py."""

from __future__ import annotations

import ast
import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from assotic import artifacts
from assotic.artifacts import (
    Artifact,
    ArtifactError,
    ArtifactMissing,
    ChecksumMismatch,
    ReleaseSet,
    choose_release,
    needed_releases,
    pinned_artifact,
    require,
    resolve,
    resolve_releases,
)

CONTENT = b"pretend release tarball\n" * 100


def make_artifact(content: bytes = CONTENT, name: str = "paheko", version: str = "1.3.12",
                  url: str = "http://127.0.0.1:9/unreachable/paheko-1.3.12.tar.gz") -> Artifact:
    return Artifact(name=name, version=version, filename=Path(url).name, url=url,
                    sha256=hashlib.sha256(content).hexdigest())


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def mirror(tmp_path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    return folder


@pytest.fixture
def http_root(tmp_path):
    """A local http.server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def committed_releases() -> dict:
    """`releases` as written in group_data/all.py, read without running that file."""
    source = (Path(__file__).resolve().parents[2] / "group_data" / "all.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "releases":
            return ast.literal_eval(node.value)
    raise AssertionError("no `releases = {...}` in group_data/all.py")


# -- pins --------------------------------------------------------------------------------------


def test_pin_defaults_the_file_name_to_the_url_and_checks_the_sha256():
    a = artifacts.artifact_from_pin("paheko", {"version": "1.3.12", "url": "https://x.org/uv/p-1.tar.gz",
                                               "sha256": "A" * 64})
    assert a.filename == "p-1.tar.gz" and a.sha256 == "a" * 64
    assert a.install_dir == "/opt/assotic/paheko-1.3.12"
    assert a.remote_path == "/var/cache/assotic/artifacts/p-1.tar.gz"
    with pytest.raises(ValueError, match="64 lowercase hex"):
        artifacts.artifact_from_pin("paheko", {"version": "1", "url": "https://x/p", "sha256": "abc"})
    with pytest.raises(ValueError, match="unknown keys"):
        artifacts.artifact_from_pin("paheko", {"version": "1", "url": "https://x/p", "sha256": "a" * 64,
                                               "sha1": "x"})


def test_the_committed_pins_are_well_formed_and_say_where_their_checksum_comes_from():
    releases = committed_releases()
    for app in ("paheko", "mattermost"):
        assert pinned_artifact(releases, app).checksum_source
    for debian in ("12", "13"):
        nextcloud = pinned_artifact(releases, "nextcloud", debian)
        assert nextcloud.checksum_source and nextcloud.signature_url.endswith(".asc")
    # Newest major supporting each PHP: 34 on PHP 8.2 (Debian 12), 35 on PHP 8.4 (Debian 13).
    assert pinned_artifact(releases, "nextcloud", "12").version.startswith("34.")
    assert pinned_artifact(releases, "nextcloud", "13").version.startswith("35.")
    assert pinned_artifact(releases, "paheko").version.startswith("1.3.")


def test_nextcloud_without_a_pin_for_the_debian_release_is_an_error():
    releases = {"nextcloud": {"12": {"version": "34.0.4", "url": "https://x/n.tar.bz2", "sha256": "a" * 64}}}
    with pytest.raises(ArtifactError, match="Debian 14"):
        pinned_artifact(releases, "nextcloud", "14")


# -- resolution: mirror, cache, URL --------------------------------------------------------------


def test_missing_everywhere_names_app_version_file_places_and_the_fix(cache, mirror):
    a = make_artifact()
    found = resolve(a, mirror=str(mirror), cache_dir=cache, timeout=1)
    assert not found.available
    with pytest.raises(ArtifactMissing) as err:
        require(found)
    message = str(err.value)
    for expected in ("paheko", "1.3.12", "paheko-1.3.12.tar.gz", str(mirror / a.filename),
                     str(cache / a.filename), a.url, "ARTIFACTS_DIR", a.sha256):
        assert expected in message


def test_a_mirror_folder_is_used_and_copied_into_the_cache(cache, mirror):
    a = make_artifact()
    (mirror / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=str(mirror), cache_dir=cache, allow_download=False)
    assert found.path == cache / a.filename and found.path.read_bytes() == CONTENT
    assert "not checked" in found.signature or "no signature" in found.signature


def test_artifacts_dir_env_wins_over_data_mirror():
    assert artifacts.mirror_location("/data/mirror", {"ARTIFACTS_DIR": "/env/dir"}) == "/env/dir"
    assert artifacts.mirror_location("/data/mirror", {}) == "/data/mirror"
    assert artifacts.mirror_location(None, {}) is None


def test_the_cache_is_used_without_any_mirror_or_network(cache):
    a = make_artifact()
    cache.mkdir()
    (cache / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=None, cache_dir=cache, allow_download=False)
    assert found.available and found.path == cache / a.filename


def test_upstream_url_is_downloaded_verified_and_cached(cache, http_root):
    root, base = http_root
    (root / "paheko-1.3.12.tar.gz").write_bytes(CONTENT)
    a = make_artifact(url=f"{base}/paheko-1.3.12.tar.gz")
    found = resolve(a, cache_dir=cache, timeout=5)
    assert found.available and (cache / a.filename).read_bytes() == CONTENT
    # Second time: from the cache, even with the server gone.
    (root / "paheko-1.3.12.tar.gz").unlink()
    assert resolve(a, cache_dir=cache, timeout=5).available


def test_a_mirror_url_is_tried_first(cache, http_root):
    root, base = http_root
    (root / "paheko-1.3.12.tar.gz").write_bytes(CONTENT)
    a = make_artifact()  # its upstream URL is unreachable
    found = resolve(a, mirror=base, cache_dir=cache, timeout=5)
    assert found.available


def test_check_only_never_downloads(cache, http_root):
    root, base = http_root
    (root / "paheko-1.3.12.tar.gz").write_bytes(CONTENT)
    a = make_artifact(url=f"{base}/paheko-1.3.12.tar.gz")
    found = resolve(a, cache_dir=cache, allow_download=False)
    assert not found.available and not (cache / a.filename).exists()
    assert any("not tried" in place for place in found.looked)


# -- resolution: every place in order, and what `looked` says of each ---------------------------


def unreachable(place: str) -> str:
    """How `looked` begins for a place that could not be reached (the reason follows)."""
    return f"{place}: unreachable ("


def test_nothing_anywhere_lists_mirror_cache_and_upstream_in_that_order(cache):
    a = make_artifact()
    found = resolve(a, mirror=None, cache_dir=cache, timeout=1)
    assert found.looked[:2] == ("mirror: none set (ARTIFACTS_DIR or data artifacts_mirror)",
                                f"cache {cache / a.filename}: no such file")
    assert len(found.looked) == 3 and found.looked[2].startswith(unreachable(f"upstream {a.url}"))
    assert found.errors == () and found.signature == "" and found.path is None


def test_a_mirror_folder_without_the_file_falls_back_to_the_cache(cache, mirror):
    a = make_artifact()
    cache.mkdir()
    (cache / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=str(mirror), cache_dir=cache, allow_download=False)
    assert found.path == cache / a.filename
    assert found.looked == (f"mirror {mirror / a.filename}: no such file",)


def test_a_mirror_folder_hit_is_said_and_wins_over_the_cache(cache, mirror):
    a = make_artifact()
    (mirror / a.filename).write_bytes(CONTENT)
    cache.mkdir()
    (cache / a.filename).write_bytes(b"stale, replaced by the mirror's copy")
    found = resolve(a, mirror=str(mirror), cache_dir=cache, allow_download=False)
    assert found.path == cache / a.filename and found.path.read_bytes() == CONTENT
    assert found.looked == (f"mirror {mirror / a.filename}: found, sha256 ok",) and found.errors == ()
    assert (mirror / a.filename).read_bytes() == CONTENT  # copied, not moved


def test_a_mirror_folder_that_is_the_cache_itself_is_not_copied_onto_itself(cache):
    a = make_artifact()
    cache.mkdir()
    (cache / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=str(cache), cache_dir=cache, allow_download=False)
    assert found.path == cache / a.filename and found.path.read_bytes() == CONTENT
    assert found.looked == (f"mirror {cache / a.filename}: found, sha256 ok",)
    assert sorted(p.name for p in cache.iterdir()) == [a.filename]


def test_a_mirror_folder_that_cannot_be_copied_from_is_an_error_not_unreachable(tmp_path, mirror):
    a = make_artifact()
    (mirror / a.filename).write_bytes(CONTENT)
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.raises(OSError):
        resolve(a, mirror=str(mirror), cache_dir=not_a_folder, allow_download=False)


def test_a_mismatching_mirror_file_falls_back_to_a_good_cached_one(cache, mirror):
    a = make_artifact()
    (mirror / a.filename).write_bytes(b"tampered")
    cache.mkdir()
    (cache / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=str(mirror), cache_dir=cache, allow_download=False)
    assert found.path == cache / a.filename
    assert found.looked == (f"mirror {mirror / a.filename}: checksum mismatch (refused)",)
    assert len(found.errors) == 1 and str(mirror / a.filename) in found.errors[0]
    assert (mirror / (a.filename + ".rejected")).exists()


def test_an_unreachable_mirror_url_falls_back_to_the_cache(cache, http_root):
    _, base = http_root  # serves nothing: 404
    a = make_artifact(url="http://127.0.0.1:9/unreachable/paheko 1.3.12.tar.gz")
    cache.mkdir()
    (cache / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=base + "/", cache_dir=cache, timeout=5)
    assert found.path == cache / a.filename and found.errors == ()
    # The file name is quoted in the URL, and one slash joins them.
    assert len(found.looked) == 1
    assert found.looked[0].startswith(unreachable(f"mirror {base}/paheko%201.3.12.tar.gz"))


def test_a_mismatching_mirror_url_download_replaces_and_refuses_the_cached_copy(cache, http_root):
    root, base = http_root
    (root / "paheko-1.3.12.tar.gz").write_bytes(b"not what was pinned")
    a = make_artifact()  # its upstream URL is unreachable
    cache.mkdir()
    (cache / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=base, cache_dir=cache, timeout=1)
    assert not found.available
    assert found.looked[:2] == (f"mirror {base}/{a.filename}: checksum mismatch (refused)",
                                f"cache {cache / a.filename}: no such file")
    assert found.looked[2].startswith(unreachable(f"upstream {a.url}"))
    assert len(found.errors) == 1
    assert (cache / (a.filename + ".rejected")).read_bytes() == b"not what was pinned"


def test_a_mismatching_cached_file_is_refused_then_upstream_is_tried(cache, http_root):
    root, base = http_root
    (root / "paheko-1.3.12.tar.gz").write_bytes(CONTENT)
    a = make_artifact(url=f"{base}/paheko-1.3.12.tar.gz")
    cache.mkdir()
    (cache / a.filename).write_bytes(b"changed on disk")
    found = resolve(a, mirror=None, cache_dir=cache, timeout=5)
    assert found.path == cache / a.filename and found.path.read_bytes() == CONTENT
    assert found.looked == ("mirror: none set (ARTIFACTS_DIR or data artifacts_mirror)",
                            f"cache {cache / a.filename}: checksum mismatch (refused)")
    assert len(found.errors) == 1 and "changed on disk" not in found.errors[0]
    assert (cache / (a.filename + ".rejected")).read_bytes() == b"changed on disk"


def test_the_signature_is_checked_once_on_the_file_found(cache, mirror, monkeypatch):
    calls = []

    def check_signature(*args):
        calls.append(args)
        return "checked here"

    monkeypatch.setattr(artifacts, "check_signature", check_signature)
    a = make_artifact()
    (mirror / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=str(mirror), cache_dir=cache, allow_download=False, timeout=3,
                    signing_key="/keys/paheko.asc")
    assert found.signature == "checked here"
    assert calls == [(a, cache / a.filename, str(mirror), "/keys/paheko.asc", False, 3)]
    calls.clear()
    assert not resolve(make_artifact(b"elsewhere"), cache_dir=cache, allow_download=False).available
    assert calls == []  # nothing found: nothing to check


# -- checksum mismatch: refused, moved aside, never used ----------------------------------------


def test_a_mismatching_mirror_file_is_refused_moved_aside_and_never_cached(cache, mirror):
    a = make_artifact()
    bad = mirror / a.filename
    bad.write_bytes(b"tampered")
    found = resolve(a, mirror=str(mirror), cache_dir=cache, allow_download=False)
    assert not found.available
    assert not bad.exists() and (mirror / (a.filename + ".rejected")).exists()
    assert not (cache / a.filename).exists()
    text = found.missing_message()
    assert a.sha256 in text and hashlib.sha256(b"tampered").hexdigest() in text and str(bad) in text


def test_a_mismatching_cached_file_is_refused_even_when_it_was_fine_before(cache):
    a = make_artifact()
    cache.mkdir()
    (cache / a.filename).write_bytes(b"changed on disk")
    with pytest.raises(ChecksumMismatch) as err:
        artifacts.verified(cache / a.filename, a)
    assert "expected: sha256 " + a.sha256 in str(err.value)
    assert not (cache / a.filename).exists()


def test_a_mismatching_download_is_refused_and_not_kept(cache, http_root):
    root, base = http_root
    (root / "paheko-1.3.12.tar.gz").write_bytes(b"not what was pinned")
    a = make_artifact(url=f"{base}/paheko-1.3.12.tar.gz")
    found = resolve(a, cache_dir=cache, timeout=5)
    assert not found.available and not (cache / a.filename).exists()
    assert (cache / (a.filename + ".rejected")).exists()
    assert "checksum mismatch" in found.missing_message()


# -- signatures --------------------------------------------------------------------------------


def test_signature_not_checked_is_said_clearly(cache, mirror):
    a = Artifact(**{**make_artifact().__dict__, "signature_url": "http://127.0.0.1:9/x.asc"})
    (mirror / a.filename).write_bytes(CONTENT)
    found = resolve(a, mirror=str(mirror), cache_dir=cache, allow_download=False)
    assert found.signature.startswith("not checked: no signing key")


def test_gpg_verify_accepts_a_good_signature_and_refuses_a_bad_one(tmp_path):
    import shutil
    import subprocess

    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "release@example.org", "ed25519", "sign", "never"],
                   check=True, capture_output=True, timeout=60)
    key = tmp_path / "key.asc"
    key.write_bytes(subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True, timeout=60).stdout)
    release = tmp_path / "r.tar.gz"
    release.write_bytes(CONTENT)
    subprocess.run([*gpg, "--armor", "--detach-sign", str(release)], check=True, capture_output=True, timeout=60)
    # Key generation and signing started an agent for this keyring: stop it.
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, timeout=60)
    a = make_artifact()
    assert artifacts.gpg_verify(key, Path(str(release) + ".asc"), release, a).startswith("signature verified")
    release.write_bytes(CONTENT + b"x")
    with pytest.raises(ArtifactError, match="BAD"):
        artifacts.gpg_verify(key, Path(str(release) + ".asc"), release, a)


# -- which releases a deploy needs, and the policy ----------------------------------------------


def tenant(slug, **apps):
    enabled = {app: SimpleNamespace(host=host) for app, host in apps.items()}
    return SimpleNamespace(slug=slug, apps=SimpleNamespace(enabled=lambda: enabled))


RELEASES = {
    "nextcloud": {"12": {"version": "34.0.4", "url": "http://127.0.0.1:9/n34.tar.bz2", "sha256": "a" * 64},
                  "13": {"version": "35.0.1", "url": "http://127.0.0.1:9/n35.tar.bz2", "sha256": "b" * 64}},
    "paheko": {"version": "1.3.12", "url": "http://127.0.0.1:9/p.tar.gz", "sha256": "c" * 64},
    "mattermost": {"version": "11.1.1", "url": "http://127.0.0.1:9/m.tar.gz", "sha256": "d" * 64},
}


def test_needed_releases_follow_declared_debian_or_take_every_pin():
    tenants = [tenant("a", nextcloud="web-1", paheko="web-1", mattermost="web-1"),
               tenant("b", nextcloud="web-2")]
    assert needed_releases(tenants, RELEASES, {"web-1": "12", "web-2": None}) == [
        ("nextcloud", "12"), ("paheko", None), ("mattermost", None), ("nextcloud", "13")]


def test_a_shared_instance_without_teams_still_needs_its_release():
    """make bench's generated associations use no Mattermost, but group data's shared
    instance still runs on web-1: its release must be resolved (or become the stand-in)."""
    tenants = [tenant("a", paheko="web-1")]
    assert needed_releases(tenants, RELEASES, {"web-1": "12"}) == [("paheko", None)]
    assert needed_releases(tenants, RELEASES, {"web-1": "12"}, [("mattermost", "web-1")]) == [
        ("paheko", None), ("mattermost", None)]


def test_resolve_releases_then_choose_per_policy(tmp_path, capsys):
    release_set = resolve_releases([tenant("a", paheko="web-1")], RELEASES, {}, cache_dir=tmp_path,
                                   allow_download=False)
    assert not release_set.available("paheko")
    assert "paheko 1.3.12" in capsys.readouterr().err  # announced before connecting
    assert choose_release(release_set, "paheko", "12", "standin") == (None, None)
    with pytest.raises(ArtifactMissing, match="missing_release"):
        choose_release(release_set, "paheko", "12", "fail")
    with pytest.raises(ArtifactError, match="one of fail, standin"):
        choose_release(release_set, "paheko", "12", "skip")


def test_a_host_on_an_unresolved_debian_release_is_refused():
    release_set = ReleaseSet()
    with pytest.raises(ArtifactError, match="Debian 13"):
        choose_release(release_set, "nextcloud", "13", "standin", "web-2")


def test_local_override_is_announced(tmp_path, capsys):
    override = tmp_path / "pins.json"
    override.write_text(json.dumps({"paheko": {"version": "9.9", "url": "file:///x/p-9.9.tar.gz",
                                               "sha256": "e" * 64}}))
    pins = artifacts.apply_override("paheko", RELEASES["paheko"], {artifacts.OVERRIDE_ENV: str(override)})
    assert pins["version"] == "9.9"
    assert "local override" in capsys.readouterr().err
