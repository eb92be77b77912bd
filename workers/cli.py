"""``shoprank worker``, ``shoprank beat`` and ``shoprank jobs submit|status|list``.

``worker`` and ``beat`` replace the process with ``celery -A workers.app worker|beat``, so
signals reach Celery itself; options Celery knows pass through after ``--``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any

import typer

from ranker.cli_shop import shop_options
from ranker.shop import ShopFiles
from workers.jobspec import KINDS

jobs_app = typer.Typer(
    help="Submit jobs to the workers and follow them (Redis: SHOPRANK_WORKERS__BROKER_URL).",
    no_args_is_help=True,
)
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
"""Context settings of ``worker`` and ``beat``: unknown options go to Celery."""
DONE = ("SUCCESS", "FAILURE", "REVOKED")

LoglevelOption = Annotated[str, typer.Option("--loglevel", "-l", help="Celery's log level.")]


def _exec_celery(arguments: list[str]) -> None:
    """Become ``python -m celery -A workers.app <arguments>``."""
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", *arguments]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def worker_command(
    ctx: typer.Context,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, help="Jobs at once; each uses every core it gets."
        ),
    ] = 1,
    loglevel: LoglevelOption = "INFO",
    queues: Annotated[
        str | None, typer.Option("--queues", "-Q", help="Queues to consume, comma-separated.")
    ] = None,
) -> None:
    """Run a Celery worker for shoprank's jobs (celery -A workers.app worker)."""
    arguments = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}"]
    if queues:
        arguments.append(f"--queues={queues}")
    _exec_celery([*arguments, *ctx.args])


def beat_command(ctx: typer.Context, loglevel: LoglevelOption = "INFO") -> None:
    """Run Celery beat: periodic re-compression every SHOPRANK_WORKERS__COMPRESS_EVERY_S."""
    _exec_celery(["beat", f"--loglevel={loglevel}", *ctx.args])


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v``: the value as JSON when it parses (numbers, booleans, lists, objects), else
    as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--param takes name=value, got {text!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


@jobs_app.command("submit")
@shop_options()
def submit(
    shop: ShopFiles,
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="A job parameter, name=value (JSON values parse: --param folds=3, "
            "--param 'overrides={\"epochs\": 1}'); repeatable.",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job until it ends; print its status.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this (s).")] = 3600,
) -> None:
    """Queue a job and print its id (with --wait: the id on stderr, the final status as JSON).

    The shop's files and mappings (--judgments, --catalog, --field, ...) become the job's
    judgments, catalog, judgment_mapping and catalog_mapping parameters."""
    from ranker.errors import ShoprankError
    from ranker.settings import get_settings
    from workers.client import submit_job

    try:
        params = dict(parse_param(text) for text in param or ())
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    params.update(shop.params())
    settings = get_settings()
    try:
        job_id = submit_job(settings, kind, params)
    except ShoprankError as exc:
        raise _fail(exc.message) from exc
    typer.echo(job_id, err=wait)  # with --wait, stdout is the final status alone (JSON)
    if wait:
        status = _follow(job_id, timeout_s=timeout)
        typer.echo(json.dumps(status, indent=2))
        if status["state"] != "SUCCESS":
            raise typer.Exit(code=1)


def _follow(job_id: str, *, timeout_s: float) -> dict[str, Any]:
    """Poll a job until it ends, printing each new step to stderr."""
    from ranker.settings import get_settings
    from workers.client import job_status

    settings = get_settings()
    deadline = time.monotonic() + timeout_s
    seen: tuple[Any, ...] = ()
    while True:
        status = job_status(settings, job_id)
        progress = status.get("progress") or {}
        now = (status["state"], progress.get("step"))
        if now != seen:
            typer.echo(f"{status['state']} {progress.get('step') or ''}".rstrip(), err=True)
            seen = now
        if status["state"] in DONE or time.monotonic() > deadline:
            return status
        time.sleep(1.0)


@jobs_app.command("status")
def status(job_id: Annotated[str, typer.Argument(help="The id `jobs submit` printed.")]) -> None:
    """Print a job's state, progress, result and error, as JSON."""
    from ranker.errors import ShoprankError
    from ranker.settings import get_settings
    from workers.client import job_status

    try:
        found = job_status(get_settings(), job_id)
    except ShoprankError as exc:
        raise _fail(exc.message) from exc
    typer.echo(json.dumps(found, indent=2))


@jobs_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(min=1, help="Newest jobs shown.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The newest jobs, newest first: id, kind, state, the step under way."""
    from ranker.errors import ShoprankError
    from ranker.settings import get_settings
    from workers.client import list_jobs

    try:
        jobs = list_jobs(get_settings(), limit=limit)
    except ShoprankError as exc:
        raise _fail(exc.message) from exc
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    for job in jobs:
        step = (job.get("progress") or {}).get("step") or ""
        submitted = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["submitted_at"]))
        typer.echo(f"{job['id']}  {submitted}  {job['kind']:<17} {job['state']:<8} {step}")
