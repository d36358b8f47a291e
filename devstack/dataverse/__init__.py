"""A Dataverse simulator that speaks the Web API (v9.2) and sends webhooks like Dataverse does.

Start it with `python -m devstack.dataverse`; see README.md in this folder."""

DEFAULT_PORT = 7101
API_PATH = "/api/data/v9.2/"
