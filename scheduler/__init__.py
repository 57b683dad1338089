"""APScheduler wiring and thin jobs; each job calls one service function (see the scheduler issue)."""
