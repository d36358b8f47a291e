"""A local Azure Service Bus emulator speaking AMQP 1.0 the way the real `azure-servicebus` SDK needs.

Start it with `python -m devstack.servicebus [--host H] [--port P] [--config topology.json]`; from
Python use `devstack.servicebus.launch` (`emulator_process`, `connection_string`). State is in memory.
"""
