"""Unit-test fixtures shared across packages: an in-memory OpenSearch client."""

from __future__ import annotations

import pytest
from opensearch_fakes import FakeCluster


@pytest.fixture
def fake_cluster() -> FakeCluster:
    """An empty in-memory cluster (see ``opensearch_fakes``)."""
    return FakeCluster()
