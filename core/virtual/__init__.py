"""Virtual tables: external data served to Dataverse's OData v4 Data Provider, live (see README.md)."""
