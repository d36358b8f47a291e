"""Demo data of the shipped virtual tables: the SQLite database of Products and OrderLines, and the Warehouses
table in Table Storage (Azurite). `python -m devstack.virtualdata [--sql URL] [--products N] [--tables CONN]`.

Rows are made from a fixed seed, so every run (and every test) sees the same demo rows."""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from core.virtual.catalog import load_file
from core.virtual.model import SqlSource, TablesSource
from core.virtual.sql import sql_table

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "virtualtables"
DEFAULT_SQL = f"sqlite:///{ROOT / '.devstack' / 'virtualtables.db'}"
CATEGORIES = ["Audio", "Cables", "Computers", "Office", "Phones", "Storage"]
WORDS = ["Basic", "Pro", "Ultra", "Mini", "Max", "Smart", "Classic", "Eco"]
START = datetime(2026, 1, 1, tzinfo=UTC)


def product_rows(count: int, seed: int = 16) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        rows.append(
            {
                "ProductId": uuid.UUID(int=rng.getrandbits(128), version=4),
                "ItemNumber": f"P{i + 1:06d}",
                "Name": f"{rng.choice(WORDS)} {rng.choice(CATEGORIES).removesuffix('s')} {i + 1}",
                "Category": None if i % 17 == 0 else CATEGORIES[i % len(CATEGORIES)],
                "Price": Decimal(rng.randint(100, 999_999)) / 100 + Decimal("0.0000000001") * rng.randint(0, 9),
                "Weight": round(rng.uniform(0.1, 25.0), 3),
                "InStock": rng.randint(0, 500),
                "Barcode": 4_000_000_000_000 + i,
                "Discontinued": i % 11 == 0,
                "ModifiedOn": START + timedelta(minutes=37 * i),
            }
        )
    return rows


def order_line_rows(count: int = 120) -> list[dict[str, object]]:
    rows = []
    for i in range(count):
        order, line = divmod(i, 4)
        rows.append(
            {
                "OrderNumber": f"SO-{1000 + order}",
                "LineNumber": line + 1,
                "ItemNumber": f"P{(i * 7) % 200 + 1:06d}",
                "Quantity": Decimal(line + 1) + Decimal("0.5") * (i % 2),
                "Amount": Decimal("19.9900000001") * (line + 1),
                "ShippedOn": None if i % 5 == 0 else START + timedelta(days=i),
            }
        )
    return rows


def create_sql(url: str = DEFAULT_SQL, products: int = 200, order_lines: int = 120) -> sa.Engine:
    """Create (anew) the demo tables of every SQL-backed definition in `url` and fill them."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    made = {}
    for name in ("products.json", "order-lines.json"):
        table = load_file(DEFINITIONS / name)
        assert isinstance(table.source, SqlSource)
        made[table.entity_set] = sql_table(table, table.source.table, table.source.schema_name, metadata)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as connection:
        every = product_rows(products)
        for start in range(0, products, 5000):  # in chunks: the bench's table has 100,000 rows
            connection.execute(sa.insert(made["Products"]), every[start : start + 5000])
        if order_lines:
            connection.execute(sa.insert(made["OrderLines"]), order_line_rows(order_lines))
    return engine


WAREHOUSES = [
    ("EU", "AMS01", "Amsterdam", 12000, True),
    ("EU", "BER01", "Berlin", 8000, True),
    ("EU", "PAR01", "Paris", 9500, False),
    ("US", "CHI01", "Chicago", 20000, True),
    ("US", "SEA01", "Seattle", 15000, True),
    ("US", "NYC'01", "New York (quote in key)", 5000, True),
    ("APAC", "SIN01", "Singapore", 11000, True),
    ("APAC", "SYD01", "Sydney", 7000, False),
]


async def seed_tables(connection: str, table_name: str | None = None) -> None:
    """The demo warehouses, anew, in Table Storage."""
    from azure.data.tables.aio import TableServiceClient

    definition = load_file(DEFINITIONS / "warehouses.json")
    assert isinstance(definition.source, TablesSource)
    name = table_name or definition.source.table
    async with TableServiceClient.from_connection_string(connection) as service:
        await service.delete_table(name)
        await service.create_table(name)
        client = service.get_table_client(name)
        for i, (region, code, city, capacity, active) in enumerate(WAREHOUSES):
            await client.upsert_entity(
                {
                    "PartitionKey": region,
                    "RowKey": code,
                    "Name": city,
                    "Capacity": capacity,
                    "Active": active,
                    "OpenedOn": START - timedelta(days=400 * (i + 1)),
                }
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sql", default=DEFAULT_SQL, help="SQLAlchemy URL of the demo database")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--tables", default=None, help="Table Storage connection string (Azurite) to seed")
    args = parser.parse_args()
    create_sql(args.sql, args.products)
    if args.tables:
        asyncio.run(seed_tables(args.tables))


if __name__ == "__main__":
    main()
