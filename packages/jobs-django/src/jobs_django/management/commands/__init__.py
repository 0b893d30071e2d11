"""``jobs_worker``."""
