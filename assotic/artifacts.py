"""Every upstream download goes through here: pinned version, pinned sha256, mirror, cache.

Releases (Nextcloud, Paheko, Mattermost) are pinned in data (group_data/all.py,
`releases`), each with the sha256 published for it. On the DEPLOY machine, before
any host is touched, each pinned file is looked for in this order:

1. a local mirror: the directory or URL in $ARTIFACTS_DIR, else data `artifacts_mirror`
   (for offline deploys: put the release files there);
2. the download cache, ~/.cache/assotic/artifacts/ (or $ASSOTIC_ARTIFACTS_CACHE);
3. the upstream URL (urllib, short timeout).

Whatever the source, the file is checked against the pinned sha256 before use. A file
whose checksum differs is never used: it is moved aside (`<file>.rejected`) and the
message gives the expected and actual sha256 and the path. A release found nowhere
is reported with the app, version, file name, every place looked at, and how to
provide it.

Hosts then get one uploaded copy each (/var/cache/assotic/artifacts/<file>, compared
by checksum, so a second deploy uploads nothing) and one read-only unpacked tree
(/opt/assotic/<app>-<version>/, root-owned), made once, behind a marker file: those
pyinfra steps are roles/releases.py's.

Everything here runs on the deploy machine only (files and HTTP, no pyinfra) and is
unit-tested in tests/unit/test_artifacts.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# On hosts (roles/releases.py uploads and unpacks there).
REMOTE_CACHE = "/var/cache/assotic/artifacts"
OPT_ROOT = "/opt/assotic"
# What to do when a pinned release cannot be found (data `missing_release`).
RELEASE_POLICIES = ("fail", "standin")

# Apps whose roles exist and therefore need their release now.
DEPLOYED_APPS = ("nextcloud", "paheko", "mattermost")

DOWNLOAD_TIMEOUT_S = 15  # per connection attempt; upstream is unreachable in some labs
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class ArtifactError(Exception):
    """A release cannot be used; the message says what to do."""


class ChecksumMismatch(ArtifactError):
    pass


class ArtifactMissing(ArtifactError):
    pass


@dataclass(frozen=True)
class Artifact:
    """One pinned upstream file."""

    name: str  # the app: nextcloud, paheko, mattermost
    version: str
    filename: str
    url: str
    sha256: str  # lowercase hex, as published
    signature_url: str | None = None
    checksum_source: str = ""  # where the pinned sha256 was read (for reviewers)

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"{self.name} {self.version}: sha256 must be 64 lowercase hex digits, "
                             f"got {self.sha256!r}")
        if "/" in self.filename or self.filename in ("", ".", ".."):
            raise ValueError(f"{self.name} {self.version}: bad file name {self.filename!r}")

    @property
    def label(self) -> str:
        return f"{self.name} {self.version} ({self.filename})"

    @property
    def install_dir(self) -> str:
        """Where hosts get the unpacked, read-only release."""
        return f"{OPT_ROOT}/{self.name}-{self.version}"

    @property
    def remote_path(self) -> str:
        return f"{REMOTE_CACHE}/{self.filename}"


def artifact_from_pin(app: str, pin: Mapping[str, Any]) -> Artifact:
    """An Artifact from one pin of data `releases` (file name defaults to the URL's)."""
    unknown = set(pin) - {"version", "url", "sha256", "filename", "signature_url", "checksum_source"}
    if unknown:
        raise ValueError(f"releases.{app}: unknown keys {sorted(unknown)}")
    missing = {"version", "url", "sha256"} - set(pin)
    if missing:
        raise ValueError(f"releases.{app}: missing {sorted(missing)}")
    filename = pin.get("filename") or Path(urllib.parse.urlparse(pin["url"]).path).name
    return Artifact(
        name=app,
        version=str(pin["version"]),
        filename=filename,
        url=pin["url"],
        sha256=str(pin["sha256"]).lower(),
        signature_url=pin.get("signature_url"),
        checksum_source=pin.get("checksum_source", ""),
    )


def is_per_debian(pins: Mapping[str, Any]) -> bool:
    """Nextcloud is pinned per Debian release ({"12": pin, "13": pin}); others have one pin."""
    return "version" not in pins


def pinned_artifact(releases: Mapping[str, Any], app: str, debian: str | None = None) -> Artifact:
    """The pinned release of `app` for a host of Debian `debian` ("12", "13")."""
    if app not in releases:
        raise ArtifactError(f"no release of {app} is pinned in data `releases`")
    pins = apply_override(app, releases[app])
    if not is_per_debian(pins):
        return artifact_from_pin(app, pins)
    if debian not in pins:
        raise ArtifactError(f"no release of {app} is pinned for Debian {debian} "
                            f"(pinned: Debian {', '.join(sorted(pins))}); add one to `releases`")
    return artifact_from_pin(app, pins[debian])


def release_keys(releases: Mapping[str, Any], app: str) -> list[str | None]:
    """The Debian releases an app is pinned for ([None] when one pin fits all)."""
    pins = apply_override(app, releases[app])
    return sorted(pins) if is_per_debian(pins) else [None]


# -- Local-only override, for a lab trying a hand-made release -----------------------------------

OVERRIDE_ENV = "ASSOTIC_RELEASES_OVERRIDE"


def apply_override(app: str, pins: Mapping[str, Any], env: Mapping[str, str] | None = None):
    """$ASSOTIC_RELEASES_OVERRIDE names a JSON file {app: pin} replacing the data's pins.

    Local and temporary by design (never committed): it lets a developer try a release
    built by hand. Every use is announced on stderr.
    """
    env = os.environ if env is None else env
    path = env.get(OVERRIDE_ENV)
    if not path:
        return pins
    overrides = json.loads(Path(path).read_text())
    if app not in overrides:
        return pins
    _notice(f"{OVERRIDE_ENV}={path}: {app} pinned to {overrides[app].get('version')!r} for this run "
            "only (local override, not from group_data)")
    return overrides[app]


# -- Per-instance pins, for `make update` ---------------------------------------------------------

INSTANCE_PINS_ENV = "ASSOTIC_INSTANCE_PINS"


def instance_key(slug: str, app: str) -> str:
    """How an app instance is named in per-instance pins and release markers: "<slug>/<app>"."""
    return f"{slug}/{app}"


def instance_pins(env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """$ASSOTIC_INSTANCE_PINS names a JSON file {"<slug>/<app>": pin} that holds these
    instances on these pins for one run, whatever data `releases` says.

    Written by commands/update.py (a 0600 file of its own, removed afterwards): an update
    deploys a whole host with `pyinfra --limit`, and this keeps every instance but the one
    being upgraded on the release it runs, and puts a previous release back on rollback.
    """
    env = os.environ if env is None else env
    path = env.get(INSTANCE_PINS_ENV)
    if not path:
        return {}
    pins = json.loads(Path(path).read_text())
    if not isinstance(pins, dict):
        raise ArtifactError(f"{INSTANCE_PINS_ENV}={path}: a JSON object {{\"<slug>/<app>\": pin}} expected")
    return pins


# -- Where to look -------------------------------------------------------------------------------


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("ASSOTIC_ARTIFACTS_CACHE"):
        return Path(env["ASSOTIC_ARTIFACTS_CACHE"]).expanduser()
    return Path("~/.cache/assotic/artifacts").expanduser()


def mirror_location(data_mirror: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """$ARTIFACTS_DIR wins over data `artifacts_mirror`: the operator's command line is the latest word."""
    env = os.environ if env is None else env
    return env.get("ARTIFACTS_DIR") or data_mirror or None


def _is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in ("http", "https", "file")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def reject(path: Path, artifact: Artifact, actual: str) -> ChecksumMismatch:
    """Move a file with the wrong checksum aside so that nothing ever uses it; explain."""
    aside = path.with_name(path.name + ".rejected")
    try:
        os.replace(path, aside)
        where = f"moved aside to {aside}"
    except OSError as err:  # a read-only mirror: refuse it all the same
        where = f"could not be moved aside ({err.strerror}); it is NOT used"
    return ChecksumMismatch(
        f"{artifact.label}: checksum mismatch, file refused.\n"
        f"  file:     {path} ({where})\n"
        f"  expected: sha256 {artifact.sha256} (pinned in data `releases`"
        + (f"; from {artifact.checksum_source}" if artifact.checksum_source else "") + ")\n"
        f"  got:      sha256 {actual}\n"
        "  A corrupt or tampered download, or a wrong pin. Get the file again from upstream and "
        "check the published checksum."
    )


def verified(path: Path, artifact: Artifact) -> Path:
    """`path` if its sha256 is the pinned one; else moved aside and ChecksumMismatch raised."""
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise reject(path, artifact, actual)
    return path


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch `url` into `dest` atomically (a .part file renamed when complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "assotic-deploy"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


@dataclass(frozen=True)
class Resolved:
    """The outcome of looking for one artifact on the deploy machine."""

    artifact: Artifact
    path: Path | None  # verified local file (in the cache), None when not found
    looked: tuple[str, ...] = ()  # every place tried, with what happened there
    signature: str = ""  # "verified ...", or why it was not checked
    errors: tuple[str, ...] = field(default=())  # checksum mismatches met on the way

    @property
    def available(self) -> bool:
        return self.path is not None

    def missing_message(self) -> str:
        a = self.artifact
        lines = [f"{a.label} is not available on this machine.",
                 f"  app: {a.name}, version: {a.version}, file: {a.filename}, sha256: {a.sha256}",
                 "  looked in:"]
        lines += [f"    - {place}" for place in self.looked]
        lines += [f"  {e}" for e in self.errors]
        lines += [
            "  to provide it: download it where the internet is reachable",
            f"    ({a.url}), check its sha256, and put it in a folder given as",
            "    ARTIFACTS_DIR=/that/folder (or data `artifacts_mirror`), then deploy again.",
        ]
        return "\n".join(lines)


def resolve(artifact: Artifact, mirror: str | None = None, cache_dir: Path | None = None,
            allow_download: bool = True, timeout: float = DOWNLOAD_TIMEOUT_S,
            signing_key: str | None = None) -> Resolved:
    """Find `artifact` (mirror, then cache, then upstream) and return it verified, in the cache."""
    cached = (cache_dir or default_cache_dir()) / artifact.filename
    looked: list[str] = []
    errors: list[str] = []
    for place in _places(artifact, mirror, cached, allow_download, timeout):
        if place.bring is None:
            looked.append(f"{place.name}: {place.why_not}")
            continue
        try:
            note = place.bring()
            if note:
                looked.append(f"{place.name}: {note}")
            path = verified(cached, artifact)
            signature = check_signature(artifact, path, mirror, signing_key, allow_download, timeout)
            return Resolved(artifact, path, tuple(looked), signature, tuple(errors))
        except ChecksumMismatch as err:
            errors.append(str(err))
            looked.append(f"{place.name}: checksum mismatch (refused)")
        except (OSError, urllib.error.URLError) as err:
            if not place.remote:
                raise
            looked.append(f"{place.name}: {_reason(err)}")
    return Resolved(artifact, None, tuple(looked), "", tuple(errors))


@dataclass(frozen=True)
class _Place:
    """One place resolve looks at: how Resolved.looked names it, and how to bring the file
    from there into the cache (returning a note for `looked`, or None), or why it is not tried."""

    name: str
    bring: Callable[[], str | None] | None = None
    why_not: str = ""
    remote: bool = False  # over the network: an OSError there means "unreachable", not a local fault


def _places(artifact: Artifact, mirror: str | None, cached: Path, allow_download: bool,
            timeout: float) -> Iterator[_Place]:
    """Where resolve looks, in order. Lazily: each place is looked at only once the one before
    has failed (a refused mirror download has moved the cached copy aside by then)."""
    # 1. The mirror: the operator said "use these files", so it is tried first.
    if not mirror:
        yield _Place("mirror", why_not="none set (ARTIFACTS_DIR or data artifacts_mirror)")
    elif _is_url(mirror):
        url = mirror.rstrip("/") + "/" + urllib.parse.quote(artifact.filename)
        yield _Place(f"mirror {url}", lambda: download(url, cached, timeout), remote=True)
    else:
        candidate = Path(mirror).expanduser() / artifact.filename
        if candidate.is_file():
            yield _Place(f"mirror {candidate}", lambda: _copy_into_cache(candidate, cached, artifact))
        else:
            yield _Place(f"mirror {candidate}", why_not="no such file")
    # 2. The cache: a file verified earlier (checked again: disks and people change files).
    if cached.is_file():
        yield _Place(f"cache {cached}", lambda: None)
    else:
        yield _Place(f"cache {cached}", why_not="no such file")
    # 3. Upstream.
    if allow_download:
        yield _Place(f"upstream {artifact.url}", lambda: download(artifact.url, cached, timeout),
                     remote=True)
    else:
        yield _Place(f"upstream {artifact.url}", why_not="not tried (check only)")


def _copy_into_cache(candidate: Path, cached: Path, artifact: Artifact) -> str:
    """Copy a mirror folder's file into the cache once its own sha256 is the pinned one: a bad
    file is moved aside in the mirror itself, and never copied."""
    verified(candidate, artifact)
    cached.parent.mkdir(parents=True, exist_ok=True)
    if candidate.resolve() != cached.resolve():  # the mirror folder may be the cache itself
        part = cached.with_name(cached.name + ".part")
        shutil.copyfile(candidate, part)
        os.replace(part, cached)
    return "found, sha256 ok"


def require(resolved: Resolved) -> Path:
    if resolved.path is None:
        raise ArtifactMissing(resolved.missing_message())
    return resolved.path


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
    return f"unreachable ({reason})"


# -- Signatures ------------------------------------------------------------------------------------


def check_signature(artifact: Artifact, path: Path, mirror: str | None, signing_key: str | None,
                    allow_download: bool, timeout: float) -> str:
    """Verify the upstream OpenPGP signature with `gpg --verify` when data gives the key file.

    Returns a one-line account ("verified ...", "not checked: ..."); raises ArtifactError
    when a signature is present and bad. The sha256 pin is checked in any case.
    """
    if not artifact.signature_url:
        return "not checked: upstream publishes no signature for this file"
    if not signing_key:
        return ("not checked: no signing key file in data `artifact_signing_keys` "
                "(the sha256 pin was checked)")
    signature = path.with_name(path.name + ".asc")
    if not signature.is_file() and mirror and not _is_url(mirror):
        local = Path(mirror).expanduser() / signature.name
        if local.is_file():
            shutil.copyfile(local, signature)
    if not signature.is_file() and allow_download:
        try:
            download(artifact.signature_url, signature, timeout)
        except (OSError, urllib.error.URLError) as err:
            return f"not checked: signature {artifact.signature_url} {_reason(err)}"
    if not signature.is_file():
        return f"not checked: no {signature.name} next to the file or in the mirror"
    return gpg_verify(Path(signing_key).expanduser(), signature, path, artifact)


GPG_TIMEOUT_S = 60


def gpg_verify(key_file: Path, signature: Path, path: Path, artifact: Artifact) -> str:
    """`gpg --verify` in a throw-away keyring holding only the data's key file."""
    if not key_file.is_file():
        raise ArtifactError(f"{artifact.label}: signing key file {key_file} not found "
                            "(data `artifact_signing_keys`)")
    with tempfile.TemporaryDirectory(prefix="assotic-gpg-") as home:
        base = ["gpg", "--batch", "--no-tty", "--homedir", home]
        # Bounded: a gpg waiting on an agent must not hang a deploy.
        subprocess.run([*base, "--import", str(key_file)], check=True, capture_output=True,
                       timeout=GPG_TIMEOUT_S)
        run = subprocess.run([*base, "--status-fd", "1", "--verify", str(signature), str(path)],
                             capture_output=True, text=True, timeout=GPG_TIMEOUT_S)
        # gpg may have started an agent for this throw-away keyring: leave nothing running.
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True,
                       timeout=GPG_TIMEOUT_S)
    valid = [line.split()[2] for line in run.stdout.splitlines() if line.startswith("[GNUPG:] VALIDSIG")]
    if run.returncode != 0 or not valid:
        raise ArtifactError(f"{artifact.label}: BAD or unverifiable signature {signature} "
                            f"with key {key_file}:\n{run.stderr.strip()}")
    return f"signature verified (key {valid[0]})"


# -- All the releases a deploy needs, resolved before any host is touched -----------------------


@dataclass
class ReleaseSet:
    """Resolved artifacts for every (app, Debian release) the tenants need."""

    resolved: dict[tuple[str, str | None], Resolved] = field(default_factory=dict)
    # "<slug>/<app>" -> the release that instance is held on for this run (instance_pins).
    by_instance: dict[str, Resolved] = field(default_factory=dict)

    def get(self, app: str, debian: str | None = None, instance: str | None = None) -> Resolved | None:
        if instance is not None and instance in self.by_instance:
            return self.by_instance[instance]
        return self.resolved.get((app, debian)) or self.resolved.get((app, None))

    def available(self, app: str, debian: str | None = None) -> bool:
        found = self.get(app, debian)
        return found is not None and found.available

    def missing(self) -> list[Resolved]:
        return [r for r in self.resolved.values() if not r.available]


def needed_releases(tenants: Iterable[Any], releases: Mapping[str, Any],
                    host_debian: Mapping[str, str | None],
                    instances: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str | None]]:
    """(app, Debian release) pairs to resolve, for the tenants' apps and for `instances`,
    (app, host) pairs deployed whatever the tenant files say (shared Mattermost instances
    of group data: one with no team yet still runs on its host).

    Nextcloud's pin depends on the host's Debian release, which is only known once
    connected. A host may say it in its data (`debian_release: "12"`); for hosts that do
    not, every pinned release of the app is resolved (two files at most, and the deploy
    then checks the host's real release against its data).
    """
    placements = [(app, placement.host) for tenant in tenants
                  for app, placement in tenant.apps.enabled().items()] + list(instances)
    needed: dict[tuple[str, str | None], None] = {}
    for app, host_name in placements:
        if app not in DEPLOYED_APPS or app not in releases:
            continue
        keys = release_keys(releases, app)
        declared = host_debian.get(host_name)
        if keys != [None] and declared is not None:
            keys = [declared]
        for key in keys:
            needed[(app, key)] = None
    return list(needed)


def resolve_releases(tenants: Iterable[Any], releases: Mapping[str, Any],
                     host_debian: Mapping[str, str | None] | None = None,
                     mirror: str | None = None, cache_dir: Path | None = None,
                     allow_download: bool = True, signing_keys: Mapping[str, str] | None = None,
                     timeout: float = DOWNLOAD_TIMEOUT_S, quiet: bool = False,
                     instances: Iterable[tuple[str, str]] = ()) -> ReleaseSet:
    """Resolve every release the tenants (and `instances`, see needed_releases) need, on the
    deploy machine, before connecting."""
    result = ReleaseSet()
    signing_keys = signing_keys or {}
    mirror = mirror_location(mirror)  # $ARTIFACTS_DIR wins over data `artifacts_mirror`
    for app, debian in needed_releases(list(tenants), releases, host_debian or {}, instances):
        try:
            artifact = pinned_artifact(releases, app, debian)
        except ArtifactError as err:
            raise ArtifactError(f"data `releases`: {err}") from None
        found = resolve(artifact, mirror, cache_dir, allow_download, timeout, signing_keys.get(app))
        result.resolved[(app, debian)] = found
        if quiet:
            continue
        if found.available:
            _notice(f"{artifact.label}: sha256 ok, {found.signature}")
        else:
            _notice(found.missing_message())
    for key, pin in instance_pins().items():
        app = key.split("/")[-1]
        artifact = artifact_from_pin(app, pin)
        found = resolve(artifact, mirror, cache_dir, allow_download, timeout, signing_keys.get(app))
        result.by_instance[key] = found
        if not quiet:
            _notice(f"{INSTANCE_PINS_ENV}: {key} held on {artifact.label} for this run"
                    + ("" if found.available else " (not available here)"))
    return result


def choose_release(release_set: ReleaseSet, app: str, debian: str | None, policy: str,
                   host_name: str = "this host",
                   instance: str | None = None) -> tuple[Artifact | None, Path | None]:
    """For one app on one host (Debian `debian`, from its facts): the release to install and
    its local file, or (None, None) for the stand-in. Raises when the policy says "fail".

    Called by deploy.py while it prepares operations: pyinfra executes none before every
    host's operations are prepared, so a failure here still leaves every host untouched.
    """
    policy = missing_release_policy(policy)
    found = release_set.get(app, debian, instance)
    if found is None:
        raise ArtifactError(
            f"{host_name} runs Debian {debian}, but no release of {app} was resolved for it "
            "before connecting: its data `debian_release` says otherwise, or `releases` has no "
            f"pin for Debian {debian}. Fix the inventory data or the pins.")
    if found.available:
        return found.artifact, found.path
    if policy == "standin":
        return None, None
    raise ArtifactMissing(found.missing_message() + "\n  (data `missing_release` is \"fail\": "
                          "nothing was deployed)")


def missing_release_policy(value: Any) -> str:
    if value not in RELEASE_POLICIES:
        raise ArtifactError(f"data `missing_release`: one of {', '.join(RELEASE_POLICIES)}; got {value!r}")
    return value


def _notice(message: str) -> None:
    print(f"assotic: artifacts: {message}", file=sys.stderr)


def host_debian_releases(inventory: Any) -> dict[str, str | None]:
    """host name -> `debian_release` from its inventory data ("12", "13"), None when unsaid."""
    out: dict[str, str | None] = {}
    for h in inventory:
        value = (inventory.get_host_data(h.name) or {}).get("debian_release")
        out[h.name] = None if value is None else str(value)
    return out
