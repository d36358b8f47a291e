"""Shared fixtures. Each local-stack part has its fixture module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.servicebus",
    "tests.fixtures.devhost",
    "tests.fixtures.dataverse",
    "tests.fixtures.fno",
]
