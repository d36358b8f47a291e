"""A Finance & Operations simulator: OData data entities at /data/, business events and data events.

Follows shared/reference/protocols.md section 3. Start it with `python -m devstack.fno`.
"""
