"""The model registry: versioned models per role, a production pointer, an append-only history.

Layout under the registry's root (``<home>/registry`` by default)::

    <role>/<version>/registry.json   the version's manifest (hashes, lineage, metrics, state)
    <role>/<version>/model/          the model directory (absent for a packaged model)
    <role>/PRODUCTION                the production pointer: {"version": ...}
    <role>/history.jsonl             one line per registration, promotion and rollback
    <role>/.lock                     serializes writers on one machine (flock)
    <role>/.staging-*                versions being written; never listed

A version appears by one rename of a complete staging directory, so a reader never lists a
partial one, whatever happens to the writer. The pointer is replaced with ``os.replace``, so
a reader sees the old production version or the new one, never none. A version whose files
do not match their manifest's hashes is refused (:meth:`Registry.verify`).

A packaged model (all-MiniLM-L6-v2 from its PyPI package, the reranker shipped in the
``ranker`` package) is registered by reference: its manifest records where it is and its
files' hashes, and nothing is copied.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from indexer.stores.atomic import fsync_directory, write_json_atomic
from ranker.errors import ShoprankError

logger = logging.getLogger(__name__)

Role = Literal["embedder", "reranker"]
ROLES: tuple[Role, ...] = ("embedder", "reranker")
MANIFEST = "registry.json"
MODEL_DIR = "model"
POINTER = "PRODUCTION"
HISTORY = "history.jsonl"
FORMAT = 1
_VERSION = re.compile(r"^v(\d+)$")


class VersionState(StrEnum):
    """Where a version is in its life."""

    CANDIDATE = "candidate"
    PRODUCTION = "production"
    RETIRED = "retired"


class RegistryError(ShoprankError):
    """A registry operation that cannot be done: an unknown role or version, a bad request."""


class VersionNotFoundError(RegistryError):
    """No such version (or no production version) in the registry."""


class IntegrityError(RegistryError):
    """A version whose files do not match its manifest's hashes; it never serves."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: where its model directory is and its manifest."""

    role: Role
    version: str
    path: Path
    """The model directory (config.json, weights or model.onnx, tokenizer, shoprank.json)."""
    manifest: Mapping[str, Any]

    @property
    def ref(self) -> str:
        """``role/version``: how logs, headers and the CLI name it."""
        return f"{self.role}/{self.version}"

    @property
    def state(self) -> VersionState:
        return VersionState(self.manifest.get("state", VersionState.CANDIDATE))

    @property
    def metrics(self) -> Mapping[str, Any]:
        metrics: Mapping[str, Any] = self.manifest.get("metrics") or {}
        return metrics

    @property
    def lineage(self) -> Mapping[str, Any]:
        lineage: Mapping[str, Any] = self.manifest.get("lineage") or {}
        return lineage

    @property
    def key(self) -> str | None:
        """The hash of the inputs that built it, when its job gave one."""
        key = self.manifest.get("key")
        return str(key) if key else None


