"""Read a run's inputs as Arrow record batches: SQL queries on a database, or landing files.

Both kinds stream: a query is read batch by batch from the ADBC driver (an interval as hourly
slices, two read in parallel and passed on in time order), a landing file batch by batch from its
CSV or Parquet reader, so memory holds a few batches whatever the interval. The input's
schema is the source's own (the driver's Arrow schema, or the files'); the time column of a
SQLite source, which SQLite keeps as text, becomes ``timestamp[us]``.
"""

from __future__ import annotations

import glob as globlib
import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from eastwest.config import Input, LandingFiles, ModelInput, SqlInput
from eastwest.east import arrowdb, sql
from eastwest.east.connections import ConnectionNotFound, database_url
from eastwest.east.plan import Plan, utc_start
from eastwest.settings import LOCAL_TZ, Project, Settings

#: An interval input is read as consecutive time slices of this length, READERS at a time, and
#: concatenated in time order (see BENCHMARKS.md: two readers on two cores nearly halve extraction).
SLICE = timedelta(hours=1)
READERS = 2


class InputError(ValueError):
    """An input that cannot be read as declared: no files, a malformed file, a wrong schema."""


class MissingData(InputError):
    """An input has no data for (part of) the run: retrying at once cannot help, so it is final.

    Scheduled runs wait for the data before extracting (:func:`missing`); an extract that still
    finds nothing fails once, naming the input and the interval or folder.
    """


def lookback_start(item: SqlInput, plan: Plan, tz: str) -> datetime:
    """Where an interval input starts reading: the plan's start, or ``lookback_days`` local days earlier."""
    assert plan.start is not None and plan.start_day is not None
    if not item.lookback_days:
        return datetime.fromisoformat(plan.start)
    return utc_start(date.fromisoformat(plan.start_day) - timedelta(days=item.lookback_days), tz)


def sql_batches(
    item: SqlInput, plan: Plan, project: Project, settings: Settings | None = None, tz: str = LOCAL_TZ
) -> Iterator[Any]:
    """Stream an SQL input's rows for the plan's interval and lookback (or all of them for a snapshot)."""
    import jinja2

    try:
        url = database_url(item.conn_id, settings)
    except ConnectionNotFound as exc:
        raise InputError(f"input {item.name}: {exc}") from None

    shape = {name: bool(value) for name, value in plan.params.items()}
    try:
        text = sql.render_file(project.sql_dir / item.sql, **shape)
    except jinja2.TemplateError as exc:
        raise InputError(f"input {item.name}: sql/{item.sql} does not render: {exc}") from exc
    binds: dict[str, Any] = dict(plan.params)
    if not item.interval:
        batches = arrowdb.read_batches(url, text, binds)
    else:
        assert plan.start is not None and plan.end is not None
        slices = time_slices(lookback_start(item, plan, tz), datetime.fromisoformat(plan.end))
        batches = arrowdb.read_slices(url, text, [{**binds, "start": a, "end": b} for a, b in slices], READERS)
    try:
        for batch in batches:
            yield _normalise_time(batch, item.time_column)
    except KeyError as exc:  # a bind the query names but nobody provides
        raise InputError(f"input {item.name}: sql/{item.sql}: {exc.args[0]}") from None


def time_slices(start: datetime, end: datetime, step: timedelta = SLICE) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive slices of ``step`` (the last may be shorter)."""
    slices = []
    while start < end:
        slices.append((start, min(start + step, end)))
        start += step
    return slices


def _normalise_time(batch: Any, column: str | None) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if column is None:
        return batch
    index = batch.schema.get_field_index(column)
    if index < 0:
        raise InputError(f"the query returns no column {column!r} (its time_column)")
    values = batch.column(index)
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        return batch
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise InputError(f"time column {column} has type {values.type}; expected a timestamp or a date")
    try:
        cast = pc.cast(values, pa.timestamp("us"))
    except pa.ArrowInvalid as exc:
        raise InputError(f"time column {column} holds a value that is not an ISO timestamp: {exc}") from exc
    field = pa.field(column, pa.timestamp("us"), batch.schema.field(index).nullable)
    return batch.set_column(index, field, cast)


def landing_pattern(item: LandingFiles, ds: str | None, settings: Settings) -> Path:
    """The glob of a landing input for one local day (``ds``), as an absolute path pattern."""
    pattern = item.glob.replace("{{ ds }}", ds) if ds else item.glob
    return Path(pattern) if Path(pattern).is_absolute() else settings.data_dir / pattern


def _landing_matches(item: LandingFiles, full: Path) -> list[Path]:
    return sorted(
        Path(p) for p in globlib.glob(str(full)) if not Path(p).name.startswith(".") and Path(p).name != item.marker
    )


def _no_landing_files(item: LandingFiles, full: Path, ds: str | None) -> str:
    return (
        f"input {item.name}: no landing files match {full} for {ds or 'the snapshot'}; "
        f"the folder {full.parent} {'is empty' if full.parent.is_dir() else 'does not exist'}"
    )


def landing_paths(item: LandingFiles, plan: Plan, settings: Settings) -> list[Path]:
    """The files of a landing input for the plan's days, sorted; raise naming the folder if there are none."""
    days = [d.isoformat() for d in plan.days] if item.interval else [None]
    found: list[Path] = []
    for ds in days:
        full = landing_pattern(item, ds, settings)
        matches = _landing_matches(item, full)
        if not matches:
            raise MissingData(_no_landing_files(item, full, ds))
        found.extend(matches)
    return found


