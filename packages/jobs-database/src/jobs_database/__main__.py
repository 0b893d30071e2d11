"""``python -m jobs_database upgrade --url URL``."""

from jobs_database.cli import main

main()
