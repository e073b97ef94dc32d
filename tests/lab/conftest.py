"""Lab test order: the platform sequence (test_lab.py) first, then the files that build on
the lab it leaves: the backup drills, the update run (it needs backups that work), and the
restore drill of `make drill`."""

AFTER = {"test_backup.py": 1, "test_update.py": 2, "test_drill.py": 3}


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: AFTER.get(item.path.name, 0))  # stable: file order kept otherwise
