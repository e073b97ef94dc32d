"""The encrypted secrets store: confidentiality, tamper detection, permissions, CLI."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from assotic.secrets_store import (
    MissingKeyError,
    SecretsError,
    SecretStore,
    TamperedStoreError,
    UnknownSecretError,
    WrongKeyError,
    create_key,
    default_key_path,
    default_store_path,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

DISTINCTIVE = "Zèbre-SIP-trunk-p4ssw0rd-7f3a9c"


@pytest.fixture
def paths(tmp_path, monkeypatch):
    key, store = tmp_path / "conf" / "secrets.key", tmp_path / "repo" / "secrets.enc.json"
    monkeypatch.setenv("ASSOTIC_SECRETS_KEY", str(key))
    monkeypatch.setenv("ASSOTIC_SECRETS_FILE", str(store))
    create_key(key)
    return key, store


def fill(*entries: tuple[str, str]) -> SecretStore:
    store = SecretStore.open()
    for name, value in entries:
        store.set(name, value)
    store.save()
    return store


def edit(store_path: Path, change) -> None:
    doc = json.loads(store_path.read_text())
    change(doc)
    store_path.write_text(json.dumps(doc, indent=2, sort_keys=True))


# -- confidentiality and keys ------------------------------------------------------


def test_store_file_contains_no_plaintext(paths):
    _, store_path = paths
    store = fill(("sip/trunk/password", DISTINCTIVE))
    raw = store_path.read_bytes()
    assert DISTINCTIVE.encode("utf-8") not in raw
    assert DISTINCTIVE not in raw.decode("utf-8")
    assert DISTINCTIVE not in repr(store)
    assert SecretStore.open().get("sip/trunk/password") == DISTINCTIVE


def test_key_id_is_not_the_key(paths):
    key_path, store_path = paths
    fill(("a", "x"))
    key_text = key_path.read_text().strip()
    doc = json.loads(store_path.read_text())
    assert len(doc["key_id"]) == 16 and doc["key_id"] not in key_text
    assert key_text not in store_path.read_text()


def test_key_file_is_owner_only_and_never_overwritten(paths):
    key_path, _ = paths
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    before = key_path.read_bytes()
    with pytest.raises(SecretsError, match="refusing to overwrite"):
        create_key(key_path)
    assert key_path.read_bytes() == before


def test_group_readable_key_is_refused(paths):
    key_path, _ = paths
    key_path.chmod(0o640)
    with pytest.raises(SecretsError, match=f"chmod 600 {key_path}"):
        SecretStore.open()


def test_missing_key_says_how_to_create_one(paths, tmp_path):
    missing = tmp_path / "nowhere" / "secrets.key"
    with pytest.raises(MissingKeyError) as err:
        SecretStore.open(key_path=missing)
    assert str(missing) in str(err.value) and "make secrets-init" in str(err.value)


def test_missing_key_with_existing_store_says_copy_the_team_key(paths, tmp_path):
    fill(("a", "x"))
    with pytest.raises(MissingKeyError) as err:
        SecretStore.open(key_path=tmp_path / "other.key")
    assert "team's key" in str(err.value) and "Do NOT run `make secrets-init`" in str(err.value)


def test_wrong_key_shows_both_key_ids(paths, tmp_path):
    fill(("a", "x"))
    other = tmp_path / "other.key"
    create_key(other)
    right_id = SecretStore.open().key_id
    with pytest.raises(WrongKeyError) as err:
        SecretStore.open(key_path=other)
    wrong_id = err.value.key_id
    assert right_id != wrong_id
    assert right_id in str(err.value) and wrong_id in str(err.value) and str(other) in str(err.value)


def test_default_paths_come_from_env_at_call_time(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASSOTIC_SECRETS_FILE", ".lab/secrets.enc.json")
    monkeypatch.setenv("ASSOTIC_SECRETS_KEY", ".lab/secrets.key")
    assert default_store_path() == tmp_path / ".lab" / "secrets.enc.json"
    assert default_key_path() == tmp_path / ".lab" / "secrets.key"
    monkeypatch.delenv("ASSOTIC_SECRETS_FILE")
    monkeypatch.delenv("ASSOTIC_SECRETS_KEY")
    assert default_store_path() == REPO_ROOT / "secrets" / "secrets.enc.json"
    assert default_key_path() == Path.home() / ".config" / "assotic" / "secrets.key"


# -- tamper detection --------------------------------------------------------------


def test_flipped_ciphertext_byte_names_the_entry(paths):
    _, store_path = paths
    fill(("smtp/password", "one"), ("backup/repo_password", "two"))

    def flip(doc):
        entry = doc["entries"]["smtp/password"]
        ct = bytearray(base64.b64decode(entry["ciphertext"]))
        ct[0] ^= 1
        entry["ciphertext"] = base64.b64encode(bytes(ct)).decode()

    edit(store_path, flip)
    with pytest.raises(TamperedStoreError, match="'smtp/password' failed authentication") as err:
        SecretStore.open()
    assert str(store_path) in str(err.value)


def test_swapped_ciphertexts_are_detected(paths):
    _, store_path = paths
    fill(("tenants/a/db_password", "aaa"), ("tenants/b/db_password", "bbb"))

    def swap(doc):
        e = doc["entries"]
        e["tenants/a/db_password"], e["tenants/b/db_password"] = e["tenants/b/db_password"], e["tenants/a/db_password"]

    edit(store_path, swap)
    with pytest.raises(TamperedStoreError, match="failed authentication"):
        SecretStore.open()


def test_relabelled_origin_is_detected(paths):
    _, store_path = paths
    fill(("smtp/password", "operator-given"))
    edit(store_path, lambda doc: doc["entries"]["smtp/password"].update(origin="generated"))
    with pytest.raises(TamperedStoreError, match="'smtp/password'"):
        SecretStore.open()


def test_deleted_entry_is_detected(paths):
    _, store_path = paths
    fill(("a", "1"), ("b", "2"))
    edit(store_path, lambda doc: doc["entries"].pop("b"))
    with pytest.raises(TamperedStoreError, match="b: deleted"):
        SecretStore.open()


def test_added_entry_and_older_copy_are_detected(paths):
    _, store_path = paths
    fill(("a", "1"))
    old = json.loads(store_path.read_text())
    fill(("a", "2"), ("b", "3"))
    new = json.loads(store_path.read_text())

    # New entries with the old index: "b" appears out of nowhere.
    edit(store_path, lambda doc: doc.update(index=old["index"]))
    with pytest.raises(TamperedStoreError, match="b: added"):
        SecretStore.open()

    # Current index, but "a" put back to its older (still validly encrypted) copy.
    edit(store_path, lambda doc: doc.update(index=new["index"], entries={**new["entries"], "a": old["entries"]["a"]}))
    with pytest.raises(TamperedStoreError, match="a: replaced by another copy"):
        SecretStore.open()


def test_reseal_accepts_a_reviewed_merge(paths):
    _, store_path = paths
    fill(("a", "1"), ("b", "2"))
    edit(store_path, lambda doc: doc["entries"].pop("b"))
    store = SecretStore.open(check_index=False)
    assert store.index_differences() == ["b: deleted from the file"]
    store.reseal()
    store.save()
    assert SecretStore.open().names() == ["a"]


# -- behaviour -----------------------------------------------------------------------


def test_generate_is_stable_across_save_and_open(paths):
    store = SecretStore.open()
    value = store.generate("tenants/zerodechet/nextcloud/db_password")
    assert len(value) >= 43  # 32 bytes of token_urlsafe
    store.save()
    again = SecretStore.open()
    assert again.generate("tenants/zerodechet/nextcloud/db_password") == value
    assert again.origin("tenants/zerodechet/nextcloud/db_password") == "generated"


def test_ensure_generated_and_missing(paths):
    store = fill(("smtp/password", "given"))
    wanted = ["smtp/password", "tenants/amap/paheko/admin_password", "tenants/amap/paheko/admin_password"]
    assert store.missing(wanted) == ["tenants/amap/paheko/admin_password"]
    assert store.ensure_generated(wanted) == ["tenants/amap/paheko/admin_password"]
    assert store.ensure_generated(wanted) == []
    assert store.get("smtp/password") == "given"


def test_rotate_changes_generated_and_refuses_operator(paths):
    store = SecretStore.open()
    old = store.generate("backup/repo_password")
    store.set("smtp/password", "given")
    new = store.rotate("backup/repo_password")
    assert new != old and len(new) == len(old) and store.get("backup/repo_password") == new
    with pytest.raises(SecretsError, match="make secret-set NAME=smtp/password"):
        store.rotate("smtp/password")
    assert store.get("smtp/password") == "given"


def test_save_keeps_unchanged_entries_byte_identical(paths):
    _, store_path = paths
    fill(("a", "1"), ("b", "2"))
    before = json.loads(store_path.read_text())
    raw_before = store_path.read_bytes()
    SecretStore.open().save()  # nothing changed: nothing rewritten
    assert store_path.read_bytes() == raw_before
    fill(("b", "changed"))
    after = json.loads(store_path.read_text())
    assert after["entries"]["a"] == before["entries"]["a"]
    assert after["entries"]["b"] != before["entries"]["b"]
    changed = set(raw_before.decode().splitlines()) ^ set(store_path.read_text().splitlines())
    assert all(line.strip().startswith(('"ciphertext"', '"nonce"')) for line in changed)
    assert len(changed) == 2 * 2 * 2  # b and the index: nonce and ciphertext, old and new lines


def test_unknown_and_invalid_names(paths):
    store = fill(("smtp/password", "x"))
    with pytest.raises(UnknownSecretError, match="smtp/password"):
        store.get("smtp/pasword")
    for bad in ["", "Smtp/password", "/smtp", "smtp//password", "smtp/", "../key", "a b"]:
        with pytest.raises(SecretsError, match="invalid secret name"):
            store.set(bad, "x")
    with pytest.raises(SecretsError, match="empty"):
        store.set("smtp/password", "")


# -- command line ------------------------------------------------------------------


def cli(*args: str, input: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "commands", "secrets", *args],
        input=input, capture_output=True, text=True, cwd=REPO_ROOT, env=os.environ.copy(), timeout=60,
    )


def test_cli_set_reads_stdin_then_show(paths):
    _, store_path = paths
    result = cli("set", "sip/trunk/password", input=DISTINCTIVE + "\n")
    assert result.returncode == 0, result.stderr
    assert DISTINCTIVE not in result.stdout + result.stderr
    assert DISTINCTIVE.encode() not in store_path.read_bytes()
    shown = cli("show", "sip/trunk/password")
    assert shown.returncode == 0 and shown.stdout == DISTINCTIVE + "\n"  # exactly one newline stripped
    listed = cli("list")
    assert "sip/trunk/password" in listed.stdout and "operator" in listed.stdout
    assert DISTINCTIVE not in listed.stdout


def test_cli_refuses_value_on_command_line_and_empty_value(paths):
    _, store_path = paths
    result = cli("set", "smtp/password", "hunter2")
    assert result.returncode == 2 and "never accepted on the command" in result.stderr
    empty = cli("set", "smtp/password", input="\n")
    assert empty.returncode == 2 and "empty value" in empty.stderr
    assert not store_path.exists()


def test_cli_errors_exit_2_without_traceback(paths, tmp_path, monkeypatch):
    cli("set", "smtp/password", input="x")
    unknown = cli("show", "smtp/pasword")
    assert unknown.returncode == 2 and "Did you mean: smtp/password" in unknown.stderr
    monkeypatch.setenv("ASSOTIC_SECRETS_KEY", str(tmp_path / "absent.key"))
    missing = cli("show", "smtp/password")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "make secrets-init" in missing.stderr and missing.stdout == ""
    # init must not create a new key that could never read the existing store.
    refused = cli("init")
    assert refused.returncode == 2 and not (tmp_path / "absent.key").exists()


def test_cli_init_creates_key_and_store(tmp_path, monkeypatch):
    key, store = tmp_path / "k" / "secrets.key", tmp_path / "s.json"
    monkeypatch.setenv("ASSOTIC_SECRETS_KEY", str(key))
    monkeypatch.setenv("ASSOTIC_SECRETS_FILE", str(store))
    first = cli("init")
    assert first.returncode == 0, first.stderr
    assert key.exists() and store.exists() and "OUTSIDE git" in first.stdout
    key_bytes = key.read_bytes()
    second = cli("init")
    assert second.returncode == 0 and "already exists" in second.stdout and key.read_bytes() == key_bytes


def test_rekey_moves_every_secret_to_a_new_key(paths, tmp_path):
    key_path, _ = paths
    store = fill(("smtp/password", "given"))
    store.generate("backup/repo_password")
    store.save()
    new_key = tmp_path / "new.key"
    new = store.rekey(new_key)
    new.save()
    with pytest.raises(WrongKeyError):
        SecretStore.open()
    reopened = SecretStore.open(key_path=new_key)
    assert reopened.get("smtp/password") == "given" and reopened.origin("smtp/password") == "operator"
    assert reopened.get("backup/repo_password") == store.get("backup/repo_password")
    assert reopened.origin("backup/repo_password") == "generated"
