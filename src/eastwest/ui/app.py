"""The FastAPI app the plugin mounts on Airflow's API server under ``/eastwest``.

Plugin apps get no authentication from Airflow, so every route here declares it: an Airflow login
(the UI's session cookie or a bearer token; none gives 401) and, for a run's report, read access to
the runs of its DAG in the auth manager in use (403 without). Reports are read from Airflow's
metadata database (the run's task instances and its report step's XCom), never from a worker's
disk, so they work with workers on other machines. Path values are checked against Airflow's own
id pattern; anything else is 404 and never reaches a file or a query.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse

from eastwest.ui import pages

log = logging.getLogger(__name__)

#: Airflow's own characters for DAG ids, and its default pattern for run ids (``allowed_run_id_pattern``).
DAG_ID = re.compile(r"[A-Za-z0-9_.-]{1,250}")
RUN_ID = re.compile(r"[A-Za-z0-9_.~:+-]{1,250}")
#: The files the pages load, by name: nothing else is served, whatever the path says.
STATIC = {name: pages.STATIC_DIR / name for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")}
#: How many recent runs the hubs page reads, and how long a hub's probe answer is reused (s).
HUB_PAGE_RUNS = 200
HUB_PROBE_TTL = 15.0
HUB_PROBE_TIMEOUT = 5.0
REPORT_TASK = "report"
#: The tag every DAG built by ``east_west_dag`` carries.
TAG = "eastwest"

app = FastAPI(title="East → west reports", docs_url=None, redoc_url=None, openapi_url=None)


def _checked(pattern: re.Pattern[str], value: str) -> str:
    if not pattern.fullmatch(value) or value in (".", ".."):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such run")
    return value


def _tasks(session: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import select

    rows = session.execute(
        select(TI.task_id, TI.state, TI.start_date, TI.end_date, TI.try_number, TI.map_index).where(
            TI.dag_id == dag_id, TI.run_id == run_id
        )
    ).all()
    tasks = []
    for task_id, state, start, end, try_number, map_index in rows:
        name = task_id if map_index in (None, -1) else f"{task_id}[{map_index}]"
        seconds = round((end - start).total_seconds(), 2) if start and end else None
        tasks.append(
            {
                "task": name,
                "state": str(state) if state else "none",
                "start": start.isoformat() if start else None,
                "end": end.isoformat() if end else None,
                "seconds": seconds,
                "try_number": try_number,
            }
        )
    return sorted(tasks, key=lambda t: t["start"] or "~")


def _documents(session: Any, *, dag_ids: set[str], run_id: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
    """Report documents recorded by runs of ``dag_ids`` (newest first), with their dag and run ids."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    from eastwest.east.report import DOCUMENT_KEY

    if not dag_ids:
        return []
    query = select(XComModel).where(
        XComModel.key == DOCUMENT_KEY, XComModel.task_id == REPORT_TASK, XComModel.dag_id.in_(sorted(dag_ids))
    )
    if run_id is not None:
        query = query.where(XComModel.run_id == run_id)
    found = []
    for row in session.scalars(query.order_by(XComModel.timestamp.desc()).limit(limit)):
        value = XComModel.deserialize_value(row)
        if isinstance(value, dict):
            found.append({**value, "dag_id": row.dag_id, "run_id": row.run_id, "recorded_at": row.timestamp})
    return found


@app.get(
    "/reports/{dag_id}/{run_id}",
    response_class=HTMLResponse,
    dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
)
def report(dag_id: str, run_id: str, request: Request, session: SessionDep) -> HTMLResponse:
    """A run's report, for the run's "Report" tab."""
    from airflow.models.dag import DagTag
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    dag_id, run_id = _checked(DAG_ID, dag_id), _checked(RUN_ID, run_id)
    run_state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run_state is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such run")
    documents = _documents(session, dag_ids={dag_id}, run_id=run_id)
    if not documents and not session.scalar(select(DagTag.name).where(DagTag.dag_id == dag_id, DagTag.name == TAG)):
        return HTMLResponse(pages.not_ours_page(dag_id))
    page = pages.report_page(
        documents[0] if documents else None,
        tasks=_tasks(session, dag_id, run_id),
        run_id=run_id,
        dag_id=dag_id,
        run_state=str(run_state),
        static=_static(request),
        ui_root=request.scope.get("root_path", "").removesuffix("/eastwest"),
    )
    return HTMLResponse(page)


