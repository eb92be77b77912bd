"""The dev-node launcher's pieces that need no Java: settings, ports, the PID guard."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.stores.opensearch.devnode import (
    DEPLOY_DIR,
    ML_PLUGINS,
    DevNodeError,
    NodeBuild,
    RunningNode,
    free_port,
    lay_out_bundles,
    node_settings,
    stop_node,
)


def test_node_settings_are_single_node_on_loopback_without_disk_thresholds(tmp_path: Path) -> None:
    settings = node_settings(home=tmp_path, http_port=9201, transport_port=9301)
    assert settings["discovery.type"] == "single-node"
    assert settings["network.host"] == "127.0.0.1"
    assert settings["cluster.routing.allocation.disk.threshold_enabled"] is False
    assert settings["http.port"] == 9201
    assert settings["path.data"] == str(tmp_path / "data")


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_the_maven_project_is_in_the_repository() -> None:
    pom = (DEPLOY_DIR / "pom.xml").read_text()
    assert "<opensearch.version>2.19.1</opensearch.version>" in pom
    assert "<knn.version>2.19.1.0</knn.version>" in pom


def test_stop_refuses_a_pid_that_is_not_the_node(tmp_path: Path) -> None:
    node = RunningNode(os.getpid(), "http://127.0.0.1:1", tmp_path, tmp_path / "log", 0.0)
    with pytest.raises(DevNodeError, match="not the dev node"):
        stop_node(node)


def test_stop_ends_the_process_it_started(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    node = RunningNode(process.pid, "http://127.0.0.1:1", tmp_path, tmp_path / "log", 0.0, process)
    stop_node(node, timeout_s=10)
    assert process.poll() is not None
    stop_node(node)  # a second stop is a no-op


def test_the_ml_build_is_laid_out_like_a_distribution(tmp_path: Path) -> None:
    root = tmp_path / "build-ml"
    lib = root / "lib"
    lib.mkdir(parents=True)
    jars = [
        "opensearch-2.19.1.jar",
        "lucene-core-9.12.1.jar",
        "transport-netty4-client-2.19.1.jar",
        "netty-buffer-4.1.118.Final.jar",
        "analysis-common-2.19.1.jar",
        "lang-painless-2.19.1.jar",
        "opensearch-scripting-painless-spi-2.19.1.jar",
        "antlr4-runtime-4.13.1.jar",
        "asm-9.7.jar",
        "shoprank-opensearch-devnode-2.19.1.jar",
    ]
    for jar in jars:
        (lib / jar).write_bytes(b"")
    (root / jars[-1]).write_bytes(b"")
    (root / "knn").mkdir()
    for plugin in ML_PLUGINS:
        (root / "plugins" / plugin).mkdir(parents=True)

    lay_out_bundles(root)
    build = NodeBuild(root)

    assert sorted(p.name for p in lib.iterdir()) == [
        "lucene-core-9.12.1.jar",
        "opensearch-2.19.1.jar",
        "shoprank-opensearch-devnode-2.19.1.jar",
    ]
    netty = root / "modules" / "transport-netty4"
    assert (netty / "netty-buffer-4.1.118.Final.jar").is_file()
    descriptor = (netty / "plugin-descriptor.properties").read_text()
    assert "classname=org.opensearch.transport.Netty4Plugin" in descriptor
    assert "opensearch.version=2.19.1" in descriptor
    assert (root / "modules" / "lang-painless" / "asm-9.7.jar").is_file()
    assert (root / "plugins" / "opensearch-knn").is_dir()
    assert build.with_ml
    assert "knn" not in build.classpath


def test_ml_node_settings_turn_off_the_ml_circuit_breakers(tmp_path: Path) -> None:
    plain = node_settings(home=tmp_path, http_port=9201, transport_port=9301)
    ml = node_settings(home=tmp_path, http_port=9201, transport_port=9301, with_ml=True)

    assert not any(key.startswith("plugins.ml_commons") for key in plain)
    assert ml["plugins.ml_commons.only_run_on_ml_node"] is False
    assert ml["plugins.ml_commons.native_memory_threshold"] == 100
    assert ml["discovery.type"] == "single-node"
