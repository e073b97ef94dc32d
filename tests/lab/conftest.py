"""Lab test order: the platform sequence (test_lab.py) first, then the files that build on
the lab it leaves (backup drills, then the restore drill of `make drill`)."""

AFTER = {"test_backup.py": 1, "test_drill.py": 2}


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: AFTER.get(item.path.name, 0))  # stable: file order kept otherwise