def check_role(role: str) -> Role:
    """``role`` when it is one the registry knows; else a RegistryError naming the choices."""
    if role not in ROLES:
        raise RegistryError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``model_dir``, by relative POSIX path, in name order."""
    hashes = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        hashes[path.relative_to(model_dir).as_posix()] = digest.hexdigest()
    return hashes


def _move_or_copy(source: Path, target: Path, *, move: bool) -> None:
    if move:
        try:
            os.rename(source, target)
            return
        except OSError:  # another file system
            logger.debug("copying %s: it cannot be renamed into the registry", source)
    shutil.copytree(source, target)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its folder, when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry:
    """Versioned models under ``root``; safe for several processes on one machine.

    Writers (register, promote, rollback, manifest updates) hold the role's ``flock``; readers
    take no lock. On a network file system without working ``flock``, run one writer (the
    workers) at a time.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------

    def versions(self, role: str) -> list[ModelVersion]:
        """Every complete version of ``role``, oldest first."""
        role_dir = self.root / check_role(role)
        if not role_dir.is_dir():
            return []
        found = []
        for entry in role_dir.iterdir():
            match = _VERSION.match(entry.name)
            if match and (entry / MANIFEST).is_file():
                found.append((int(match.group(1)), entry.name))
        return [self.get(role, name) for _, name in sorted(found)]

    def get(self, role: str, version: str) -> ModelVersion:
        """One version; VersionNotFoundError when there is none by that name."""
        role = check_role(role)
        version_dir = self.root / role / version
        if not _VERSION.match(version) or not (version_dir / MANIFEST).is_file():
            raise VersionNotFoundError(f"no {role} version {version!r} in {self.root}")
        try:
            manifest = json.loads((version_dir / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"{role}/{version}: unreadable manifest: {exc}") from exc
        return ModelVersion(role, version, self._model_path(version_dir, manifest), manifest)

    def production_version(self, role: str) -> str | None:
        """The version the production pointer names, or None."""
        pointer = self.root / check_role(role) / POINTER
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"{pointer}: unreadable production pointer: {exc}") from exc
        version = data.get("version") if isinstance(data, dict) else None
        return str(version) if version else None

    def production(self, role: str) -> ModelVersion | None:
        """The production version of ``role``, or None when nothing was promoted."""
        version = self.production_version(role)
        return self.get(role, version) if version is not None else None

    def find_by_key(self, role: str, key: str) -> ModelVersion | None:
        """The newest version built from inputs hashed to ``key``, or None."""
        matches = [v for v in self.versions(role) if v.key == key]
        return matches[-1] if matches else None

    def history(self, role: str) -> list[dict[str, Any]]:
        """Every recorded event of ``role``, oldest first."""
        path = self.root / check_role(role) / HISTORY
        if not path.is_file():
            return []
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a torn last line after a crash
                events.append(json.loads(line))
        return events

    def verify(self, role: str, version: str) -> ModelVersion:
        """The version, after checking every file against its manifest's hash.

        Raises IntegrityError naming the first file that is missing, extra or changed.
        """
        found = self.get(role, version)
        expected: Mapping[str, str] = found.manifest.get("files") or {}
        if not expected:
            raise IntegrityError(f"{found.ref}: its manifest lists no files")
        if not found.path.is_dir():
            raise IntegrityError(f"{found.ref}: its model directory {found.path} is missing")
        actual = file_hashes(found.path)
        for name, digest in expected.items():
            if name not in actual:
                raise IntegrityError(f"{found.ref}: file {name} is missing")
            if actual[name] != digest:
                raise IntegrityError(
                    f"{found.ref}: file {name} does not match its manifest hash "
                    f"(sha256 {actual[name][:12]}…, expected {digest[:12]}…)"
                )
        extra = sorted(set(actual) - set(expected))
        if extra:
            raise IntegrityError(f"{found.ref}: file {extra[0]} is not in its manifest")
        return found

    # -- writing ---------------------------------------------------------------------------

    def register(
        self,
        role: str,
        source: Path,
        *,
        lineage: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        job: str = "manual",
        task_id: str | None = None,
        key: str | None = None,
        packaged: str | None = None,
        move: bool = False,
    ) -> ModelVersion:
        """Add ``source`` (a model directory) as a new candidate version and return it.

        The files are copied into a staging directory beside the versions, hashed, and the
        staging directory is renamed to the next free version name. ``packaged``: the model
        is a packaged one (``minilm`` or a shipped model's name) that stays where it is.
        ``key``: the hash of the job's inputs; a version with the same key is returned
        instead of registering a second one. ``move``: ``source`` is a job's own work
        directory, renamed in rather than copied (copied when on another file system).
        """
        role = check_role(role)
        source = Path(source)
        if not (source / "config.json").is_file():
            raise RegistryError(f"{source}: not a model directory (no config.json)")
        role_dir = self.root / role
        role_dir.mkdir(parents=True, exist_ok=True)
        if key is not None and (existing := self.find_by_key(role, key)) is not None:
            logger.info("%s: inputs %s already built as %s", role, key[:12], existing.ref)
            return existing
        self._remove_dead_staging(role_dir)
        staging = role_dir / f".staging-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        staging.mkdir()
        try:
            if packaged is None:
                _move_or_copy(source, staging / MODEL_DIR, move=move)
                hashes = file_hashes(staging / MODEL_DIR)
            else:
                hashes = file_hashes(source)
            manifest: dict[str, Any] = {
                "format": FORMAT,
                "role": role,
                "state": VersionState.CANDIDATE.value,
                "created_at": _now(),
                "created_by": {"job": job, "task_id": task_id, "host": socket.gethostname()},
                "key": key,
                "packaged": packaged,
                "files": hashes,
                "lineage": dict(lineage or {}),
                "metrics": dict(metrics or {}),
                "gate": None,
            }
            with self._lock(role):
                if key is not None and (existing := self.find_by_key(role, key)) is not None:
                    shutil.rmtree(staging, ignore_errors=True)
                    return existing
                version = f"v{self._next_number(role_dir)}"
                manifest["version"] = version
                write_json_atomic(staging / MANIFEST, manifest)
                os.rename(staging, role_dir / version)
                fsync_directory(role_dir)
                self._append_history(
                    role, {"event": "register", "version": version, "job": job, "key": key}
                )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("registered %s/%s from %s", role, version, source)
        return self.get(role, version)

    def update(self, role: str, version: str, **fields: Any) -> ModelVersion:
        """Replace top-level manifest fields (``metrics``, ``gate``) of a version, atomically.

        ``files``, ``version`` and ``role`` cannot change; ``state`` changes only through
        :meth:`promote` and :meth:`rollback`.
        """
        frozen = {"files", "version", "role", "state", "packaged"} & set(fields)
        if frozen:
            raise RegistryError(f"cannot change {', '.join(sorted(frozen))} of a version")
        with self._lock(role):
            found = self.get(role, version)
            write_json_atomic(
                self.root / found.role / version / MANIFEST, {**found.manifest, **fields}
            )
        return self.get(role, version)

    def promote(
        self, role: str, version: str, *, actor: str = "manual", reason: str = ""
    ) -> ModelVersion:
        """Point production at ``version`` (verified first) and record it.

        The previous production version becomes ``retired``. No gate runs here: see
        :func:`ranker.promotion.promote_gated` for the gated path.
        """
        role = check_role(role)
        self.verify(role, version)
        with self._lock(role):
            previous = self.production_version(role)
            self._swap_pointer(role, version)
            if previous is not None and previous != version:
                self._set_state(role, previous, VersionState.RETIRED)
            self._set_state(role, version, VersionState.PRODUCTION)
            self._append_history(
                role,
                {
                    "event": "promote",
                    "version": version,
                    "previous": previous,
                    "actor": actor,
                    "reason": reason,
                },
            )
        logger.info("promoted %s/%s (was %s)", role, version, previous)
        return self.get(role, version)

    def rollback(
        self, role: str, *, to: str | None = None, actor: str = "manual", reason: str = ""
    ) -> ModelVersion:
        """Point production back at ``to``, or at the version production replaced last."""
        role = check_role(role)
        current = self.production_version(role)
        if current is None:
            raise VersionNotFoundError(f"no production {role} to roll back")
        target = to or self._previous_production(role, current)
        if target is None:
            raise VersionNotFoundError(
                f"{role}/{current} replaced nothing; nothing to roll back to"
            )
        self.verify(role, target)
        with self._lock(role):
            self._swap_pointer(role, target)
            self._set_state(role, current, VersionState.RETIRED)
            self._set_state(role, target, VersionState.PRODUCTION)
            self._append_history(
                role,
                {
                    "event": "rollback",
                    "version": target,
                    "previous": current,
                    "actor": actor,
                    "reason": reason,
                },
            )
        logger.info("rolled %s back from %s to %s", role, current, target)
        return self.get(role, target)

    # -- internals -------------------------------------------------------------------------

    def _model_path(self, version_dir: Path, manifest: Mapping[str, Any]) -> Path:
        packaged = manifest.get("packaged")
        if packaged:
            from ranker.model_files import resolve_model_dir

            return resolve_model_dir(str(packaged))
        return version_dir / MODEL_DIR

    def _previous_production(self, role: Role, current: str) -> str | None:
        """The version that was production before ``current`` last became production."""
        for event in reversed(self.history(role)):
            if event.get("event") in ("promote", "rollback") and event.get("version") == current:
                previous = event.get("previous")
                return str(previous) if previous and previous != current else None
        return None

    def _swap_pointer(self, role: Role, version: str) -> None:
        write_json_atomic(
            self.root / role / POINTER, {"version": version, "since": _now()}, indent=None
        )

    def _set_state(self, role: Role, version: str, state: VersionState) -> None:
        found = self.get(role, version)
        write_json_atomic(
            self.root / role / version / MANIFEST, {**found.manifest, "state": state.value}
        )

    def _append_history(self, role: Role, event: Mapping[str, Any]) -> None:
        line = json.dumps({"at": _now(), "role": role, **event}, sort_keys=True) + "\n"
        fd = os.open(self.root / role / HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _next_number(role_dir: Path) -> int:
        numbers = [
            int(match.group(1))
            for entry in role_dir.iterdir()
            if (match := _VERSION.match(entry.name))
        ]
        return max(numbers, default=0) + 1

    @staticmethod
    def _remove_dead_staging(role_dir: Path) -> None:
        """Staging directories whose writer (a process on this host) is gone."""
        host = socket.gethostname()
        for entry in role_dir.glob(".staging-*"):
            parts = entry.name.removeprefix(".staging-").rsplit("-", 2)
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if not _pid_alive(int(parts[1])):
                logger.info("removing %s, left by a writer that died", entry)
                shutil.rmtree(entry, ignore_errors=True)

    def _lock(self, role: str) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.root / check_role(role) / ".lock")
