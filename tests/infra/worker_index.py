"""Run by Python 3.13 (tests/infra/test_worker_indexing.py): index function_app.py the way Microsoft's Python
worker for 3.13+ (azure-functions-runtime) does when the host starts it, and print what the host would receive.

`python worker_index.py <repo root>` prints a JSON list: each function's name and raw bindings, or exits 1
with the worker's error. The worker gets the host protocol's message classes from its gRPC proxy, which is not
on PyPI; `protos` below builds them as plain objects with FunctionRpc.proto's enum values (BindingInfo
Direction in=0 out=1 inout=2; DataType undefined=0 string=1 binary=2 stream=3). Every check of the functions
is the worker's own code.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path


class _Message:
    """A message of the host protocol: its fields as attributes."""

    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)


class BindingInfo(_Message):
    out = 1
    inout = 2
    undefined = 0
    string = 1
    binary = 2
    stream = 3


setattr(BindingInfo, "in", 0)  # `in` is a keyword: no class attribute syntax for it
protos = types.SimpleNamespace(
    BindingInfo=BindingInfo,
    RpcFunctionMetadata=type("RpcFunctionMetadata", (_Message,), {}),
    RpcRetryOptions=type("RpcRetryOptions", (_Message,), {}),
)


def main(root: Path) -> int:
    sys.path.insert(0, str(root))
    from azure_functions_runtime import loader
    from azure_functions_runtime.bindings.meta import load_binding_registry
    from azure_functions_runtime.functions import Registry

    try:
        load_binding_registry()  # what the worker does at init, before indexing
        indexed = loader.index_function_app(str(root / "function_app.py"))
        metadata, _ = loader.process_indexed_function(protos, Registry(), indexed, str(root))
    except Exception:  # the worker's refusal, as the host would log it
        import traceback

        traceback.print_exc()
        return 1
    found = [{"name": m.name, "bindings": [json.loads(raw) for raw in m.raw_bindings]} for m in metadata]
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
