"""A single OpenSearch 2.19.1 node with the k-NN plugin, built from Maven Central jars.

For development and tests only. ``deploy/opensearch/pom.xml`` resolves OpenSearch core, the
netty4 HTTP transport, analysis-common, lang-painless and the k-NN plugin zip, and compiles
``DevNode`` (a ``Node`` subclass that loads those plugins from the classpath). The k-NN zip
from Maven has no native libraries, so only ``engine: lucene`` works on this node.

- :func:`build_node` runs Maven into ``<cache>/build-<hash>`` (a temp dir renamed into place;
  the hash covers the pom and the Java source, so an edit rebuilds). Maven keeps the jars in
  its own local repository (``~/.m2``).
- :func:`start_node` writes the node's settings under ``home``, starts Java on 127.0.0.1 on a
  free port (``discovery.type: single-node``, disk thresholds off) and waits for yellow.
- :func:`stop_node` stops that process by its PID: SIGTERM, then SIGKILL after a time-out.

With ``with_ml`` (``--with-ml``) the build also holds job-scheduler, ML Commons (its zip is
about 350 MB; Maven keeps it in ``~/.m2`` and the unpacked plugins stay in
``<cache>/build-ml-<hash>``) and neural-search, which the ``rerank`` search pipeline needs.
Those plugins extend others (ml-commons extends job-scheduler, neural-search extends k-NN)
and bundle jars the modules also use (netty, asm), so that build is laid out like a
distribution: the modules under ``modules/`` and the plugins under ``plugins/`` load as
bundles with their own class loaders, and only core is on the classpath.

Command line (state in ``<cache>/node.json``)::

    python -m indexer.stores.opensearch.devnode start|status|stop|build [--with-ml]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

OPENSEARCH_VERSION = "2.19.1"
KNN_VERSION = "2.19.1.0"
ML_VERSION = "2.19.1.0"
ML_PLUGINS = ("opensearch-job-scheduler", "opensearch-ml", "opensearch-neural-search")
"""The plugins ``with_ml`` adds (folder names under ``plugins/``; the pom's ``ml`` profile)."""
MAIN_CLASS = "org.shoprank.devnode.DevNode"
DEPLOY_DIR = Path(__file__).resolve().parents[3] / "deploy" / "opensearch"
"""The Maven project (pom.xml and the DevNode source) in the repository."""
STATE_FILE = "node.json"
MIN_HEAP = "512m"
ML_MIN_HEAP = "1536m"
"""The ML plugins need more heap than the plain node; a smaller ``--heap`` is raised."""

_Module = tuple[str, str, tuple[str, ...]]
MODULES: tuple[_Module, ...] = (
    (
        "transport-netty4",
        "org.opensearch.transport.Netty4Plugin",
        ("transport-netty4-client-", "netty-"),
    ),
    (
        "analysis-common",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        ("analysis-common-",),
    ),
    (
        "lang-painless",
        "org.opensearch.painless.PainlessPlugin",
        ("lang-painless-", "opensearch-scripting-painless-spi-", "antlr4-runtime-", "asm-"),
    ),
)
"""The distribution's modules a bundle layout needs: name, plugin class, jar name prefixes."""

_LOG4J = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.deprecation.name = org.opensearch.deprecation
logger.deprecation.level = error
"""


class DevNodeError(RuntimeError):
    """The development node could not be built, started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class NodeBuild:
    """A built node: the DevNode jar, the resolved jars and the unpacked k-NN plugin.

    A plain build runs everything from the classpath. A build with the ML plugins (it has
    ``plugins/``) keeps only core on the classpath; modules and plugins load as bundles.
    """

    root: Path

    @property
    def with_ml(self) -> bool:
        """Whether this build holds the ML plugins (and the bundle layout)."""
        return (self.root / "plugins").is_dir()

    @property
    def classpath(self) -> str:
        """The Java classpath: DevNode and core, plus modules and k-NN in a plain build."""
        jars = sorted(self.root.glob("shoprank-opensearch-devnode-*.jar"))
        if not jars:
            raise DevNodeError(f"{self.root}: no DevNode jar; rebuild with `devnode build`")
        parts = [str(jars[0]), str(self.root / "lib" / "*")]
        if not self.with_ml:
            parts.append(str(self.root / "knn" / "*"))
        return os.pathsep.join(parts)


@dataclass(slots=True)
class RunningNode:
    """A node this process (or an earlier `devnode start`) launched."""

    pid: int
    url: str
    home: Path
    log_path: Path
    started_in_s: float
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, object]:
        """The fields a state file keeps (not the process handle)."""
        return {
            "pid": self.pid,
            "url": self.url,
            "home": str(self.home),
            "log_path": str(self.log_path),
            "started_in_s": round(self.started_in_s, 2),
        }