def _csv_options(item: LandingFiles, schema: Any | None) -> tuple[Any, Any, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }
    column_types = {name: types[kind] for name, kind in dict(item.columns).items()}
    if schema is not None:  # later files are read with the first file's types
        column_types = {f.name: f.type for f in schema}
    convert = pacsv.ConvertOptions(
        column_types=column_types,
        strings_can_be_null=False,
        timestamp_parsers=["%Y-%m-%d %H:%M:%S", pacsv.ISO8601],
    )
    return pacsv.ReadOptions(block_size=4 << 20), pacsv.ParseOptions(), convert


def _csv_batches(path: Path, item: LandingFiles, schema: Any | None) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read, parse, convert = _csv_options(item, schema)
    try:
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        yield from reader
    except pa.ArrowInvalid as exc:
        raise InputError(f"input {item.name}: {path}: {_csv_problem(path, convert, str(exc))}") from None


def _csv_problem(path: Path, convert: Any, message: str) -> str:
    """Say which line of a CSV file holds the value that does not parse (pyarrow names only the column)."""
    import re

    import pyarrow as pa
    import pyarrow.csv as pacsv

    first = message.splitlines()[0]
    found = re.search(r"In CSV column #(\d+)", first)
    if not found:
        return first
    try:
        raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
        index = int(found.group(1))
        name = raw.schema.names[index]
        wanted = convert.column_types.get(name)
        column = raw.column(index).cast(pa.string()).to_pylist()
    except (pa.ArrowInvalid, IndexError, KeyError):
        return first
    for row, value in enumerate(column):
        try:
            pa.array([value], pa.string()).cast(wanted)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return f"line {row + 2}: column {name} value {str(value)[:40]!r} is not {wanted}"
    return first


