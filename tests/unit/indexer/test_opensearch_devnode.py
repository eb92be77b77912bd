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
    DevNodeError,
    RunningNode,
    free_port,
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
