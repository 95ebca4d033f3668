"""Jobs: what a job module declares, how its parameters are checked, and how a hub loads one.

A job is a module ``<name>.py`` in a project's jobs package (``include/jobs/``) with three names:

``INPUTS``
    a tuple of dataset names; ``transform`` receives one LazyFrame per name, as keyword arguments.
``PARAMS``
    the only parameters it accepts, each a small JSON-schema literal, e.g.
    ``{"z_threshold": {"type": "number", "default": 3.5, "minimum": 0}}``. Types: ``string``
    (``pattern``, ``maxLength`` (default 256), ``enum``, ``format: "timezone"``: a name of the tz
    database, never a path), ``number`` and ``integer`` (``minimum``, ``maximum``, ``enum``; always
    finite: no NaN or Infinity, integers within int64), ``boolean``, ``array`` of strings (``items``
    with the string keywords, ``maxItems`` (default 1000), ``uniqueItems``: de-duplicated and
    sorted). ``title`` and ``description`` label the Airflow form.
``transform(**frames, params) -> LazyFrame``
    pure: no I/O, no clock.

and may declare

``PARTITION_BY``
    a tuple of column names of its one input such that rows with different values of them never
    meet in the job (``daily_kpis``: one machine's readings never meet another's). A hub then
    runs the job group by group of those values when the input is large, so its memory stays flat
    whatever the input's size; the result is the groups' results one after the other.

``INPUTS`` and ``PARAMS`` must be literals: the east reads them from the source file without
importing it (:func:`read_spec`), so a DAG file can check a declaration in milliseconds and the
hub can check parameters before any job code runs. Standard library only.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.machinery
import importlib.util
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from eastwest.west.protocol import excerpt, is_safe_name

TYPES = ("string", "number", "integer", "boolean", "array")
#: Names an input may not have: the transform's own argument, and datasets the pipeline names itself.
RESERVED_INPUTS = ("params", "bundle")
MAX_STRING = 256
MAX_ITEMS = 1000
#: Integers a job receives fit a 64-bit column.
MAX_INTEGER = (1 << 63) - 1
#: The only ``format`` a string parameter may declare.
FORMATS = ("timezone",)
#: What a tz database name looks like: ``/``-separated words, never ``.`` (so never a path).
TZ_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]{0,63}(?:/[A-Za-z0-9_+-]{1,64}){0,3}$")


class JobError(ValueError):
    """A job that does not exist, is malformed, or parameters it does not accept."""


@dataclass(frozen=True)
class JobSpec:
    """What a job module declares, read without importing it."""

    name: str
    inputs: tuple[str, ...]
    params: dict[str, dict[str, Any]]
    doc: str = ""
    partition_by: tuple[str, ...] = ()

    def defaults(self) -> dict[str, Any]:
        return {k: v.get("default") for k, v in self.params.items() if "default" in v}


def job_names(jobs_dir: Path) -> list[str]:
    """The jobs of a jobs package: every public module in it."""
    return sorted(
        p.stem
        for p in Path(jobs_dir).glob("*.py")
        if p.stem.isidentifier() and not p.stem.startswith("_") and p.is_file() and not p.is_symlink()
    )


def job_path(jobs_dir: Path, name: str) -> Path:
    names = job_names(jobs_dir)
    if name not in names:
        raise JobError(f"job {name!r} is not in the jobs package; jobs: {', '.join(names) or '(none)'}")
    return Path(jobs_dir) / f"{name}.py"


def read_spec(jobs_dir: Path, name: str) -> JobSpec:
    """Read ``INPUTS``, ``PARAMS`` and the docstring of a job from its source, without running it."""
    path = job_path(jobs_dir, name)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise JobError(f"job {name}: {path} does not parse: {exc}") from exc
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Name)
                    and target.id in ("INPUTS", "PARAMS", "PARTITION_BY")
                    and node.value is not None
                ):
                    try:
                        found[target.id] = ast.literal_eval(node.value)
                    except ValueError as exc:
                        raise JobError(f"job {name}: {target.id} in {path} must be a literal") from exc
    transform = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "transform"), None)
    if transform is None:
        raise JobError(f"job {name}: {path} defines no transform(...) function")
    inputs = found.get("INPUTS")
    if (
        not isinstance(inputs, tuple | list)
        or not inputs
        or not all(isinstance(i, str) and i.isidentifier() and is_safe_name(i) for i in inputs)
    ):
        raise JobError(f"job {name}: INPUTS must be a non-empty tuple of dataset names that are Python identifiers")
    clash = [i for i in inputs if i in RESERVED_INPUTS or i == name]
    if clash or len(set(inputs)) != len(inputs):
        raise JobError(f"job {name}: input names must be unique and not {', '.join(sorted({*RESERVED_INPUTS, name}))}")
    arguments = [a.arg for a in transform.args.args + transform.args.kwonlyargs]
    if transform.args.kwarg is None and sorted(arguments) != sorted([*inputs, "params"]):
        raise JobError(
            f"job {name}: transform takes ({', '.join(arguments)}); it must take one argument per input "
            f"({', '.join(inputs)}) and params"
        )
    params = found.get("PARAMS", {})
    if not isinstance(params, dict):
        raise JobError(f"job {name}: PARAMS must be a dict of parameter schemas")
    for key, schema in params.items():
        if not is_safe_name(key) or not isinstance(schema, dict) or schema.get("type") not in TYPES:
            raise JobError(f"job {name}: PARAMS[{key!r}] must be a schema with a type among {', '.join(TYPES)}")
        items = schema.get("items", {}) if schema["type"] == "array" else {}
        if not isinstance(items, dict) or items.get("type", "string") != "string":
            raise JobError(f"job {name}: PARAMS[{key!r}] may only be an array of strings")
        if ("format" in schema and (schema["type"] != "string" or schema["format"] not in FORMATS)) or (
            "format" in items and items["format"] not in FORMATS
        ):  # a format nobody checks would let any value through
            raise JobError(f"job {name}: PARAMS[{key!r}] may declare only format {FORMATS[0]!r}, on strings")
        if "default" in schema:
            check_value(name, key, schema, schema["default"])
    partition_by = found.get("PARTITION_BY", ())
    if not isinstance(partition_by, tuple | list) or not all(
        isinstance(c, str) and is_safe_name(c) for c in partition_by
    ):
        raise JobError(f"job {name}: PARTITION_BY must be a tuple of column names")
    if partition_by and len(inputs) != 1:
        raise JobError(f"job {name}: PARTITION_BY needs exactly one input; it has {len(inputs)}")
    return JobSpec(
        name=name, inputs=tuple(inputs), params=params, doc=ast.get_docstring(tree) or "",
        partition_by=tuple(partition_by),
    )  # fmt: skip


def _fail(job: str, key: str, message: str) -> JobError:
    return JobError(f"parameter {key} of job {job} {message}")


def check_value(job: str, key: str, schema: dict[str, Any], value: Any) -> Any:
    """Return ``value`` checked (and normalised) against one parameter schema, else raise :class:`JobError`."""
    kind = schema["type"]
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(job, key, f"must be true or false, not {type(value).__name__}")
        return value
    if kind in ("number", "integer"):
        ok = isinstance(value, int) if kind == "integer" else isinstance(value, int | float)
        if not ok or isinstance(value, bool):
            raise _fail(job, key, f"must be a{'n integer' if kind == 'integer' else ' number'}, not {_shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):  # NaN, Infinity, or 1e999 in JSON
            raise _fail(job, key, "must be a finite number")
        if isinstance(value, int) and not -MAX_INTEGER <= value <= MAX_INTEGER:
            raise _fail(job, key, f"is out of range: {_shown(value)} (integers fit in 64 bits)")
        if "minimum" in schema and value < schema["minimum"]:
            raise _fail(job, key, f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise _fail(job, key, f"must be at most {schema['maximum']}")
        if "enum" in schema and value not in schema["enum"]:
            raise _fail(job, key, f"must be one of {', '.join(map(str, schema['enum']))}")
        return value
    if kind == "string":
        return _check_string(job, key, schema, value)
    if not isinstance(value, list):
        raise _fail(job, key, f"must be a list, not {type(value).__name__}")
    if len(value) > schema.get("maxItems", MAX_ITEMS):
        raise _fail(job, key, f"takes at most {schema.get('maxItems', MAX_ITEMS)} items")
    items = [_check_string(job, key, schema.get("items", {}), v) for v in value]
    return sorted(set(items)) if schema.get("uniqueItems") else items


def _shown(value: Any) -> str:
    """A parameter's value in a message: its type and a short excerpt, never the whole value."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str | int | float):
        return f"{type(value).__name__} {excerpt(value)}"
    return type(value).__name__


