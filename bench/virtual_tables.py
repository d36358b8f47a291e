"""Virtual tables: what the OData v4 service adds to a SQL query, and how fast it pages a big table.

    .venv/bin/python -m bench.virtual_tables [--rows 100000] [--samples 300]

Against one local Functions host serving the OData blueprint (this module's `app`) over a fresh SQLite file of
`--rows` demo products, in the same run:
- latency of one grid page as Dataverse asks it (`$top=50&$select=...&$count=true`, the next pages by `$skip`)
  through HTTP -> host -> service -> SQLAlchemy -> SQLite, against the same page and count read directly with
  SQLAlchemy Core (p50/p95 and their ratio);
- rows/s reading the whole table by following `@odata.nextLink` (server-driven paging, 500 and 50 rows a page),
  against direct SQLAlchemy paging with the same page size, order and statement (rows after the last key).
- the Dataverse hop: the Dataverse simulator (started here, `--seed off`) with the demo data source registered as
  `make run` does (devstack.virtualtables), the first grid page of the Products virtual table through its Web API
  (`dwvt_products?$top=50&$select=...&$count=true`: HTTP -> simulator -> OData v4 call to the host -> service ->
  SQLAlchemy), against the provider alone and the direct query for the same page, interleaved (p50/p95, ratios).
  Only the first page: the Web API has no `$skip` (Dataverse pages with its own cookies).
Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import sqlalchemy as sa

from devstack.processes import ROOT, ManagedProcess, free_port, python_module
from functions import odata

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)  # the host imports this: the OData blueprint alone
app.register_functions(odata.bp)

KEY = "bench-vt-key"
SELECT = "ItemNumber,Name,Category,Price,InStock,ModifiedOn"
DV_SELECT = ",".join(f"dwvt_{c.lower()}" for c in SELECT.split(","))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def figures(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def start_host(folder: Path, url: str) -> ManagedProcess:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())
    sample["Values"].update(
        {
            "VIRTUAL_TABLES_KEY": KEY,
            "VIRTUAL_TABLES_SQL_URL": url,
            "LOG_LEVEL": "WARNING",
            "VIRTUAL_TABLES_PATH": str(ROOT / "virtualtables"),
        }
    )
    settings = folder / "local.settings.json"
    settings.write_text(json.dumps(sample))
    port = free_port()
    argv = python_module(
        "devstack.host", "--port", str(port), "--app", "bench.virtual_tables:app", "--settings", str(settings)
    )
    return ManagedProcess(f"vt-bench-host-{port}", argv, port=port, log_dir=folder).start()


def start_dataverse(folder: Path) -> ManagedProcess:
    port = free_port()
    argv = python_module("devstack.dataverse", "--port", str(port), "--seed", "off")
    return ManagedProcess(f"vt-bench-dataverse-{port}", argv, port=port, log_dir=folder).start()


def dataverse_hop(
    dv: ManagedProcess, root: str, client: httpx.Client, engine: sa.Engine, columns: list[Any], products: sa.Table,
    samples: int,
) -> dict[str, Any]:
    """The first grid page through the Dataverse simulator, the provider alone and SQLAlchemy, interleaved."""
    from core.virtual.catalog import load_file
    from devstack.dataverse.auth import make_token
    from devstack.virtualtables import register_definitions

    token = make_token(str(uuid.uuid5(uuid.NAMESPACE_URL, "vt-bench")), name="bench")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-MaxVersion": "4.0",
               "OData-Version": "4.0"}
    with httpx.Client(base_url=f"http://127.0.0.1:{dv.port}/api/data/v9.2/", headers=headers, timeout=60) as api:
        sets = register_definitions(api, root, KEY, [load_file(ROOT / "virtualtables" / "products.json")])
        entity_set = sets["Products"]

        def dataverse_page() -> int:
            answer = api.get(entity_set, params={"$top": "50", "$select": DV_SELECT, "$count": "true"})
            answer.raise_for_status()
            return len(answer.json()["value"])

        def service_page() -> int:
            answer = client.get("Products", params={"$top": "50", "$select": SELECT, "$count": "true"})
            answer.raise_for_status()
            return len(answer.json()["value"])

        def direct_page() -> int:
            with engine.connect() as connection:
                rows = connection.execute(sa.select(*columns).order_by(products.c.product_id).limit(50)).all()
                connection.execute(sa.select(sa.func.count()).select_from(products)).scalar_one()
            return len(rows)

        paths = (("dataverse", dataverse_page), ("service", service_page), ("direct", direct_page))
        for _, page in paths:  # warm every path
            for _ in range(20):
                assert page() == 50
        timed: dict[str, list[float]] = {name: [] for name, _ in paths}
        for _ in range(samples):  # interleaved, so drift hits all alike
            for name, page in paths:
                t0 = time.perf_counter()
                page()
                timed[name].append(time.perf_counter() - t0)
    dataverse, service, direct = (figures(timed[n]) for n in ("dataverse", "service", "direct"))
    return {
        "request": f"{entity_set}?$top=50&$select={DV_SELECT}&$count=true",
        "samples": samples,
        "dataverse_simulator": dataverse,
        "service": service,
        "direct_sqlalchemy": direct,
        "ratio_p50_vs_direct": round(dataverse["p50_ms"] / direct["p50_ms"], 1),
        "ratio_p95_vs_direct": round(dataverse["p95_ms"] / direct["p95_ms"], 1),
        "ratio_p50_vs_service": round(dataverse["p50_ms"] / service["p50_ms"], 1),
        "ratio_p95_vs_service": round(dataverse["p95_ms"] / service["p95_ms"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300, help="grid pages timed each way")
    args = parser.parse_args()

    from devstack.virtualdata import create_sql

    folder = Path(tempfile.mkdtemp(prefix="vt-bench-"))
    url = f"sqlite:///{folder / 'virtual.db'}"
    started = time.perf_counter()
    engine = create_sql(url, products=args.rows, order_lines=0)
    load_seconds = time.perf_counter() - started
    products = sa.Table("products", sa.MetaData(), autoload_with=engine)
    columns = [
        products.c[c] for c in ("product_id", "item_number", "name", "category", "price", "in_stock", "modified_on")
    ]
    host = start_host(folder, url)
    dv = start_dataverse(folder)
    out: dict[str, Any] = {
        "bench": "virtual_tables",
        "rows": args.rows,
        "python": platform.python_version(),
        "load_seconds": round(load_seconds, 2),
    }
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{host.port}/api/odata/", headers={"x-vt-key": KEY}, timeout=60
        ) as client:
            skips = [50 * (i % 40) for i in range(args.samples)]  # the first 40 grid pages, over and over

            def service_page(skip: int) -> int:
                answer = client.get(
                    "Products", params={"$top": "50", "$skip": str(skip), "$select": SELECT, "$count": "true"}
                )
                answer.raise_for_status()
                return len(answer.json()["value"])

            def direct_page(skip: int) -> int:
                with engine.connect() as connection:
                    rows = connection.execute(
                        sa.select(*columns).order_by(products.c.product_id).limit(50).offset(skip)
                    ).all()
                    connection.execute(sa.select(sa.func.count()).select_from(products)).scalar_one()
                return len(rows)

            for page in (service_page, direct_page):  # warm both (connections, imports, SQLite's cache)
                for skip in skips[:20]:
                    assert page(skip) == 50
            timed: dict[str, list[float]] = {"service": [], "direct": []}
            for skip in skips:  # interleaved, so drift hits both alike
                for name, page in (("service", service_page), ("direct", direct_page)):
                    t0 = time.perf_counter()
                    page(skip)
                    timed[name].append(time.perf_counter() - t0)
            service, direct = figures(timed["service"]), figures(timed["direct"])
            out["grid_page_50"] = {
                "request": f"Products?$top=50&$skip=<0..1950>&$select={SELECT}&$count=true",
                "samples": args.samples,
                "service": service,
                "direct_sqlalchemy": direct,
                "ratio_p50": round(service["p50_ms"] / direct["p50_ms"], 1),
                "ratio_p95": round(service["p95_ms"] / direct["p95_ms"], 1),
            }

            paging: dict[str, Any] = {}
            for size in (500, 50):
                t0 = time.perf_counter()
                seen, pages = 0, 0
                link: str | None = f"Products?$select={SELECT}"
                while link:
                    answer = client.get(link, headers={"Prefer": f"odata.maxpagesize={size}"})
                    body = answer.json()
                    seen += len(body["value"])
                    pages += 1
                    link = body.get("@odata.nextLink")
                service_seconds = time.perf_counter() - t0
                assert seen == args.rows, (seen, args.rows)
                t0 = time.perf_counter()
                direct_rows = 0
                with engine.connect() as connection:  # the statement the service issues: after the last key
                    last = None
                    while True:
                        statement = sa.select(*columns).order_by(products.c.product_id).limit(size)
                        if last is not None:
                            statement = statement.where(products.c.product_id > last)
                        rows = connection.execute(statement).all()
                        if not rows:
                            break
                        direct_rows += len(rows)
                        last = rows[-1][0]
                direct_seconds = time.perf_counter() - t0
                paging[f"page_{size}"] = {
                    "pages": pages,
                    "service_rows_per_s": round(seen / service_seconds),
                    "direct_rows_per_s": round(direct_rows / direct_seconds),
                    "service_seconds": round(service_seconds, 2),
                    "direct_seconds": round(direct_seconds, 2),
                    "ratio": round(service_seconds / direct_seconds, 1),
                }
            out["paging_whole_table"] = paging
            root = f"http://127.0.0.1:{host.port}/api/odata/"
            out["dataverse_grid_page_50"] = dataverse_hop(dv, root, client, engine, columns, products, args.samples)
    finally:
        dv.stop()
        host.stop()
        engine.dispose()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
