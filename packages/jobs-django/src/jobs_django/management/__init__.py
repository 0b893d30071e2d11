"""Management commands of jobs-django."""
