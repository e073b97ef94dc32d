"""Lab test order: the platform sequence (test_lab.py) first, then the faults of a deploy
killed partway, the backup drills last (their final test proves a deploy after everything
changes nothing). A file not listed runs after test_lab.py, before the ones listed after it."""

ORDER = ("test_lab.py", "test_interrupted_deploy.py", "test_backup.py")


def position(file_name: str) -> int:
    return ORDER.index(file_name) if file_name in ORDER else 1


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: position(item.path.name))  # stable: order within a file kept
