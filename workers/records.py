"""Job records in Redis: what was submitted (kind, parameters, the task of each step).

Celery keeps each task's state and result; a job is one task or a chain of them, so a
record names its steps in order, and a sorted set lists the jobs newest first. Records
expire with the results they describe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

JOBS_KEY = "shoprank:jobs"
RECORD_PREFIX = "shoprank:job:"
KEEP_JOBS = 1000
"""Jobs the list keeps; older records expire on their own."""


@dataclass(frozen=True)
class Step:
    """One task of a job; steps of one ``group`` run side by side (a chord's header)."""

    name: str
    task_id: str
    group: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """A submitted job: its id (its first task's), kind, parameters and steps."""

    id: str
    kind: str
    params: Mapping[str, Any]
    steps: Sequence[Step]
    submitted_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        data = asdict(self)
        data["params"] = dict(self.params)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> JobRecord:
        data = json.loads(text)
        return cls(
            id=data["id"],
            kind=data["kind"],
            params=data.get("params") or {},
            steps=[Step(**step) for step in data.get("steps") or []],
            submitted_at=float(data.get("submitted_at") or 0.0),
        )


def save_record(client: redis.Redis, record: JobRecord, *, ttl_s: int, only_new: bool) -> bool:
    """Store ``record`` and list it; ``only_new``: leave an existing record as it is.

    Returns whether it was written.
    """
    key = RECORD_PREFIX + record.id
    written = client.set(key, record.to_json(), ex=ttl_s, nx=only_new)
    if not written:
        return False
    pipe = client.pipeline()
    pipe.zadd(JOBS_KEY, {record.id: record.submitted_at})
    pipe.zremrangebyrank(JOBS_KEY, 0, -KEEP_JOBS - 1)
    pipe.execute()
    return True


def load_record(client: redis.Redis, job_id: str) -> JobRecord | None:
    """The record of ``job_id``, or None."""
    text = client.get(RECORD_PREFIX + job_id)
    if text is None:
        return None
    return JobRecord.from_json(text)  # type: ignore[arg-type]


def recent_ids(client: redis.Redis, limit: int) -> list[str]:
    """The ids of the newest ``limit`` jobs, newest first."""
    ids = client.zrevrange(JOBS_KEY, 0, max(0, limit - 1))
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]  # type: ignore[union-attr]
