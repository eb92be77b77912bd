"""``shoprank models``: list, show, promote, roll back and verify registered model versions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ranker.cli_common import fail
from ranker.errors import ShoprankError
from ranker.registry import ROLES, ModelVersion, Registry
from ranker.settings import get_settings

if TYPE_CHECKING:
    from ranker.promotion import GateDecision

app = typer.Typer(
    help="The model registry: versions per role, the production pointer, its history.",
    no_args_is_help=True,
)

RoleArgument = Annotated[str, typer.Argument(help=f"One of: {', '.join(ROLES)}.")]
VersionArgument = Annotated[str, typer.Argument(help="A version name, e.g. v3.")]


def _registry() -> Registry:
    from ranker.serving_models import open_registry

    return open_registry(get_settings())


def _summary(version: ModelVersion) -> dict[str, Any]:
    gate = version.manifest.get("gate") or {}
    return {
        "version": version.ref,
        "state": version.state.value,
        "created_at": version.manifest.get("created_at"),
        "job": (version.manifest.get("created_by") or {}).get("job"),
        "ndcg@10": version.metrics.get("ndcg@10"),
        "rerank50_p50_ms": version.metrics.get("rerank50_p50_ms"),
        "gate": None if not gate else ("passed" if gate.get("passed") else "refused"),
    }


def _number(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "–"


@app.command("list")
def list_versions(
    role: Annotated[str | None, typer.Argument(help="Only this role.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every version of each role, oldest first; the production one is marked."""
    try:
        registry = _registry()
        roles = [role] if role is not None else list(ROLES)
        rows = [_summary(v) for r in roles for v in registry.versions(r)]
    except ShoprankError as exc:
        raise fail(exc.message) from exc
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'version':<16} {'state':<11} {'NDCG@10':>8} {'p50 ms':>8}  {'gate':<8} created")
    for row in rows:
        typer.echo(
            f"{row['version']:<16} {row['state']:<11} {_number(row['ndcg@10'], 4):>8} "
            f"{_number(row['rerank50_p50_ms'], 1):>8}  {row['gate'] or '–':<8} "
            f"{row['created_at']} ({row['job']})"
        )


@app.command()
def show(role: RoleArgument, version: VersionArgument) -> None:
    """One version's manifest: files, lineage, metrics, the gate's decision and reasons."""
    try:
        found = _registry().get(role, version)
    except ShoprankError as exc:
        raise fail(exc.message) from exc
    typer.echo(json.dumps({"path": str(found.path), **found.manifest}, indent=2))


@app.command()
def promote(
    role: RoleArgument,
    version: VersionArgument,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even when the gate refuses (recorded).")
    ] = False,
) -> None:
    """Promote a candidate when the gate passes; a refusal prints its reasons (exit 1)."""
    from ranker.model_switch import promote as promote_version
    from ranker.promotion import PromotionRefusedError

    try:
        decision = promote_version(get_settings(), role, version, actor="cli", force=force)
    except PromotionRefusedError as exc:
        typer.secho(f"refused {exc.decision.candidate}:", fg=typer.colors.RED, err=True)
        _print_checks(exc.decision, err=True)
        raise typer.Exit(code=1) from exc
    except ShoprankError as exc:
        raise fail(exc.message) from exc
    was = decision.production or "none"
    if decision.passed:
        typer.echo(f"promoted {decision.candidate} (was {was})")
    else:
        typer.secho(
            f"promoted {decision.candidate} (was {was}), forced past the gate:",
            fg=typer.colors.YELLOW,
        )
    _print_checks(decision, err=False)


def _print_checks(decision: GateDecision, *, err: bool) -> None:
    """The failing checks, then the passing ones under their own heading."""
    for reason in decision.failures:
        typer.echo(f"  - {reason}", err=err)
    passed = [reason for reason in decision.reasons if reason not in decision.failures]
    if passed and decision.failures:
        typer.echo("checks that passed:", err=err)
    for reason in passed:
        typer.echo(f"  - {reason}", err=err)


@app.command()
def rollback(
    role: RoleArgument,
    to: Annotated[
        str | None, typer.Option("--to", help="This version (default: the one replaced last).")
    ] = None,
) -> None:
    """Point production back at the version it replaced (or at ``--to``)."""
    try:
        registry = _registry()
        previous = registry.production_version(role)
        restored = registry.rollback(role, to=to, actor="cli")
    except ShoprankError as exc:
        raise fail(exc.message) from exc
    typer.echo(f"production {role}: {restored.version} (was {previous})")


@app.command()
def verify(
    role: Annotated[str | None, typer.Argument(help="Only this role.")] = None,
    version: Annotated[str | None, typer.Argument(help="Only this version.")] = None,
) -> None:
    """Check every file of every (or one) version against its manifest's hashes."""
    registry = _registry()
    try:
        targets = (
            [registry.get(role, version)]
            if role is not None and version is not None
            else [v for r in ([role] if role else list(ROLES)) for v in registry.versions(r)]
        )
    except ShoprankError as exc:
        raise fail(exc.message) from exc
    bad = 0
    for target in targets:
        try:
            registry.verify(target.role, target.version)
        except ShoprankError as exc:
            bad += 1
            typer.secho(f"FAIL {exc.message}", fg=typer.colors.RED)
        else:
            typer.echo(f"ok   {target.ref} ({len(target.manifest.get('files') or {})} files)")
    if bad:
        raise typer.Exit(code=1)
