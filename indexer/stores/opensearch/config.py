"""What the OpenSearch store reads from settings (``ranker.settings.OpenSearchSettings``).

A protocol, so the indexer does not import the ranker: the settings section satisfies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import SecretStr

SpaceType = Literal["innerproduct", "cosinesimil"]
HybridMode = Literal["client_rrf", "server"]
HybridNormalization = Literal["min_max", "l2"]


class OpenSearchConfig(Protocol):
    """Connection, index design and bulk settings of one OpenSearch cluster."""

    url: str
    verify_certs: bool
    ca_certs: Path | None
    username: str | None
    password: SecretStr | None
    api_key: SecretStr | None
    timeout_s: float
    search_timeout_s: float
    max_retries: int
    index_alias: str
    shards: int
    replicas: int
    space_type: SpaceType
    hnsw_m: int
    hnsw_ef_construction: int
    hnsw_ef_search: int
    hybrid: HybridMode
    hybrid_pipeline: str
    hybrid_normalization: HybridNormalization
    bulk_max_docs: int
    bulk_max_bytes: int
    bulk_max_retries: int
    bulk_initial_backoff_s: float
    bulk_max_backoff_s: float
    reindex_grace_s: float
