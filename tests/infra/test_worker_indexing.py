"""function_app.py indexes under Microsoft's Python worker (azure-functions-runtime, Python 3.13), as it does under
the local host: the same functions, the same triggers.

The worker runs in a virtual environment of its own (.devstack/worker-py313), made on first use with pip from the
registry: azure-functions-runtime and the app's requirements. azure-functions 1.26 (requirements.txt) declares
Python < 3.13, so there the environment takes the azure-functions release the runtime resolves (2.x); the app
imports the same API. The test is skipped only where no Python 3.13 interpreter exists.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "azure-functions-runtime==1.3.0"
SCRIPT = Path(__file__).with_name("worker_index.py")


def _python313() -> str | None:
    """A Python 3.13 that runs: pyenv's own (its shim on PATH answers only when 3.13 is selected), else PATH's."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")))
    candidates += [found for found in [shutil.which("python3.13")] if found]
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


@pytest.fixture(scope="module")
def worker_python() -> str:
    python = _python313()
    if python is None:
        pytest.skip(
            "no Python 3.13 interpreter (python3.13 on PATH or under ~/.pyenv/versions): the 3.13 worker "
            "cannot run here"
        )
    venv = ROOT / ".devstack" / "worker-py313"
    wanted = [
        line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith("azure-functions")
    ]
    stamp = hashlib.sha256("\n".join([RUNTIME, *wanted]).encode()).hexdigest()
    marker = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "worker-py313.lock", "w") as lock:  # two test runs at once build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file() or marker.read_text() != stamp:
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
            pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", RUNTIME, *wanted]
            subprocess.run(pip, check=True, timeout=900)
            marker.write_text(stamp)
    return str(venv / "bin/python")


def _index(worker_python: str, app_dir: Path) -> subprocess.CompletedProcess[str]:
    # no engine settings: function_app.py must index without them (Azure indexes before settings are checked)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "")}
    return subprocess.run(
        [worker_python, str(SCRIPT), str(app_dir)], cwd=app_dir, env=env, capture_output=True, text=True, timeout=300
    )


def _local_host_functions() -> dict[str, str]:
    code = (
        "import json; from devstack.host.indexing import index_app, load_app; "
        "print(json.dumps({s.name: s.trigger_type for s in index_app(load_app('function_app:app'))}))"
    )
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]  # %SETTING% names resolve
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **values},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(1200)
def test_the_app_indexes_under_the_real_python_worker_like_under_the_local_host(worker_python: str) -> None:
    result = _index(worker_python, ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    functions = json.loads(result.stdout.strip().splitlines()[-1])
    triggers = {f["name"]: next(b for b in f["bindings"] if b["direction"] == "IN") for f in functions}
    assert {name: b["type"] for name, b in triggers.items()} == _local_host_functions()
    apply = triggers["apply_changes"]
    assert apply["type"] == "serviceBusTrigger" and apply["isSessionsEnabled"] is True
    assert apply["cardinality"].lower() == "many" and apply["queueName"] == "%CHANGES_QUEUE%"
    for name, binding in triggers.items():
        if binding["type"] == "serviceBusTrigger":
            assert binding["connection"] == "SERVICEBUS_CONNECTION", name
        if binding["type"] == "httpTrigger":
            assert not binding.get("route", "").lower().startswith(("admin", "runtime")), name


@pytest.mark.timeout(1200)
def test_the_worker_refuses_what_azure_would_not_load(worker_python: str, tmp_path: Path) -> None:
    """A batch trigger annotated `list[func.ServiceBusMessage]` (PEP 585) does not load in Azure; the local host
    took it. functions/apply.py uses typing.List for that reason."""
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n\n"
        "@app.service_bus_queue_trigger(arg_name='messages', queue_name='q', connection='C',\n"
        "                               cardinality=func.Cardinality.MANY)\n"
        "def batch(messages: list[func.ServiceBusMessage]) -> None:\n"
        "    pass\n"
    )
    result = _index(worker_python, tmp_path)
    assert result.returncode == 1
    assert "cannot load the batch function" in result.stderr and "invalid non-type annotation" in result.stderr
