"""The local stack: Functions host, Service Bus emulator, Dataverse and F&O simulators, and `up`.

Nothing in core/ imports from here; tests and `make run` use it to start real local parts.
"""
