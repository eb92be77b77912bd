"""A real OpenSearch node for the tests marked ``opensearch``, started once per session.

The node is built from Maven Central jars by the dev-node launcher (the first run resolves
them, later runs reuse ``SHOPRANK_OPENSEARCH__DEVNODE_CACHE_DIR``, default
``~/.cache/shoprank/opensearch``) and stopped by its PID when the session ends. The tests
are skipped only where java or mvn is missing; CI has both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import pytest

from indexer.stores.opensearch.devnode import (
    RunningNode,
    build_node,
    rss_bytes,
    start_node,
    stop_node,
    tools_missing,
)
from ranker.settings import OpenSearchSettings, Settings


@pytest.fixture(scope="session")
def opensearch_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A single-node cluster on 127.0.0.1 with the k-NN plugin; stopped by PID afterwards."""
    missing = tools_missing()
    if missing:
        pytest.skip(f"the OpenSearch dev node needs {' and '.join(missing)} on PATH")
    defaults = Settings().opensearch
    build = build_node(defaults.devnode_cache_dir.expanduser())
    node = start_node(build, home=tmp_path_factory.mktemp("opensearch-node"), heap="1g")
    rss = rss_bytes(node.pid) or 0
    print(f"\nOpenSearch dev node ready in {node.started_in_s:.1f} s, RSS {rss / 2**20:.0f} MiB")
    try:
        yield node
    finally:
        stop_node(node)


@pytest.fixture(scope="session")
def opensearch_ml_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """A node with k-NN, job-scheduler, ML Commons and neural-search; stopped by PID after.

    The first build resolves about 370 MB of plugin zips into Maven's repository.
    """
    missing = tools_missing()
    if missing:
        pytest.skip(f"the OpenSearch dev node needs {' and '.join(missing)} on PATH")
    defaults = Settings().opensearch
    build = build_node(defaults.devnode_cache_dir.expanduser(), with_ml=True, timeout_s=1800)
    node = start_node(build, home=tmp_path_factory.mktemp("opensearch-ml-node"), heap="1536m")
    rss = rss_bytes(node.pid) or 0
    print(f"\nOpenSearch ML node ready in {node.started_in_s:.1f} s, RSS {rss / 2**20:.0f} MiB")
    try:
        yield node
    finally:
        stop_node(node)


class ConfigFactory(Protocol):
    """Makes settings for the test node with a given alias."""

    def __call__(self, alias: str, **overrides: object) -> OpenSearchSettings: ...


@pytest.fixture(scope="session")
def make_config(opensearch_node: RunningNode) -> ConfigFactory:
    """Settings for the test node: one shard, no replica, grace 0, the alias given."""

    def make(alias: str, **overrides: object) -> OpenSearchSettings:
        values: dict[str, object] = {
            "url": opensearch_node.url,
            "index_alias": alias,
            "replicas": 0,
            "reindex_grace_s": 0.0,
            "bulk_initial_backoff_s": 0.1,
            "timeout_s": 60.0,
        }
        values.update(overrides)
        return OpenSearchSettings.model_validate(values)

    return make
