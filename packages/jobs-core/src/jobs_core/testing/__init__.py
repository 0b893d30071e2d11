"""Tools for testing jobs drivers and applications: the conformance suite and its pytest plugin."""
