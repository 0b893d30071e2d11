"""The driver conformance suite: ``pytest --pyargs jobs_core.testing.conformance --jobs-driver=URL``."""