def _static(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}/static"


@app.get("/static/{name}")
def static(name: str, user: GetUserDep) -> FileResponse:
    """The chart library's files (and nothing else)."""
    path = STATIC.get(name)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "private, max-age=86400"})


@app.get("/hubs", response_class=HTMLResponse)
def hubs(request: Request, user: GetUserDep, session: SessionDep) -> HTMLResponse:
    """The western hubs: health, load, slots, prices, cached data; recent transfers and cost per
    workload per day from the reports of runs of the DAGs this user may read."""
    from airflow.api_fastapi.app import get_auth_manager

    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
    documents = _documents(session, dag_ids=set(readable), limit=HUB_PAGE_RUNS)
    transfers, costs = [], []
    for doc in documents:
        summary = doc.get("summary") or {}
        for t in doc.get("transfers") or []:
            if t.get("seconds") and t.get("started_at"):
                transfers.append(
                    {
                        "hub": t.get("hub"),
                        "direction": t.get("step"),
                        "at": datetime.fromtimestamp(t["started_at"], UTC).isoformat(),
                        "mb": round((t.get("wire_bytes") or 0) / 1e6, 3),
                        "mb_per_s": round((t.get("wire_bytes") or 0) / 1e6 / t["seconds"], 3),
                        "dag_id": doc["dag_id"],
                        "run_id": doc["run_id"],
                    }
                )
        if summary.get("cost_yuan") is not None:
            day = doc["recorded_at"].date().isoformat() if doc.get("recorded_at") else "?"
            costs.append({"day": day, "dag_id": doc["dag_id"], "cost_yuan": summary["cost_yuan"]})
    page = pages.hubs_page(
        hub_rows(), transfers=transfers, costs=costs, runs=len(documents), ttl=HUB_PROBE_TTL, static=_static(request)
    )
    return HTMLResponse(page)


def hub_rows() -> list[dict[str, Any]]:
    """Each configured hub's declared profile and what its probe answers (in parallel, bounded)."""
    from eastwest.hub import placement
    from eastwest.settings import get_settings

    settings = get_settings()
    names = list(settings.hubs)
    cache_dir = settings.data_dir / "ui" / "probes"
    cache_dir.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> dict[str, Any]:
        started = time.monotonic()
        row: dict[str, Any] = {"name": name}
        try:
            profile = placement.profile(name)
            row.update({k: getattr(profile, k) for k in ("region", *placement.HubProfile.NUMBERS)})
            found = placement.survey_hub(name, {}, timeout=HUB_PROBE_TIMEOUT, ttl=HUB_PROBE_TTL, cache_dir=cache_dir)
        except Exception as exc:  # a hub's broken connection shows on its row, not as a broken page
            log.warning("hubs page: hub %s: %s", name, exc)
            row.update({"ok": False, "reason": str(exc)[:300]})
            return row
        answer = found.status
        cache = answer.get("cache") or {}
        row.update(
            {
                "ok": found.ok,
                "reason": found.reason,
                "running": answer.get("running"),
                "queued": answer.get("queued"),
                "slots": placement.usable_slots(profile, answer),
                "load": f"{answer['load1']} / {answer.get('cpus')}" if "load1" in answer else None,
                "free_memory_gb": _gb(answer.get("free_memory_bytes")),
                "free_disk_gb": _gb(answer.get("free_disk_bytes")),
                "cached_chunks": cache.get("chunks"),
                "cached_mb": round(cache["bytes"] / 1e6, 2) if cache.get("bytes") is not None else None,
                "bundles": len(answer.get("bundles") or []) if found.ok else None,
                "probe_seconds": round(time.monotonic() - started, 2),
            }
        )
        return row

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        return list(pool.map(one, names))


def _gb(value: Any) -> float | None:
    return round(float(value) / 1e9, 1) if value is not None else None
