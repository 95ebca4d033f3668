"""Declare a workload: its inputs, its job, its expectation suite and its target.

These typed objects are the whole user-facing API (with :func:`eastwest.airflow.east_west_dag`,
which turns one into a DAG). Each checks itself when the DAG file is parsed, so a wrong declaration
shows as an import error in the Airflow UI naming the field, never as a failure at 2 a.m. on a hub::

    Workload(
        job="energy_per_unit",
        inputs=(
            SqlInput("readings", sql="source/extract_readings.sql", time_column="ts"),
            LandingFiles("orders", glob="landing/orders/{{ ds }}/*.csv"),
        ),
        target=Target("energy_per_unit", keys=("day", "enterprise_id", "product"), partition_column="day"),
    )

A training workload publishes to a :class:`ModelTarget` (the model registry) instead of a table,
and an inference workload reads the registered champion with a :class:`ModelInput`.

Nothing here imports Airflow or a heavy library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eastwest.east.sql import IDENTIFIER
from eastwest.settings import LOCAL_TZ, Project
from eastwest.west import jobs
from eastwest.west.protocol import is_safe_name

#: Columns the warehouse adds to every target table.
RESERVED_COLUMNS = ("scope", "hub")
CSV_TYPES = ("string", "int64", "float64", "bool", "date", "timestamp")
#: How far back an input may read before a run's first day.
MAX_LOOKBACK_DAYS = 366
#: The warehouse table of the model registry (:mod:`eastwest.east.models`).
MODELS_TABLE = "models"


class WorkloadError(ValueError):
    """A declaration that cannot work; the message names the field and what to do."""


def _identifier(what: str, value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise WorkloadError(f"{what} {value!r} must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
    return value


def _name(what: str, value: Any) -> str:
    if not is_safe_name(value):
        raise WorkloadError(f"{what} {value!r} must be 1-128 letters, digits, '_', '.' or '-'")
    return str(value)


@dataclass(frozen=True)
class SqlInput:
    """A query kept in ``sql/``, run on an Airflow connection and streamed as Arrow batches.

    :param name: the dataset name; the job's ``transform`` receives it as this keyword.
    :param sql: the query's file under the project's ``sql/`` folder. An interval-partitioned
        input filters its time column with the binds ``:start`` and ``:end`` (naive UTC, end
        exclusive); other job parameters are bound by name where the query names them.
    :param conn_id: the Airflow connection of the database (``east_source`` falls back to the
        embedded SQLite database when no such connection exists).
    :param time_column: the column that partitions the input by time; ``None`` for a full snapshot.
    :param ready_sql: optional query under ``sql/`` that says whether the source's data is complete:
        it returns one row whose first column is true (or a non-zero number) when it is. It is asked
        once per local day of the run with that day's ``:start``/``:end`` (snapshot: once, without
        them) and may bind the job's parameters. Without it, "at least one row" of the input's own
        query for the day is the signal. Scheduled runs wait for the signal (see ``wait_for_data``
        of :func:`eastwest.airflow.east_west_dag`).
    :param lookback_days: also read this many local days before the run's first day (history a
        job needs, e.g. last week's readings for a forecast); the result's partition stays the
        run's own days. Waiting for data covers those days too.
    """

    name: str
    sql: str
    conn_id: str = "east_source"
    time_column: str | None = None
    ready_sql: str | None = None
    lookback_days: int = 0

    def __post_init__(self) -> None:
        _name("SqlInput name", self.name)
        _name(f"SqlInput {self.name!r}: conn_id", self.conn_id)
        if self.time_column is not None:
            _identifier(f"SqlInput {self.name!r}: time_column", self.time_column)
        if (
            isinstance(self.lookback_days, bool)
            or not isinstance(self.lookback_days, int)
            or not 0 <= self.lookback_days <= MAX_LOOKBACK_DAYS
        ):
            raise WorkloadError(
                f"SqlInput {self.name!r}: lookback_days must be a whole number of days from 0 to {MAX_LOOKBACK_DAYS}"
            )
        if self.lookback_days and self.time_column is None:
            raise WorkloadError(f"SqlInput {self.name!r}: lookback_days needs a time_column (a snapshot has no days)")
        for what, value in (("sql", self.sql), ("ready_sql", self.ready_sql)):
            if what == "ready_sql" and value is None:
                continue
            if not isinstance(value, str) or not value.endswith(".sql") or ".." in Path(value).parts:
                raise WorkloadError(f"SqlInput {self.name!r}: {what} must name a .sql file under sql/, got {value!r}")

    @property
    def interval(self) -> bool:
        return self.time_column is not None

    def check(self, project: Project, spec: jobs.JobSpec) -> None:
        """The queries exist, render, and bind only ``:start``/``:end`` (with a time column) and job parameters."""
        binds = self._binds(project, spec, "sql", self.sql)
        if self.interval and not {"start", "end"} <= binds:
            raise WorkloadError(
                f"SqlInput {self.name!r}: {self.sql} must filter {self.time_column} with the binds :start and :end "
                "(or declare the input as a snapshot with time_column=None)"
            )
        if self.ready_sql is not None:
            self._binds(project, spec, "ready_sql", self.ready_sql)

    def _binds(self, project: Project, spec: jobs.JobSpec, what: str, file: str) -> set[str]:
        import jinja2
        import sqlalchemy as sa

        from eastwest.east import sql

        path = project.sql_dir / file
        if not path.is_file():
            raise WorkloadError(f"SqlInput {self.name!r}: {what} file {path} does not exist")
        try:
            text = sql.render_file(path, **dict.fromkeys(spec.params, True))
        except jinja2.TemplateError as exc:
            raise WorkloadError(f"SqlInput {self.name!r}: {file} does not render: {exc}") from None
        binds = set(sa.text(text)._bindparams)
        allowed = set(spec.params) | ({"start", "end"} if self.interval else set())
        unknown = sorted(binds - allowed)
        if unknown:
            raise WorkloadError(
                f"SqlInput {self.name!r}: {file} binds :{', :'.join(unknown)}, which "
                f"{'a snapshot does not provide' if not self.interval else 'is not a parameter of the job'}; "
                f"it may bind {', '.join(':' + a for a in sorted(allowed)) or 'nothing'}"
            )
        return binds


@dataclass(frozen=True)
class LandingFiles:
    """Parquet or CSV files that enterprises drop into a landing folder.

    :param name: the dataset name.
    :param glob: where the files are, relative to the data directory (or absolute), with ``{{ ds }}``
        standing for each local day of the run, e.g. ``landing/orders/{{ ds }}/*.csv``.
    :param columns: CSV column types (``string``, ``int64``, ``float64``, ``bool``, ``date``,
        ``timestamp``); columns not listed are inferred. Ignored for Parquet, whose files carry a schema.
    :param format: ``csv`` or ``parquet``; by default from the glob's suffix.
    :param marker: optional name of a file (e.g. ``_SUCCESS``) the producer writes into each day's
        landing folder (the glob's folder) when the day's files are complete; it is never read as
        data. Without it, "at least one file matches the glob" is the signal. Scheduled runs wait
        for the signal (see ``wait_for_data`` of :func:`eastwest.airflow.east_west_dag`).
    """

    name: str
    glob: str
    columns: Mapping[str, str] = field(default_factory=dict)
    format: str | None = None
    marker: str | None = None

    def __post_init__(self) -> None:
        _name("LandingFiles name", self.name)
        if not isinstance(self.glob, str) or ".." in Path(self.glob).parts:
            raise WorkloadError(f"LandingFiles {self.name!r}: glob must be a path pattern without '..'")
        fmt = self.format or Path(self.glob).suffix.lstrip(".").lower()
        if fmt not in ("csv", "parquet"):
            raise WorkloadError(
                f"LandingFiles {self.name!r}: format must be 'csv' or 'parquet' (or a glob ending in .csv/.parquet)"
            )
        object.__setattr__(self, "format", fmt)
        for column, kind in dict(self.columns).items():
            _identifier(f"LandingFiles {self.name!r}: column", column)
            if kind not in CSV_TYPES:
                raise WorkloadError(
                    f"LandingFiles {self.name!r}: column {column} has type {kind!r}; use one of {', '.join(CSV_TYPES)}"
                )
        if self.marker is not None:
            import glob as globlib

            if (
                not isinstance(self.marker, str)
                or not self.marker.strip()
                or self.marker in (".", "..")
                or Path(self.marker).name != self.marker
                or "\\" in self.marker
                or globlib.has_magic(self.marker)
            ):
                raise WorkloadError(
                    f"LandingFiles {self.name!r}: marker must be a plain file name such as '_SUCCESS', "
                    f"got {self.marker!r}"
                )
            if globlib.has_magic(str(Path(self.glob.replace("{{ ds }}", "2000-01-01")).parent)):
                raise WorkloadError(
                    f"LandingFiles {self.name!r}: with a marker, the glob's folder must be one folder per day "
                    f"(wildcards only in the file name), got {self.glob!r}"
                )

    @property
    def interval(self) -> bool:
        return "{{ ds }}" in self.glob

    def check(self, project: Project, spec: jobs.JobSpec) -> None:
        if "{{" in self.glob.replace("{{ ds }}", ""):
            raise WorkloadError(f"LandingFiles {self.name!r}: the only placeholder a glob may use is {{{{ ds }}}}")


@dataclass(frozen=True)
class ModelInput:
    """A registered model, shipped to the hub like data: content-addressed, deduplicated, verified.

    The job receives a table of one row (``name``, ``version``: the SHA-256 of the model bytes,
    ``onnx``: the bytes) holding the model's current champion (:mod:`eastwest.east.models`).

    :param name: the dataset name the job receives.
    :param model: the model's name in the registry (``models`` in the warehouse).
    :param required: without a champion a run fails at once, saying to train the model first; with
        ``required=False`` the job receives an empty table instead (and falls back to its baseline).
    :param conn_id: the warehouse that holds the registry.
    """

    name: str
    model: str
    required: bool = True
    conn_id: str = "east_warehouse"

    def __post_init__(self) -> None:
        _name("ModelInput name", self.name)
        _identifier(f"ModelInput {self.name!r}: model", self.model)
        _name(f"ModelInput {self.name!r}: conn_id", self.conn_id)
        if not isinstance(self.required, bool):
            raise WorkloadError(f"ModelInput {self.name!r}: required must be True or False")

    @property
    def interval(self) -> bool:
        return False

    def check(self, project: Project, spec: jobs.JobSpec) -> None:
        pass


Input = SqlInput | LandingFiles | ModelInput
INPUT_TYPES = (SqlInput, LandingFiles, ModelInput)


@dataclass(frozen=True)
class Target:
    """The warehouse table a workload publishes to.

    :param table: the table, created from the result's Arrow schema when missing.
    :param keys: the result's key columns (the table's primary key, after ``scope``).
    :param partition_column: the date column a run's interval replaces; ``None`` for a snapshot
        workload, whose target is replaced whole (per scope).
    :param conn_id: the Airflow connection of the warehouse (``east_warehouse`` falls back to the
        embedded SQLite database).
    """

    table: str
    keys: tuple[str, ...]
    partition_column: str | None = None
    conn_id: str = "east_warehouse"

    def __post_init__(self) -> None:
        _identifier("Target table", self.table)
        _name(f"Target {self.table!r}: conn_id", self.conn_id)
        if isinstance(self.keys, str) or not self.keys:
            raise WorkloadError(f"Target {self.table!r}: keys must name at least one key column, e.g. keys=('day',)")
        object.__setattr__(self, "keys", tuple(self.keys))
        for key in self.keys:
            _identifier(f"Target {self.table!r}: key column", key)
            if key in RESERVED_COLUMNS:
                raise WorkloadError(f"Target {self.table!r}: {key!r} is added by the warehouse; rename the column")
        if self.partition_column is not None:
            _identifier(f"Target {self.table!r}: partition_column", self.partition_column)


@dataclass(frozen=True)
class ModelTarget:
    """The model registry: a training job's one-row result registers a model version there.

    The result carries ``name``, ``version`` (the SHA-256 of ``onnx``), ``onnx`` (the model bytes)
    and its backtest (``mae``, ``mape``, ``baseline_mae``, ``baseline_mape``, and ``champion_mape``
    when the job scored the current champion on the same held-out days). Publishing registers the
    version as a candidate and promotes it to champion only if it beats the seasonal-naive baseline
    and the champion (:func:`eastwest.east.models.gate`); a rerun of the same version changes
    nothing. Each publish emits an event on the model's Airflow asset, which DAGs reading the model
    with a :class:`ModelInput` also run on.

    :param model: the model's name (the job's ``name`` column must say the same).
    :param conn_id: the warehouse that holds the registry.
    """

    model: str
    conn_id: str = "east_warehouse"
    table: str = MODELS_TABLE
    keys: tuple[str, ...] = ("name", "version")
    partition_column: str | None = None

    def __post_init__(self) -> None:
        _identifier("ModelTarget model", self.model)
        _name(f"ModelTarget {self.model!r}: conn_id", self.conn_id)
        if self.table != MODELS_TABLE or tuple(self.keys) != ("name", "version") or self.partition_column is not None:
            raise WorkloadError(
                f"ModelTarget {self.model!r}: table, keys and partition_column are fixed; set only model"
            )


@dataclass(frozen=True)
class Workload:
    """One verified east → west → east pipeline: inputs, job, parameters, suite and target.

    :param job: the job module's name in the project's ``include/jobs/``.
    :param inputs: one input per dataset the job reads.
    :param target: where the validated result is published.
    :param suite: the expectation suite's file in ``include/expectations/`` (default ``<job>.json``).
    :param params: fixed job parameters; the job receives only parameters it declares.
    :param form: job parameters an analyst sets in the trigger form (unscheduled DAGs).
    :param tz: the time zone of the business day (the run's local days and ``{{ ds }}``).
    """

    job: str
    inputs: tuple[Input, ...]
    target: Target | ModelTarget
    suite: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    form: tuple[str, ...] = ()
    tz: str = LOCAL_TZ

    def __post_init__(self) -> None:
        _name("Workload job", self.job)
        if isinstance(self.inputs, INPUT_TYPES):
            object.__setattr__(self, "inputs", (self.inputs,))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "form", tuple(self.form))
        object.__setattr__(self, "params", dict(self.params))
        if not self.inputs or not all(isinstance(i, INPUT_TYPES) for i in self.inputs):
            raise WorkloadError("Workload inputs must be one or more SqlInput, LandingFiles or ModelInput")
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise WorkloadError(f"Workload inputs: names must be unique, got {', '.join(names)}")
        if not isinstance(self.target, Target | ModelTarget):
            raise WorkloadError("Workload target must be a Target(...) or a ModelTarget(...)")
        import zoneinfo

        if self.tz not in zoneinfo.available_timezones():
            raise WorkloadError(f"Workload tz {self.tz!r} is not a time zone of the tz database")
        if self.suite is None:
            object.__setattr__(self, "suite", f"{self.job}.json")

    @property
    def interval(self) -> bool:
        """Whether runs cover a data interval (any input partitioned by time) or take a full snapshot."""
        return any(i.interval for i in self.inputs)

    def check(self, project: Project) -> jobs.JobSpec:
        """Check the declaration against the project's files; return the job's spec. Raises :class:`WorkloadError`."""
        try:
            spec = jobs.read_spec(project.jobs_dir, self.job)
        except jobs.JobError as exc:
            raise WorkloadError(f"Workload job: {exc}") from exc
        declared, given = set(spec.inputs), [i.name for i in self.inputs]
        for name in given:
            if name not in declared:
                raise WorkloadError(
                    f"Workload inputs: the job {self.job} does not declare an input named {name!r}; "
                    f"its INPUTS are {', '.join(spec.inputs)}"
                )
        missing = [n for n in spec.inputs if n not in given]
        if missing:
            raise WorkloadError(
                f"Workload inputs: the job {self.job} reads {', '.join(missing)}, which no input provides"
            )
        try:
            jobs.check_params(spec, self.params, fill_defaults=False)
        except jobs.JobError as exc:
            raise WorkloadError(f"Workload params: {exc}") from exc
        for name in self.form:
            if name not in spec.params:
                raise WorkloadError(
                    f"Workload form: the job {self.job} has no parameter {name!r}; it takes {', '.join(spec.params)}"
                )
            if name in self.params:
                raise WorkloadError(f"Workload form: {name!r} is fixed in params; it cannot also be a form field")
        for item in self.inputs:
            item.check(project, spec)
        suite = project.suites_dir / str(self.suite)
        if not suite.is_file():
            raise WorkloadError(f"Workload suite: expectation suite {suite} does not exist")
        if self.interval and self.target.partition_column is None and not isinstance(self.target, ModelTarget):
            raise WorkloadError(
                f"Target {self.target.table!r}: partition_column is required because inputs are partitioned by time"
            )
        if not self.interval and self.target.partition_column is not None:
            raise WorkloadError(
                f"Target {self.target.table!r}: a snapshot workload replaces its target whole; drop partition_column"
            )
        return spec

    def connection_ids(self) -> list[str]:
        return sorted({i.conn_id for i in self.inputs if isinstance(i, SqlInput | ModelInput)} | {self.target.conn_id})

    @property
    def models_read(self) -> list[str]:
        """The registered models this workload's job reads (its :class:`ModelInput` s)."""
        return sorted({i.model for i in self.inputs if isinstance(i, ModelInput)})

    @property
    def models_awaited(self) -> list[str]:
        """The models whose new versions should start this workload: those it reads but does not
        itself train (training reads its own champion to compare with; it must not run on its own
        announcements)."""
        trained = self.target.model if isinstance(self.target, ModelTarget) else None
        return [m for m in self.models_read if m != trained]
