"""Static checks of deploy/: the Dockerfiles, compose.yaml and the Kubernetes manifests.

No image is built or run (there is no container daemon where these run): hadolint lints the
Dockerfiles, kubernetes-validate checks the manifests against the Kubernetes schemas it ships,
check-jsonschema checks compose.yaml against the compose-spec schema it vendors, and every
command an image, a compose service or a manifest starts is run as ``shoprank <args> --help``
through the venv's console script (so the subcommand and its option names exist).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ranker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile*"))
MANIFESTS = sorted((DEPLOY / "k8s").rglob("*.yaml"))
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "shoprank.env.example"
KUBERNETES_VERSION = "1.30.0"
SHOPRANK_SERVICES = ("api", "worker", "beat")


def _tool(name: str) -> str:
    """A console script of the dev extra: the venv's own, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it comes with the dev extra (make install)")
    return found


def _run(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    out = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    instructions = _instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(dockerfile: Path, keyword: str) -> list[str]:
    values = [rest for kw, rest in _final_stage(dockerfile) if kw == keyword]
    assert values, f"{dockerfile.name}: no {keyword} in the runtime stage"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{dockerfile.name}: {keyword} is not in exec form"
    return [str(part) for part in parsed]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(file relative to deploy/k8s, kind, name) -> the resource."""
    out = {}
    for path in MANIFESTS:
        for doc in _documents(path):
            key = (str(path.relative_to(DEPLOY / "k8s")), doc["kind"], doc["metadata"]["name"])
            out[key] = doc
    return out


def _resource(file: str) -> dict[str, Any]:
    docs = _documents(DEPLOY / "k8s" / file)
    assert len(docs) == 1, file
    return docs[0]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {raw!r}"
        values[name.strip()] = value.strip()
    return values


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings read from exactly these variables (none of the test process's SHOPRANK_*)."""
    for name in list(os.environ):
        if name.upper().startswith("SHOPRANK_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def _shoprank_help(args: list[str]) -> None:
    """``shoprank <args> --help`` exits 0: the subcommand and every option it is given exist
    (click rejects an unknown option before it prints the help)."""
    result = _run(_tool("shoprank"), *args, "--help")
    assert result.returncode == 0, (
        f"shoprank {' '.join(args)} --help exited {result.returncode}:\n"
        f"{result.stdout}\n{result.stderr}"
    )
    assert "Usage:" in result.stdout


# --- (1) hadolint -----------------------------------------------------------------------------


def test_both_dockerfiles_are_there() -> None:
    assert [path.name for path in DOCKERFILES] == ["Dockerfile", "Dockerfile.gpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = _run(_tool("hadolint"), "--no-color", str(dockerfile))
    assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint step is not vacuous: an untagged base and a `cd` in RUN fail it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp\n")
    result = _run(_tool("hadolint"), "--no-color", str(bad))
    assert result.returncode != 0
    assert "DL3006" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_shape(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    bases = [rest.split()[0] for kw, rest in instructions if kw == "FROM"]
    assert len(bases) >= 2, "multi-stage: a builder and a runtime stage"
    for base in bases:
        tag = base.partition(":")[2]
        assert tag, f"{base}: pin the base image by tag"
        assert tag != "latest", f"{base}: pin the base image by tag"
    final = _final_stage(dockerfile)
    text = "\n".join(f"{kw} {rest}" for kw, rest in final)
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    users = [rest for kw, rest in final if kw == "USER"]
    assert users, "the runtime stage sets a user"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(kw == "VOLUME" and "/data" in rest for kw, rest in final)
    env = " ".join(rest for kw, rest in final if kw == "ENV")
    assert "SHOPRANK_HOME=/data" in env
    assert "HF_HUB_OFFLINE=1" in env
    healthchecks = [rest for kw, rest in final if kw == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/healthz" in healthchecks[0]
    assert "urllib" in healthchecks[0]
    # Nothing from the data directory or a model is copied in.
    for kw, rest in instructions:
        if kw in ("COPY", "ADD"):
            assert "var" not in rest.split(), f"{kw} {rest}"
            assert "/data" not in rest, f"{kw} {rest}"


def test_dockerignore_keeps_local_state_out() -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".git", ".venv", "var", "tests"):
        assert entry in lines


# --- (2) kubernetes-validate ------------------------------------------------------------------


def test_manifests_are_there() -> None:
    names = {str(path.relative_to(DEPLOY / "k8s")) for path in MANIFESTS}
    assert {
        "api-deployment.yaml",
        "api-service.yaml",
        "api-hpa.yaml",
        "worker-deployment.yaml",
        "beat-deployment.yaml",
        "redis-deployment.yaml",
        "redis-service.yaml",
        "configmap.yaml",
        "secret.yaml",
        "pvc.yaml",
        "gpu/api-deployment-gpu.yaml",
    } <= names


@pytest.mark.parametrize(
    "manifest", MANIFESTS, ids=lambda path: str(path.relative_to(DEPLOY / "k8s"))
)
def test_kubernetes_validate_strict(manifest: Path) -> None:
    result = _run(_tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", str(manifest))
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"kubernetes-validate {manifest}:\n{output}"
    assert "passed" in output


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "beat.yaml"
    bad.write_text(
        (DEPLOY / "k8s" / "beat-deployment.yaml").read_text().replace("replicas:", "replicaz:")
    )
    result = _run(_tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", str(bad))
    assert result.returncode != 0
    assert "replicaz" in result.stdout + result.stderr


def _pod_spec(file: str) -> dict[str, Any]:
    spec: dict[str, Any] = _resource(file)["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(
    "file",
    [
        "api-deployment.yaml",
        "worker-deployment.yaml",
        "beat-deployment.yaml",
        "gpu/api-deployment-gpu.yaml",
    ],
)
def test_shoprank_pods(file: str) -> None:
    spec = _pod_spec(file)
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    sources = {
        next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]
    }
    assert sources == {"configMapRef": "shoprank-config", "secretRef": "shoprank-secrets"}
    resources = container["resources"]
    assert resources["requests"]
    assert resources["limits"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    claims = {
        volume["name"]: volume["persistentVolumeClaim"]["claimName"] for volume in spec["volumes"]
    }
    assert claims[next(name for name, path in mounts.items() if path == "/data")] == (
        "shoprank-data"
    )


@pytest.mark.parametrize("file", ["api-deployment.yaml", "gpu/api-deployment-gpu.yaml"])
def test_api_probes_healthz(file: str) -> None:
    (container,) = _pod_spec(file)["containers"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"


def test_beat_is_exactly_one() -> None:
    beat = _resource("beat-deployment.yaml")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    targets = [
        doc["spec"]["scaleTargetRef"]["name"]
        for doc in _manifests().values()
        if doc["kind"] == "HorizontalPodAutoscaler"
    ]
    assert "shoprank-beat" not in targets


def test_hpa_scales_the_api_on_cpu() -> None:
    hpa = _resource("api-hpa.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "shoprank-api",
    }
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]


def test_pvc_is_shared() -> None:
    assert _resource("pvc.yaml")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_gpu_variant() -> None:
    spec = _pod_spec("gpu/api-deployment-gpu.yaml")
    assert spec["nodeSelector"]
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith("-gpu")


def test_api_service_selects_the_api_pods() -> None:
    service = _resource("api-service.yaml")
    labels = _resource("api-deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_configmap_and_secret_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SHOPRANK_* key of the ConfigMap and the Secret is one Settings reads (it forbids
    unknown ones), and together they configure the stack."""
    config = _resource("configmap.yaml")["data"]
    secret = _resource("secret.yaml")["stringData"]
    assert not config.keys() & secret.keys()
    for name in ("SHOPRANK_API__API_KEYS", "SHOPRANK_API__ADMIN_KEYS", "SHOPRANK_OPENSEARCH__URL"):
        assert name in secret
    settings = _settings_from({**config, **secret}, monkeypatch)
    assert settings.home == Path("/data")
    assert settings.index.backend == "opensearch"
    assert settings.api.admin_key_list()
    assert settings.workers.broker_url.get_secret_value().startswith("redis://shoprank-redis:")


# --- (3) compose ------------------------------------------------------------------------------


def test_compose_matches_the_compose_spec_schema() -> None:
    result = _run(
        _tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)
    )
    assert result.returncode == 0, f"check-jsonschema:\n{result.stdout}{result.stderr}"


def test_the_compose_schema_check_rejects_an_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  api:\n    image: shoprank:0.1.0\n    replicaz: 2\n")
    result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad))
    assert result.returncode != 0
    assert "replicaz" in result.stdout + result.stderr


def test_compose_services() -> None:
    services = _compose()["services"]
    assert set(services) >= {"api", "worker", "beat", "redis", "opensearch"}
    images = {name: service["image"] for name, service in services.items()}
    for name, image in images.items():
        assert ":" in image, f"{name}: pin {image}"
        assert not image.endswith(":latest"), f"{name}: pin {image}"
    assert images["opensearch"].startswith("opensearchproject/opensearch:")
    assert images["redis"].startswith("redis:")


def test_compose_beat_is_exactly_one() -> None:
    beat = _compose()["services"]["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert beat.get("scale", 1) == 1


def test_compose_shoprank_services_share_env_file_and_data() -> None:
    services = _compose()["services"]
    users = {name: service for name, service in services.items() if "build" in service}
    assert set(users) == set(SHOPRANK_SERVICES)
    env_files = {name: tuple(service["env_file"]) for name, service in users.items()}
    assert set(env_files.values()) == {("shoprank.env",)}, env_files
    assert {service["image"] for service in users.values()} == {"shoprank:0.1.0"}
    for name, service in users.items():
        assert "shoprank-data:/data" in service["volumes"], name
    assert "shoprank-data" in _compose()["volumes"]


def test_compose_healthchecks_and_dependencies() -> None:
    services = _compose()["services"]
    for name in ("api", "worker", "redis", "opensearch"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in SHOPRANK_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["opensearch"]["condition"] == "service_healthy"


def test_compose_opensearch_is_a_dev_node() -> None:
    opensearch = _compose()["services"]["opensearch"]
    assert opensearch["environment"]["discovery.type"] == "single-node"
    assert opensearch["environment"]["plugins.security.disabled"] == "true"
    assert "Production must" in COMPOSE.read_text()


def test_env_example_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env_file(ENV_EXAMPLE)
    for name in (
        "SHOPRANK_HOME",
        "SHOPRANK_WORKERS__BROKER_URL",
        "SHOPRANK_INDEX__BACKEND",
        "SHOPRANK_OPENSEARCH__URL",
        "SHOPRANK_API__API_KEYS",
        "SHOPRANK_API__ADMIN_KEYS",
    ):
        assert name in env, name
    settings = _settings_from(env, monkeypatch)
    assert settings.home == Path("/data")
    assert settings.opensearch.url == "http://opensearch:9200"
    assert settings.workers.broker_url.get_secret_value() == "redis://redis:6379/0"
    assert settings.api.host == "0.0.0.0"
    assert "/deploy/shoprank.env" in (ROOT / ".gitignore").read_text().splitlines()


# --- (4) the commands the images run ----------------------------------------------------------


def _commands() -> dict[str, list[str]]:
    """Every shoprank command line the deploy files start, by where it comes from."""
    out: dict[str, list[str]] = {}
    for dockerfile in DOCKERFILES:
        assert _exec_form(dockerfile, "ENTRYPOINT") == ["shoprank"], dockerfile.name
        out[f"{dockerfile.name} CMD"] = _exec_form(dockerfile, "CMD")
    for name, service in _compose()["services"].items():
        if "build" in service:
            out[f"compose {name}"] = [str(part) for part in service["command"]]
    for (file, kind, _), doc in _manifests().items():
        if kind != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("shoprank:"):
                assert "command" not in container, f"{file}: keep the image's ENTRYPOINT"
                out[f"k8s {file}"] = [str(part) for part in container["args"]]
    return out


def test_every_component_is_started() -> None:
    subcommands = {args[0] for args in _commands().values()}
    assert subcommands == {"serve", "worker", "beat"}


@pytest.mark.parametrize("where", sorted(_commands()))
def test_command_exists(where: str) -> None:
    _shoprank_help(_commands()[where])


def test_dockerfile_cmd_is_the_api() -> None:
    for dockerfile in DOCKERFILES:
        assert _exec_form(dockerfile, "CMD") == ["serve", "--host", "0.0.0.0", "--port", "8000"]