@functools.lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    """The names of the tz database on this machine (read once: it walks a directory tree)."""
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def _check_string(job: str, key: str, schema: dict[str, Any], value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(job, key, f"must be a string, not {type(value).__name__}")
    if len(value) > schema.get("maxLength", MAX_STRING):
        raise _fail(job, key, f"is longer than {schema.get('maxLength', MAX_STRING)} characters")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(job, key, f"must be one of {', '.join(map(str, schema['enum']))}")
    if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
        raise _fail(job, key, f"value {value[:40]!r} does not match {schema['pattern']}")
    if schema.get("format") == "timezone" and (TZ_NAME.fullmatch(value) is None or value not in time_zones()):
        raise _fail(job, key, f"{value[:40]!r} is not a time zone of the tz database (e.g. Asia/Shanghai)")
    return value


def check_params(spec: JobSpec, params: Any, *, fill_defaults: bool = True) -> dict[str, Any]:
    """The parameters a job will receive: ``params`` checked against its ``PARAMS``, defaults filled in."""
    if not isinstance(params, dict):
        raise JobError(f"parameters for job {spec.name} must be an object of name: value")
    if len(params) > 100:
        raise JobError(f"parameters for job {spec.name}: at most 100")
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        accepted = ", ".join(sorted(spec.params)) or "none"
        named = ", ".join(k if is_safe_name(k) and len(k) <= 40 else excerpt(k) for k in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise JobError(f"job {spec.name} does not take parameter(s) {named}{more}; it takes: {accepted}")
    checked = {key: check_value(spec.name, key, spec.params[key], value) for key, value in params.items()}
    if fill_defaults:
        return {**spec.defaults(), **checked}
    return checked


def load_module(jobs_dir: Path, name: str) -> ModuleType:
    """Import job ``name`` from ``jobs_dir`` (a verified bundle's jobs package); refuse any other name.

    The jobs package is imported as a package of its own (one per folder), so a job may share code
    with its siblings through a private module: ``from . import _features`` (``_``-prefixed modules
    travel in the bundle but are not jobs).
    """
    path = job_path(jobs_dir, name)
    folder = Path(jobs_dir).resolve()
    package = f"eastwest_jobs_{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}"
    if package not in sys.modules:  # a namespace for the folder: no code of its own runs
        parent = importlib.machinery.ModuleSpec(package, None, is_package=True)
        parent.submodule_search_locations = [str(folder)]
        sys.modules[package] = importlib.util.module_from_spec(parent)
    module_name = f"{package}.{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise JobError(f"job {name}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
