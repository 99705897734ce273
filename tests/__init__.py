"""Reference-vs-candidate tests use these fixtures: tests/fixtures (copied from the official-code fixtures)."""
