"""The short fuzz run of `make test` (issue 18): a few thousand mutated and generated bodies against both ingest
routes over HTTP on the local host; no 5xx, no dropped connection, the host alive and healthy at the end.

The generator and runner are bench/fuzz_ingest.py's (the long run: `python -m bench.fuzz_ingest`, 100,000
inputs). Inputs answered 5xx or not at all are saved under the test's temporary folder (`fuzz-failures`),
the path in the failure message, each body with its route, headers and the answer.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bench.fuzz_ingest import run
from tests.fixtures.devhost import RunningHost

INPUTS = int(os.environ.get("FUZZ_INPUTS", "3000"))


def test_fuzz_both_ingest_routes(fuzz_host: RunningHost, tmp_path: Path) -> None:
    host = fuzz_host
    failures = tmp_path / "fuzz-failures"
    result = asyncio.run(run(host.url, host.function_key, INPUTS, seed=int(os.environ.get("FUZZ_SEED", "18")),
                             concurrency=8, failures=failures))
    figures = result.figures()
    print(figures)
    assert result.inputs == INPUTS and result.transport_errors == 0, (figures, str(failures))
    assert result.server_errors == 0, (figures, str(failures), result.failures[:3])
    assert result.healthy_at_end, figures
    assert host.process.running
    for route, counts in result.statuses.items():  # the run reached past the parsers, both ways
        assert counts[202] > 0 and counts[400] > 0, (route, figures)
