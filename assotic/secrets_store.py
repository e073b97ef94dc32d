"""The encrypted secrets store: every password of every tenant, encrypted in git.

Design (docs/secrets.md explains it for the team):
- One master key, 32 random bytes, kept OUTSIDE git (default ~/.config/assotic/secrets.key).
  The file holds the key as one line of base64 so that it can be pasted into a
  password manager when it is shared with the other volunteers.
- HKDF derives independent sub-keys from it: one encrypts the entries, one the
  index, one only makes the public key id (so the id reveals nothing about the key).
- Each entry is AES-256-GCM encrypted with a fresh 96-bit nonce. The associated data
  binds the entry's name and origin, so moving a ciphertext to another name, or
  relabelling an operator secret as "generated", fails authentication.
- An encrypted index lists every (name, origin, nonce): deleting an entry, adding one,
  or putting back an older copy of one is detected, and reported by name.
- The store is pretty-printed JSON with sorted keys and one entry per secret, and
  unchanged entries keep their bytes, so `git diff` shows WHICH secret changed, never its value.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = "assotic-secrets/1"
KEY_BYTES = 32
ORIGINS = ("generated", "operator")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")
REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = "docs/secrets.md"


class SecretsError(Exception):
    """Any problem with the secrets store; the message tells a volunteer what to do."""


class MissingKeyError(SecretsError):
    def __init__(self, key_path: Path, store_path: Path | None = None):
        self.key_path = key_path
        msg = f"no secrets key at {display_path(key_path)}."
        if store_path is not None and store_path.exists():
            # The worst mistake here is creating a new key: it can never read this store.
            msg += (
                f"\nThe store {display_path(store_path)} already exists, so it is encrypted with the team's key."
                f"\nCopy the team's key to {display_path(key_path)} (ask another sysadmin, see {DOCS}),"
                f"\nor set ASSOTIC_SECRETS_KEY to where your copy is. Do NOT run `make secrets-init`:"
                f"\na new key cannot decrypt the existing secrets."
            )
        else:
            msg += (
                "\nTo start a new store, run `make secrets-init`."
                "\nIf the team already has a key, copy it there or set ASSOTIC_SECRETS_KEY to its path."
            )
        super().__init__(msg)


class WrongKeyError(SecretsError):
    def __init__(self, store_path: Path, store_key_id: str, key_path: Path, key_id: str):
        self.store_key_id, self.key_id = store_key_id, key_id
        super().__init__(
            f"{display_path(store_path)} was encrypted with the key whose id is {store_key_id},"
            f"\nbut the key at {display_path(key_path)} has id {key_id}: it is not the same key."
            f"\nUse the team's key (copy it to {display_path(key_path)} or set ASSOTIC_SECRETS_KEY), see {DOCS}."
        )


class TamperedStoreError(SecretsError):
    def __init__(self, store_path: Path, what: str, merge_hint: bool = False):
        self.store_path = store_path
        shown = display_path(store_path)
        hint = ("\nIf this comes from a git merge you have reviewed, accept it with:"
                " python -m commands secrets reseal") if merge_hint else ""
        super().__init__(
            f"{shown}: {what}"
            f"\nThe file was edited by hand, damaged, or mixed by a git merge. No secret was used."
            f"\nRestore a good version from git (`git log -p -- {shown}`, then"
            f"\n`git checkout <commit> -- {shown}`) and redo the changes since; see {DOCS}.{hint}"
        )


class UnknownSecretError(SecretsError):
    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else " `make secret-list` shows the names."
        super().__init__(f"no secret named {name!r} in the store.{hint}")


def display_path(path: Path) -> str:
    """A path as the operator would type it: relative to the current directory when inside it."""
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _env_path(var: str, default: Path) -> Path:
    # Relative paths (the lab uses .lab/...) are taken from the current directory at
    # call time and made absolute at once, so a later chdir cannot change their meaning.
    value = os.environ.get(var)
    return Path(value).expanduser().absolute() if value else default


def default_key_path() -> Path:
    return _env_path("ASSOTIC_SECRETS_KEY", Path.home() / ".config" / "assotic" / "secrets.key")


def default_store_path() -> Path:
    return _env_path("ASSOTIC_SECRETS_FILE", REPO_ROOT / "secrets" / "secrets.enc.json")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SecretsError(
            f"invalid secret name {name!r}: use lowercase letters, digits, '_', '.', '-',"
            " with '/' between parts, e.g. tenants/zerodechet/nextcloud/db_password"
        )
    return name


def create_key(path: Path) -> None:
    """Write a new random key, readable by its owner only from the first byte on."""
    path = Path(path)
    missing = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
    for d in reversed(missing):  # only the directories we create are set to 0700
        os.mkdir(d, 0o700)
    try:
        # O_EXCL: never overwrite a key, it may be the only copy that opens the store.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretsError(
            f"refusing to overwrite the existing key {display_path(path)}: it may be the only copy"
            " that decrypts your secrets. Move it away yourself if you really mean it."
        ) from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink()
        raise
    os.close(fd)


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise SecretsError(
            f"the key {display_path(path)} can be read by other users (mode {stat.filemode(mode)});"
            f" refusing to use it. Fix it with: chmod 600 {display_path(path)}"
        )
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretsError(
            f"{display_path(path)} is not an assotic secrets key (expected one line of base64 for"
            f" {KEY_BYTES} bytes). Was it truncated while copying? See {DOCS}."
        )
    return key


def _subkey(master: bytes, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"{FORMAT} {purpose}".encode())
    return hkdf.derive(master)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class SecretStore:
    """Decrypted values are never kept: get() decrypts one entry each time it is asked."""

    def __init__(self, path: Path, key_path: Path, master: bytes, doc: dict | None):
        self.path, self.key_path = path, key_path
        self._entry_aead = AESGCM(_subkey(master, "entry"))
        self._index_aead = AESGCM(_subkey(master, "index"))
        self.key_id = hashlib.sha256(_subkey(master, "key-id")).hexdigest()[:16]
        self._doc = doc
        # Raw entries as they are in the file, so that unchanged ones are written back as is.
        self._entries: dict[str, dict[str, str]] = dict(doc["entries"]) if doc else {}
        self._dirty = doc is None

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, store_path: Path | None = None, key_path: Path | None = None,
             *, check_index: bool = True) -> SecretStore:
        store_path = Path(store_path) if store_path else default_store_path()
        key_path = Path(key_path) if key_path else default_key_path()
        if not key_path.exists():
            raise MissingKeyError(key_path, store_path)
        store = cls(store_path, key_path, _read_key(key_path), _load(store_path))
        if store._doc is not None:
            store._verify(check_index)
        return store

    def _verify(self, check_index: bool) -> None:
        if self._doc["key_id"] != self.key_id:
            raise WrongKeyError(self.path, self._doc["key_id"], self.key_path, self.key_id)
        # Authenticate every entry now, so a deploy stops before touching any host.
        for name in self._entries:
            self._decrypt(name)
        if check_index:
            problems = self.index_differences()
            if problems:
                raise TamperedStoreError(self.path, "the entries do not match the index:\n  - "
                                         + "\n  - ".join(problems), merge_hint=True)

    def index_differences(self) -> list[str]:
        """What differs between the entries in the file and the index saved with them."""
        idx = self._doc["index"] if self._doc else None
        try:
            listed = json.loads(self._index_aead.decrypt(_unb64(idx["nonce"]), _unb64(idx["ciphertext"]),
                                                         self._index_aad()))
        except (InvalidTag, ValueError, KeyError, TypeError):
            return ["the index itself failed authentication"]
        listed = {name: (origin, nonce) for name, origin, nonce in listed}
        actual = {n: (e["origin"], e["nonce"]) for n, e in self._entries.items()}
        problems = [f"{n}: deleted from the file" for n in sorted(listed.keys() - actual.keys())]
        problems += [f"{n}: added since the index was written (by hand or by a git merge)"
                     for n in sorted(actual.keys() - listed.keys())]
        problems += [f"{n}: replaced by another copy (an older version?)"
                     for n in sorted(listed.keys() & actual.keys()) if listed[n] != actual[n]]
        return problems

    # -- reading -------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def origin(self, name: str) -> str:
        return self._entry(name)["origin"]

    def get(self, name: str) -> str:
        return self._decrypt(name)

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in dict.fromkeys(map(check_name, names)) if n not in self._entries]

    def __repr__(self) -> str:
        return f"<SecretStore {self.path} key_id={self.key_id} secrets={len(self._entries)}>"

    # -- changing (in memory until save()) ------------------------------------------

    def set(self, name: str, value: str, origin: str = "operator") -> None:
        check_name(name)
        if origin not in ORIGINS:
            raise SecretsError(f"origin must be one of {ORIGINS}, not {origin!r}")
        if not isinstance(value, str) or not value:
            raise SecretsError(f"refusing to store an empty value for {name}")
        nonce = secrets.token_bytes(12)  # random 96-bit nonce, never reused in practice
        ct = self._entry_aead.encrypt(nonce, value.encode("utf-8"), _entry_aad(name, origin))
        self._entries[name] = {"origin": origin, "nonce": _b64(nonce), "ciphertext": _b64(ct)}
        self._dirty = True

    def generate(self, name: str, nbytes: int = 32) -> str:
        if check_name(name) in self._entries:
            return self.get(name)  # generated once, then stable: hosts already use it
        value = secrets.token_urlsafe(nbytes)
        self.set(name, value, origin="generated")
        return value

    def rotate(self, name: str, nbytes: int | None = None) -> str:
        if self.origin(name) != "generated":
            raise SecretsError(
                f"{name} was given by an operator, so it cannot be generated again."
                f" To change it, run: make secret-set NAME={name}"
            )
        if nbytes is None:  # keep the strength of the current value (token_urlsafe: 4 chars per 3 bytes)
            nbytes = len(self.get(name)) * 3 // 4
        value = secrets.token_urlsafe(nbytes)
        self.set(name, value, origin="generated")
        return value

    def ensure_generated(self, names: Iterable[str]) -> list[str]:
        created = self.missing(names)
        for name in created:
            self.generate(name)
        return created

    def rekey(self, new_key_path: Path) -> SecretStore:
        """This store re-encrypted with a NEW key created at new_key_path; save() writes it."""
        new_key_path = Path(new_key_path)
        create_key(new_key_path)
        new = SecretStore(self.path, new_key_path, _read_key(new_key_path), None)
        for name in self.names():
            new.set(name, self.get(name), origin=self.origin(name))
        return new

    def reseal(self) -> None:
        """Make the index match the entries as they are now (after a reviewed git merge).

        Every entry was still authenticated with the key, so only deletions, additions and
        older copies are accepted here: the caller must show index_differences() first.
        """
        self._dirty = True

    def save(self) -> None:
        """Write atomically; nothing is written when nothing changed (no git diff)."""
        if not self._dirty and self.path.exists():
            return
        listed = [[n, e["origin"], e["nonce"]] for n, e in sorted(self._entries.items())]
        nonce = secrets.token_bytes(12)
        index_ct = self._index_aead.encrypt(nonce, json.dumps(listed).encode(), self._index_aad())
        doc = {
            "format": FORMAT,
            "key_id": self.key_id,
            "index": {"nonce": _b64(nonce), "ciphertext": _b64(index_ct)},
            "entries": self._entries,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # the file is encrypted and committed; mkstemp's 0600 is not needed
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._doc, self._dirty = doc, False

    # -- internals -----------------------------------------------------------------

    def _entry(self, name: str) -> dict[str, str]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownSecretError(name, self._entries) from None

    def _decrypt(self, name: str) -> str:
        e = self._entry(name)
        try:
            plain = self._entry_aead.decrypt(_unb64(e["nonce"]), _unb64(e["ciphertext"]),
                                             _entry_aad(name, e["origin"]))
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, KeyError, TypeError):
            raise TamperedStoreError(self.path, f"entry {name!r} failed authentication.") from None

    def _index_aad(self) -> bytes:
        return json.dumps([FORMAT, "index", self.key_id]).encode()


def _entry_aad(name: str, origin: str) -> bytes:
    # JSON list: unambiguous, so ("a", "b/c") and ("a/b", "c") can never collide.
    return json.dumps([FORMAT, "entry", name, origin]).encode()


def _load(path: Path) -> dict | None:
    """The parsed store, or None if there is no file yet (an empty store)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if re.search(r"^(<<<<<<<|>>>>>>>) ", text, re.M):
        raise SecretsError(
            f"{display_path(path)} contains git conflict markers. Either take one side"
            f" (`git checkout --ours {display_path(path)}` or `--theirs`) and redo the other side's"
            f" changes, or keep the entries of both sides and any one \"index\", then run"
            f" `python -m commands secrets reseal`; see {DOCS}."
        )
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise SecretsError(f"{display_path(path)} is not valid JSON ({e}); restore it from git, see {DOCS}.") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise SecretsError(f"{display_path(path)} is not an {FORMAT} store (its format is {found!r}).")
    if not isinstance(doc.get("entries"), dict) or not isinstance(doc.get("key_id"), str):
        raise TamperedStoreError(path, "the 'entries' or 'key_id' field is missing or malformed.")
    for name, entry in doc["entries"].items():
        if not NAME_RE.match(name) or not isinstance(entry, dict) or entry.get("origin") not in ORIGINS:
            raise TamperedStoreError(path, f"entry {name!r} is malformed.")
    return doc