def tools_missing() -> list[str]:
    """The names of the tools the node needs (java, mvn) that are not on PATH."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def _source_hash(deploy_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([deploy_dir / "pom.xml", *deploy_dir.glob("src/**/*.java")]):
        digest.update(path.relative_to(deploy_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _descriptor(*, name: str, classname: str, version: str) -> str:
    return (
        f"description=shoprank dev node: {name}\nversion={version}\nname={name}\n"
        f"classname={classname}\njava.version=11\nopensearch.version={OPENSEARCH_VERSION}\n"
        "custom.foldername=\nextended.plugins=\nhas.native.controller=false\n"
    )


def lay_out_bundles(root: Path) -> None:
    """Turn a Maven build with ``plugins/`` into a distribution's layout, in place.

    The modules' jars move from ``lib/`` to ``modules/<name>/`` with a plugin descriptor each,
    and the unpacked k-NN plugin moves to ``plugins/opensearch-knn``; ``lib/`` keeps core.
    """
    lib = root / "lib"
    for name, classname, prefixes in MODULES:
        target = root / "modules" / name
        target.mkdir(parents=True, exist_ok=True)
        moved = [jar for jar in sorted(lib.glob("*.jar")) if jar.name.startswith(prefixes)]
        if not moved:
            raise DevNodeError(f"{lib}: no jars for module {name} ({', '.join(prefixes)})")
        for jar in moved:
            jar.rename(target / jar.name)
        (target / "plugin-descriptor.properties").write_text(
            _descriptor(name=name, classname=classname, version=OPENSEARCH_VERSION)
        )
    (root / "knn").rename(root / "plugins" / "opensearch-knn")
    missing = [p for p in ML_PLUGINS if not (root / "plugins" / p).is_dir()]
    if missing:
        raise DevNodeError(f"{root}: the ml profile did not unpack {', '.join(missing)}")


def build_node(
    cache_dir: Path,
    *,
    deploy_dir: Path = DEPLOY_DIR,
    timeout_s: float = 900.0,
    with_ml: bool = False,
) -> NodeBuild:
    """Resolve the jars and compile DevNode with Maven, unless this source is built already.

    ``with_ml`` adds job-scheduler, ML Commons and neural-search (a separate build directory,
    ``build-ml-<hash>``; the first one downloads about 370 MB into Maven's repository).
    """
    missing = tools_missing()
    if missing:
        raise DevNodeError(f"the OpenSearch dev node needs {' and '.join(missing)} on PATH")
    if not (deploy_dir / "pom.xml").is_file():
        raise DevNodeError(f"{deploy_dir}: no pom.xml (the dev node runs from a source checkout)")
    cache_dir = cache_dir.expanduser()
    target = cache_dir / f"build{'-ml' if with_ml else ''}-{_source_hash(deploy_dir)}"
    if target.is_dir():
        return NodeBuild(target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(deploy_dir / "pom.xml"),
        f"-Dshoprank.build={staging}",
        *(["-Pml"] if with_ml else []),
        "package",
    ]
    logger.info("building the OpenSearch dev node: %s", " ".join(command))
    started = time.perf_counter()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise DevNodeError(f"maven did not finish in {timeout_s:.0f} s") from exc
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        output = (result.stdout + result.stderr)[-4000:]
        raise DevNodeError(f"maven failed (exit {result.returncode}):\n{output}")
    if with_ml:
        try:
            lay_out_bundles(staging)
        except (DevNodeError, OSError):
            shutil.rmtree(staging, ignore_errors=True)
            raise
    os.replace(staging, target)
    logger.info("built %s in %.1f s", target, time.perf_counter() - started)
    return NodeBuild(target)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


ML_NODE_SETTINGS: dict[str, object] = {
    "plugins.ml_commons.only_run_on_ml_node": False,
    "plugins.ml_commons.native_memory_threshold": 100,
    "plugins.ml_commons.jvm_heap_memory_threshold": 100,
    "plugins.ml_commons.disk_free_space_threshold": -1,
}
"""ML Commons on a small single dev node: models run on it, and its memory circuit breakers
(tripped by a busy development machine) are off."""


def node_settings(
    *, home: Path, http_port: int, transport_port: int, with_ml: bool = False
) -> dict[str, object]:
    """The node's opensearch.yml, as a mapping (JSON is valid YAML)."""
    return {
        **(ML_NODE_SETTINGS if with_ml else {}),
        "cluster.name": "shoprank-dev",
        "node.name": "shoprank-dev",
        "network.host": "127.0.0.1",
        "http.port": http_port,
        "transport.port": transport_port,
        "discovery.type": "single-node",
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "path.data": str(home / "data"),
        "path.logs": str(home / "logs"),
        "action.destructive_requires_name": True,
    }


def _cluster_status(url: str) -> str | None:
    """The cluster's health status, or None while the node does not answer."""
    request = f"{url}/_cluster/health?wait_for_status=yellow&timeout=1s"
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None
    status = body.get("status")
    return str(status) if status is not None else None


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_node(
    build: NodeBuild,
    *,
    home: Path,
    heap: str = "1g",
    http_port: int | None = None,
    timeout_s: float = 180.0,
) -> RunningNode:
    """Start the node with its data under ``home`` and wait until the cluster is yellow."""
    home = home.expanduser().resolve()
    http_port = http_port or free_port()
    transport_port = free_port()
    while transport_port == http_port:
        transport_port = free_port()
    settings = node_settings(
        home=home, http_port=http_port, transport_port=transport_port, with_ml=build.with_ml
    )
    _write_atomic(home / "config" / "opensearch.yml", json.dumps(settings, indent=2) + "\n")
    extra: list[str] = []
    if build.with_ml:
        for folder in ("modules", "plugins"):
            link = home / folder
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(build.root / folder, target_is_directory=True)
        extra.append("-Dshoprank.devnode.plugins=")
        heap = heap if _heap_mib(heap) >= _heap_mib(ML_MIN_HEAP) else ML_MIN_HEAP
    _write_atomic(home / "config" / "log4j2.properties", _LOG4J)
    log_path = home / "node.log"
    url = f"http://127.0.0.1:{http_port}"
    command = [
        "java",
        f"-Xms{MIN_HEAP}",
        f"-Xmx{heap}",
        *extra,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-Dlog4j2.disable.jmx=true",
        "-Dlog4j.shutdownHookEnabled=false",
        "-cp",
        build.classpath,
        MAIN_CLASS,
        str(home),
    ]
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node = RunningNode(process.pid, url, home, log_path, 0.0, process)
    logger.info("started OpenSearch dev node pid %d on %s", process.pid, url)
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise DevNodeError(
                f"the node exited with {process.returncode} before it was ready; "
                f"{log_path}:\n{_log_tail(log_path)}"
            )
        if _cluster_status(url) in ("yellow", "green"):
            node.started_in_s = time.perf_counter() - started
            logger.info("node ready in %.1f s", node.started_in_s)
            return node
        time.sleep(0.5)
    stop_node(node)
    raise DevNodeError(
        f"the node was not yellow within {timeout_s:.0f} s; {log_path}:\n{_log_tail(log_path)}"
    )


def _heap_mib(heap: str) -> int:
    """``512m`` or ``2g`` in MiB."""
    value, unit = int(heap[:-1]), heap[-1].lower()
    return value * 1024 if unit == "g" else value


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def is_our_node(node: RunningNode) -> bool:
    """Whether ``node.pid`` is still the DevNode process for ``node.home`` (not a reused PID)."""
    cmdline = _cmdline(node.pid)
    return cmdline is not None and MAIN_CLASS in cmdline and str(node.home) in cmdline


def stop_node(node: RunningNode, *, timeout_s: float = 30.0) -> None:
    """Stop the node by its PID: SIGTERM, then SIGKILL if it is still there after the time-out."""
    if node.process is not None:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("node pid %d ignored SIGTERM; killing it", node.pid)
                node.process.kill()
                node.process.wait(timeout=timeout_s)
        return
    if not _alive(node.pid):
        return
    if not is_our_node(node):
        raise DevNodeError(f"pid {node.pid} is not the dev node of {node.home}; not stopping it")
    os.kill(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(node.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(node.pid):
        logger.warning("node pid %d ignored SIGTERM; killing it", node.pid)
        os.kill(node.pid, signal.SIGKILL)


def rss_bytes(pid: int) -> int | None:
    """The resident memory of ``pid`` in bytes (Linux), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def running_node(
    cache_dir: Path,
    *,
    home: Path,
    heap: str = "1g",
    timeout_s: float = 180.0,
    with_ml: bool = False,
) -> Iterator[RunningNode]:
    """Build if needed, start a node, yield it, and stop it (by PID) however the block ends."""
    build = build_node(cache_dir, with_ml=with_ml)
    node = start_node(build, home=home, heap=heap, timeout_s=timeout_s)
    try:
        yield node
    finally:
        stop_node(node)


def _read_state(cache_dir: Path) -> RunningNode | None:
    path = cache_dir / STATE_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return RunningNode(
        pid=int(data["pid"]),
        url=str(data["url"]),
        home=Path(data["home"]),
        log_path=Path(data["log_path"]),
        started_in_s=float(data["started_in_s"]),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m indexer.stores.opensearch.devnode start|status|stop|build [--with-ml]``."""
    from ranker.settings import get_settings

    defaults = get_settings().opensearch
    parser = argparse.ArgumentParser(prog="devnode", description="The OpenSearch dev node.")
    parser.add_argument("command", choices=("start", "status", "stop", "build"))
    parser.add_argument("--cache-dir", type=Path, default=defaults.devnode_cache_dir)
    parser.add_argument("--heap", default=defaults.devnode_heap)
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    parser.add_argument(
        "--with-ml",
        action="store_true",
        help="add job-scheduler, ML Commons and neural-search (the rerank search pipeline)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cache_dir: Path = args.cache_dir.expanduser()
    out = sys.stdout
    try:
        if args.command == "build":
            out.write(f"{build_node(cache_dir, with_ml=args.with_ml).root}\n")
            return 0
        state = _read_state(cache_dir)
        alive = state is not None and _alive(state.pid) and is_our_node(state)
        if args.command == "status":
            out.write(
                f"running: pid {state.pid} at {state.url}\n" if alive and state else "stopped\n"
            )
            return 0 if alive else 1
        if args.command == "stop":
            if state is not None and alive:
                stop_node(state)
                out.write(f"stopped pid {state.pid}\n")
            (cache_dir / STATE_FILE).unlink(missing_ok=True)
            return 0
        if alive and state is not None:
            out.write(f"already running: pid {state.pid} at {state.url}\n")
            return 0
        node = start_node(
            build_node(cache_dir, with_ml=args.with_ml),
            home=cache_dir / "node",
            heap=args.heap,
            http_port=args.port,
        )
        _write_atomic(cache_dir / STATE_FILE, json.dumps(node.to_json(), indent=2) + "\n")
        rss = rss_bytes(node.pid) or 0
        out.write(
            f"OpenSearch {OPENSEARCH_VERSION} + k-NN {KNN_VERSION}"
            f"{f' + ML Commons, neural-search {ML_VERSION}' if args.with_ml else ''}: "
            f"pid {node.pid} at {node.url} "
            f"(ready in {node.started_in_s:.1f} s, RSS {rss / 2**20:.0f} MiB)\n"
            f"point shoprank at it: SHOPRANK_OPENSEARCH__URL={node.url}\n"
        )
        return 0
    except DevNodeError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
