"""The dual-write engine: domain and adapters. Never imports azure.functions (see DESIGN.md)."""

__version__ = "0.1.0"
