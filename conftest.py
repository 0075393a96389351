"""Root conftest: the drills' fixtures live in fixtures/ (thin; the logic is in src/drdrill)."""

pytest_plugins = ["fixtures.drills"]
