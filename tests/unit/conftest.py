"""Fixtures of the unit tests: those they share with the other tiers (`glove_export`, `prepared_sample`,
`glove_module`) are in tests/conftest.py."""