def landing_batches(item: LandingFiles, plan: Plan, settings: Settings) -> Iterator[Any]:
    """Stream every landing file of the plan's days; all files must have the first file's schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = None
    for path in landing_paths(item, plan, settings):
        if item.format == "parquet":
            try:
                batches: Iterator[Any] = pq.ParquetFile(path).iter_batches(batch_size=65_536)
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputError(f"input {item.name}: {path} is not a readable Parquet file: {exc}") from None
        else:
            batches = _csv_batches(path, item, schema)
        for batch in batches:
            if schema is None:
                schema = batch.schema
            elif not batch.schema.equals(schema):
                raise InputError(
                    f"input {item.name}: {path} has columns {schema_text(batch.schema)}, "
                    f"the first file had {schema_text(schema)}"
                )
            yield batch


# -- is the data there? -----------------------------------------------------------------------------


def missing(item: Input, plan: Plan, project: Project, settings: Settings, tz: str) -> list[str]:
    """What ``item`` still lacks for the plan, one sentence per local day; empty when its data is complete.

    The signal is the source's own when it has one (an SQL input's ``ready_sql``, a landing input's
    ``marker`` file in each day's folder), else "at least one row" (the input's own query, limited to
    one row) or "at least one file" per day. ``tz`` is the time zone of the plan's local days. A source
    that cannot be asked raises its own error (the caller decides whether to ask again).
    """
    if isinstance(item, SqlInput):
        return _sql_missing(item, plan, project, settings, tz)
    if isinstance(item, ModelInput):
        model_batches(item, settings)  # a model is there or not: no champion fails at once (final)
        return []
    days = [d.isoformat() for d in plan.days] if item.interval else [None]
    lacking = []
    for ds in days:
        full = landing_pattern(item, ds, settings)
        if item.marker is None:
            if not _landing_matches(item, full):
                lacking.append(_no_landing_files(item, full, ds))
            continue
        marker = full.parent / item.marker
        if not marker.is_file():
            lacking.append(
                f"input {item.name}: the marker file {marker} for {ds or 'the snapshot'} is not there yet "
                f"({len(_landing_matches(item, full))} file(s) match {full.name} so far)"
            )
    return lacking


def _sql_missing(item: SqlInput, plan: Plan, project: Project, settings: Settings, tz: str) -> list[str]:
    import jinja2

    try:
        url = database_url(item.conn_id, settings)
    except ConnectionNotFound as exc:
        raise InputError(f"input {item.name}: {exc}") from None
    file = item.ready_sql or item.sql
    try:
        text = sql.render_file(project.sql_dir / file, **{name: bool(value) for name, value in plan.params.items()})
    except jinja2.TemplateError as exc:
        raise InputError(f"input {item.name}: sql/{file} does not render: {exc}") from exc
    if item.ready_sql is None:  # the input's own query, one row at most: newlines end a trailing comment
        text = f"SELECT 1 AS present FROM (\n{text}\n) AS eastwest_probe LIMIT 1"
    windows: list[tuple[str, dict[str, Any]]] = [("the snapshot", {})]
    if item.interval:
        assert plan.start_day is not None
        first = date.fromisoformat(plan.start_day)
        history = [first - timedelta(days=n) for n in range(item.lookback_days, 0, -1)]
        bounds = [(d, utc_start(d, tz), utc_start(d + timedelta(days=1), tz)) for d in history]
        windows = [
            (f"{day} ({start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC)", {"start": start, "end": end})
            for day, start, end in bounds + plan.day_bounds(tz)
        ]
    lacking = []
    for label, window in windows:
        try:
            table = arrowdb.read_table(url, text, {**plan.params, **window})
        except KeyError as exc:  # a bind the query names but nobody provides
            raise InputError(f"input {item.name}: sql/{file}: {exc.args[0]}") from None
        if item.ready_sql is None:
            if table.num_rows == 0:
                lacking.append(f"input {item.name}: sql/{item.sql} returns no rows for {label}")
            continue
        value = table.column(0)[0].as_py() if table.num_rows and table.num_columns else None
        if not isinstance(value, bool | int | float | Decimal | type(None)):
            raise InputError(
                f"input {item.name}: sql/{item.ready_sql} must return true/false or a number in its first "
                f"column, got {str(value)[:40]!r}"
            )
        if not value:
            lacking.append(f"input {item.name}: sql/{item.ready_sql} says {label} is not complete yet")
    return lacking


def model_batches(item: ModelInput, settings: Settings | None) -> Iterator[Any]:
    """The model's champion as one record batch (an empty one if there is none and it is not required)."""
    from eastwest.east import models

    try:
        table = models.model_table(database_url(item.conn_id, settings), item.model, required=item.required)
    except ConnectionNotFound as exc:
        raise InputError(f"input {item.name}: {exc}") from None
    except models.RegistryError as exc:
        raise InputError(f"input {item.name}: {exc}") from None
    return iter(table.to_batches() or [_empty_batch(table.schema)])


def _empty_batch(schema: Any) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_pylist([], schema=schema)


def batches(item: Input, plan: Plan, project: Project, settings: Settings, tz: str = LOCAL_TZ) -> Iterator[Any]:
    if isinstance(item, SqlInput):
        return sql_batches(item, plan, project, settings, tz)
    if isinstance(item, ModelInput):
        return model_batches(item, settings)
    return landing_batches(item, plan, settings)


def schema_text(schema: Any) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)


def schema_json(schema: Any) -> str:
    """A stable description of an input's schema (names and Arrow types) for the schema record."""
    return json.dumps([[f.name, str(f.type)] for f in schema])


def schema_changes(recorded: str, current: str) -> list[str]:
    """What changed between two :func:`schema_json` descriptions, in words."""
    before, after = dict(json.loads(recorded)), dict(json.loads(current))
    changes = [f"new column {n} ({t})" for n, t in after.items() if n not in before]
    changes += [f"column {n} ({t}) is gone" for n, t in before.items() if n not in after]
    changes += [
        f"column {n} changed from {before[n]} to {t}" for n, t in after.items() if n in before and before[n] != t
    ]
    if not changes and list(before) != list(after):
        changes.append("the columns are in another order")
    return changes
