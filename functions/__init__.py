"""Thin Azure Functions entry points: one blueprint per concern. They parse, call core, and answer."""
