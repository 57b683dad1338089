"""APScheduler wiring and thin jobs; each job calls one service function (see the scheduler issue)."""


def start_embedded(settings, database):
    """Start the in-process scheduler and delivery worker (embedded mode); returns a handle with `.stop()`."""
    from scheduler.runner import start_embedded as start

    return start(settings, database)
