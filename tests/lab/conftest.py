"""Lab test order: the platform sequence (test_lab.py) first, then the backup drills, then
the update run (it needs backups that work)."""

LAST = ("test_backup.py", "test_update.py")


def pytest_collection_modifyitems(session, config, items):
    # Stable: file order kept otherwise.
    items.sort(key=lambda item: LAST.index(item.path.name) + 1 if item.path.name in LAST else 0)
