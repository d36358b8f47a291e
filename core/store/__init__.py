"""Adapters for state and transport: Table Storage repositories and Service Bus access."""
