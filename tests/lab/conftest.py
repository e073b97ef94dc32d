"""Lab test order: the platform sequence (test_lab.py) first, the backup drills after it."""

LAST = ("test_backup.py",)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.path.name in LAST)  # stable: file order kept otherwise
