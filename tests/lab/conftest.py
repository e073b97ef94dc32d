"""Lab test order: the platform sequence (test_lab.py) first, then the faults of a deploy
killed partway, the backup drills (their final test proves a deploy after them changes
nothing), the update run (it needs backups that work), and the restore drill of `make drill`.
A file not listed runs after test_lab.py, before the ones listed after it."""

ORDER = ("test_lab.py", "test_interrupted_deploy.py", "test_backup.py", "test_update.py", "test_drill.py")


def position(file_name: str) -> int:
    return ORDER.index(file_name) if file_name in ORDER else 1


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: position(item.path.name))  # stable: order within a file kept
