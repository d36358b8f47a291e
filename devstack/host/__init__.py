"""A local Azure Functions host for Python v2 apps (Core Tools cannot be installed offline).

`python -m devstack.host` indexes function_app.py with the azure-functions library, serves HTTP
triggers with function keys, pumps Service Bus triggers with the real SDK and runs timers.
"""

from devstack.host.indexing import FunctionSpec, IndexingError, index_app, load_app
from devstack.host.server import FunctionHost, serve

__all__ = ["FunctionHost", "FunctionSpec", "IndexingError", "index_app", "load_app", "serve"]
