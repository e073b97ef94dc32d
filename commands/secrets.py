"""`python -m commands secrets ...`, behind the Makefile's secrets targets.

  init          create the key (outside git) and an empty store, if they are missing
  list          the secret names and their origin (never the values)
  show NAME     print one value on stdout
  set NAME      store a value read from stdin (prompted twice on a terminal)
  rotate NAME   replace a generated value with a new random one
  reseal        after a git merge of the store: review and accept its entries as they are
  rekey NEWKEY  re-encrypt the store with a new key created at NEWKEY (a volunteer left)

Paths: ASSOTIC_SECRETS_KEY (default ~/.config/assotic/secrets.key) and
ASSOTIC_SECRETS_FILE (default secrets/secrets.enc.json). See docs/secrets.md.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from assotic.secrets_store import (
    DOCS,
    MissingKeyError,
    SecretsError,
    SecretStore,
    display_path,
    check_name,
    create_key,
    default_key_path,
    default_store_path,
)


def run(argv: list[str]) -> int:
    try:
        return _dispatch(argv)
    except (SecretsError, OSError) as e:
        print(f"assotic secrets: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("\nassotic secrets: cancelled, nothing was changed.", file=sys.stderr)
        return 130


def _usage(problem: str) -> int:
    print(f"assotic secrets: {problem}\n{__doc__}", file=sys.stderr)
    return 2


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, args = argv[0], argv[1:]
    takes_name = {"show", "set", "rotate"}
    if command == "set" and len(args) > 1:
        # A value on the command line would stay in the shell history and show in `ps`.
        return _usage("`set` takes only the NAME: the value is never accepted on the command"
                      " line. Type it at the prompt, or pipe it on stdin (from a file or a password manager).")
    if command in takes_name and (len(args) != 1 or not args[0]):
        return _usage(f"`{command}` needs exactly one secret NAME (make secret-{command} NAME=...)")
    if command == "init" and not args:
        return _init()
    if command == "list" and not args:
        return _list()
    if command == "reseal" and args in ([], ["--yes"]):
        return _reseal(assume_yes=bool(args))
    if command == "rekey" and len(args) == 1:
        return _rekey(Path(args[0]).expanduser().absolute())
    if command in takes_name:
        name = check_name(args[0])
        store = SecretStore.open()  # before any prompt: a missing key is reported first
        if command == "show":
            print(store.get(name))
        elif command == "set":
            existed = name in store
            store.set(name, _read_value(name), origin="operator")
            store.save()
            print(f"{'replaced' if existed else 'stored'} {name} in {display_path(store.path)}."
                  " Commit that file; run `make deploy` to apply it.")
        else:
            store.rotate(name)
            store.save()
            print(f"rotated {name} in {display_path(store.path)}. Commit that file; run `make deploy` to apply it.")
        return 0
    return _usage(f"unknown command or arguments: {' '.join(argv)!r}")


def _init() -> int:
    key_path, store_path = default_key_path(), default_store_path()
    if key_path.exists():
        store = SecretStore.open(store_path, key_path)  # checks permissions and that the key fits
        had_store = store_path.exists()
        store.save()
        print(f"The key already exists at {display_path(key_path)} (key id {store.key_id}); it was not changed.")
        state = "existing" if had_store else "created"
        print(f"Store: {display_path(store_path)} ({state}, {len(store.names())} secrets).")
        return 0
    if store_path.exists():
        # A new key could never read this store: the team's key must be copied instead.
        raise MissingKeyError(key_path, store_path)
    create_key(key_path)
    store = SecretStore.open(store_path, key_path)
    store.save()
    print(f"Created the key   {display_path(key_path)} (key id {store.key_id}), readable by you only.")
    print(f"Created the store {display_path(store_path)} (encrypted, commit it to git).")
    print("BACK UP THE KEY NOW, OUTSIDE git (e.g. in the team's password manager):"
          f"\nwithout it every secret in the store is lost. See {DOCS}.")
    return 0


def _list() -> int:
    store = SecretStore.open()
    names = store.names()
    if not names:
        print(f"(no secrets yet in {display_path(store.path)})")
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"{name:<{width}}  {store.origin(name)}")
    return 0


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value for {name}: ")
        if getpass.getpass("Same value again: ") != value:
            raise SecretsError("the two values differ; nothing was changed.")
    else:
        value = sys.stdin.read()
        # Strip the one newline that `echo` or a file adds, but keep any other whitespace.
        value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
    if not value:
        raise SecretsError(f"empty value: nothing was stored for {name}.")
    return value


def _reseal(assume_yes: bool) -> int:
    store = SecretStore.open(check_index=False)  # entries are still authenticated with the key
    problems = store.index_differences()
    if not problems:
        print(f"{display_path(store.path)}: the index matches the entries; nothing to do.")
        return 0
    print(f"{display_path(store.path)}: the entries differ from the index:", *problems, sep="\n  - ")
    print("Every entry was encrypted with the team's key. Accept exactly these differences?")
    if not assume_yes:
        if not sys.stdin.isatty():
            raise SecretsError("not confirmed: run it in a terminal, or add --yes after review.")
        if input("Type yes to accept: ").strip() != "yes":
            print("Nothing was changed.")
            return 1
    store.reseal()
    store.save()
    print(f"Resealed {display_path(store.path)}. Commit it.")
    return 0


def _rekey(new_key_path: Path) -> int:
    old = SecretStore.open()
    new = old.rekey(new_key_path)
    new.save()
    key_path = display_path(old.key_path)
    print(f"{display_path(new.path)} is now encrypted with the NEW key {display_path(new_key_path)}"
          f" (key id {new.key_id}).\nNext: mv {display_path(new_key_path)} {key_path}, commit the store,"
          " and give the new key to the team (the old one no longer opens it).\nThe old key still"
          f" opens the old versions in git history: rotate the secrets themselves too, see {DOCS}.")
    return 0
