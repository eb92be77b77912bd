"""Faults the worker tests inject into a real worker process (``Stack.start(include=...)``).

Driven by the worker's environment: ``FAULT_SHARD`` (a shard number) fails that shard of a
sharded build, ``FAULT_KIND=transient`` once (a busy file system, which the task retries,
with ``FAULT_MARKER`` as the file that remembers it failed), ``permanent`` every time (bad
input, which it does not).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import ranker.sharded_indexing as sharded

_build_shard = sharded.build_shard


def _faulty_build_shard(settings: Any, plan: Any, shard: int, **kwargs: Any) -> int:
    if str(shard) == os.environ.get("FAULT_SHARD"):
        if os.environ.get("FAULT_KIND") == "permanent":
            raise ValueError(f"shard {shard}: a product no model can embed (injected)")
        marker = Path(os.environ["FAULT_MARKER"])
        if not marker.exists():
            marker.write_text(f"failed shard {shard} once\n", encoding="utf-8")
            raise OSError(errno.EBUSY, f"shard {shard}: device busy (injected)")
    return _build_shard(settings, plan, shard, **kwargs)


sharded.build_shard = _faulty_build_shard
