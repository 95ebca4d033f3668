"""Accept an input's new schema after a deliberate change at the source.

    python -m eastwest.east.schemas show DAG_ID                    # the schemas recorded for a DAG's inputs
    python -m eastwest.east.schemas accept DAG_ID INPUT            # forget INPUT's schema; the next run records it

A run refuses an input whose schema differs from the one recorded at its last publish (so a new
or retyped column is never published silently). After adapting the job and its suite, ``accept``
removes the record; the next successful publish records the new schema.
"""

from __future__ import annotations

import argparse
import json
import sys

from eastwest.east import arrowdb, sql, warehouse
from eastwest.east.connections import database_url, redact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eastwest.east.schemas", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("show", "accept"))
    parser.add_argument("dag_id")
    parser.add_argument("input", nargs="?")
    parser.add_argument("--conn-id", default="east_warehouse", help="the warehouse connection (east_warehouse)")
    args = parser.parse_args(argv)
    url = database_url(args.conn_id)
    warehouse.ensure_schema_table(url)
    with arrowdb.connect(url, lock=warehouse.SCHEMAS_TABLE) as conn:
        if args.action == "accept":
            if not args.input:
                parser.error("accept needs the input's name")
            binds = {"dag_id": args.dag_id, "input": args.input}
            arrowdb.execute(conn, url, sql.library("delete_input_schema.sql"), binds).close()
            print(
                f"{args.dag_id}/{args.input}: recorded schema removed from {redact(url)}; the next publish records it"
            )
        else:
            for name in sorted({i for i in [args.input] if i} or _inputs(conn, url, args.dag_id)):
                cursor = arrowdb.execute(
                    conn, url, sql.library("select_input_schema.sql"), {"dag_id": args.dag_id, "input": name}
                )
                for (text,) in cursor.fetchall():
                    print(f"{name}: " + ", ".join(f"{n} {t}" for n, t in json.loads(text)))
                cursor.close()
        conn.commit()
    return 0


def _inputs(conn: object, url: str, dag_id: str) -> list[str]:
    cursor = arrowdb.execute(conn, url, sql.library("select_input_names.sql"), {"dag_id": dag_id})
    names = [row[0] for row in cursor.fetchall()]
    cursor.close()
    return names


if __name__ == "__main__":
    sys.exit(main())
