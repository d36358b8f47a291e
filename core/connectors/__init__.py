"""Clients of the two systems: Dataverse Web API and F&O OData (httpx async)."""
