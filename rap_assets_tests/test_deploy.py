"""The deployment files: the deployment dagster.yaml as a real instance on PostgreSQL, the
compose stack's references, the env example, the Helm values and the executor option."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from rap_assets.assets import ARTIST_ASSETS
from rap_assets.settings import ENV_VARS

from .conftest import REPO, _database_url, sample_resources

DOCKER = REPO / "docker"
DEPLOY = REPO / "deploy"


def test_deployment_instance_keeps_runs_in_postgres(
    pg_server_url: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(pg_server_url, name)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)
    shutil.copyfile(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        instance.add_dynamic_partitions("artists", ["kilo-vance"])
        result = dg.materialize(
            ARTIST_ASSETS,
            partition_key="kilo-vance",
            instance=instance,
            resources=sample_resources(database_url),
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.is_success
        assert (
            instance.get_latest_materialization_event(dg.AssetKey("lyric_embeddings")) is not None
        )
    with psycopg.connect(_database_url(pg_server_url, name)) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,)
        ).fetchone()
    assert stored == (1,)


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _example_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (DOCKER / "example.env").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            env[match[1]] = match[2]
    return env


def test_compose_services_refer_to_things_that_exist() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "user_code", "webserver", "daemon"}
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert (
        services["redis"]["image"].startswith("redis:7")
        and "--appendonly" in services["redis"]["command"]
    )
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
            for env_file in service.get("env_file", []):
                assert not env_file["required"] or (DOCKER / env_file["path"]).is_file()
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if service["depends_on"][dependency]["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose.get("volumes", {}) or (DOCKER / source).exists(), (
                f"{name}: {source}"
            )
    # the commands run programs this project installs, with files the image contains
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for name in ("user_code", "webserver", "daemon"):
        command = services[name]["command"]
        assert shutil.which(command[0]), f"{name}: {command[0]} is not installed by the project"
        for arg in command:
            if arg.startswith("/opt/rap-assets/"):
                relative = arg.removeprefix("/opt/rap-assets/")
                assert (REPO / relative).is_file() and f"COPY {relative}" in dockerfile, arg
    assert (
        "-m" in services["user_code"]["command"]
        and "rap_assets.definitions" in services["user_code"]["command"]
    )
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    assert grpc["host"] == "user_code" and str(grpc["port"]) in services["user_code"]["command"]


def test_compose_env_refers_to_documented_variables() -> None:
    example = _example_env()
    missing = [name for name in ENV_VARS if name not in example]
    assert not missing, f"docker/example.env does not document {missing}"
    compose_text = (DOCKER / "compose.yaml").read_text()
    for variable in set(re.findall(r"\$\{([A-Z_]+)", compose_text)):
        assert variable in example, (
            f"compose.yaml uses ${{{variable}}} that example.env does not set"
        )
    app_env = _compose()["services"]["user_code"]["environment"]
    assert set(app_env) <= set(ENV_VARS)


def test_example_env_holds_no_secret_values() -> None:
    example = _example_env()
    for secret in (
        "GENIUS_ACCESS_TOKEN",
        "SPOTIPY_CLIENT_ID",
        "SPOTIPY_CLIENT_SECRET",
        "LLM_API_KEY",
        "EMBEDDING_API_KEY",
    ):
        assert example[secret] == "", secret


def test_image_carries_the_distilled_model_where_the_code_looks() -> None:
    """The runtime image has no torch, so the default embedder's model must be built in the
    image, at the path RAP_ASSETS_MODEL_DIR names there and in example.env."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    models = "/opt/rap-assets/models"
    assert "distill_static_model(static_model_dir(Path('/models')))" in dockerfile
    assert (
        "COPY --from=model /models ./models" in dockerfile
        and "WORKDIR /opt/rap-assets" in dockerfile
    )
    assert f"RAP_ASSETS_MODEL_DIR={models}" in dockerfile
    assert _example_env()["RAP_ASSETS_MODEL_DIR"] == models


def test_helm_values_parse_and_wire_image_secrets_and_limits() -> None:
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "rap_assets.definitions"]
    assert set(deployment["image"]) == {"repository", "tag", "pullPolicy"}
    assert deployment["envSecrets"] == [{"name": "rap-assets-secrets"}]
    assert {e["name"] for e in deployment["env"]} <= set(ENV_VARS)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == [
        {"name": "rap-assets-secrets"}
    ]
    queue = values["dagsterDaemon"]["runCoordinator"]
    assert queue["type"] == "QueuedRunCoordinator"
    limits = {
        limit["key"]: limit["limit"]
        for limit in queue["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    }
    assert limits["rap-assets/llm-bound"] == 1
    assert (
        values["postgresql"]["enabled"] is False
        and values["generatePostgresqlPasswordSecret"] is False
    )
    assert values["global"]["postgresqlSecretName"]
    for component in (deployment, values["dagsterDaemon"], values["dagsterWebserver"]):
        assert {"requests", "limits"} <= set(component["resources"])
    # no credential is written into the values
    text = (DEPLOY / "values.yaml").read_text()
    assert not re.search(r"(?i)(password|token|secret|key)\s*:\s*['\"]?[A-Za-z0-9]{8,}", text)


def _artist_job(attribute: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Load the definitions in a fresh process under ``env`` and print an artist_refresh attribute:
    the job's tags and executor are decided when the code location loads."""
    code = f"import rap_assets.definitions as d; print(d.defs.resolve_job_def('artist_refresh').{attribute})"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    )


def test_llm_runs_are_tagged_for_the_queue_limit() -> None:
    with_key = _artist_job("tags", {**os.environ, "LLM_API_KEY": "x"})
    without = _artist_job("tags", {k: v for k, v in os.environ.items() if k != "LLM_API_KEY"})
    assert with_key.returncode == 0 and without.returncode == 0
    assert (
        "rap-assets/llm-bound" in with_key.stdout and "rap-assets/llm-bound" not in without.stdout
    )


def test_k8s_step_executor_option() -> None:
    result = _artist_job("executor_def.name", {**os.environ, "RAP_ASSETS_EXECUTOR": "k8s"})
    assert result.returncode == 0 and result.stdout.strip() == "k8s"
    bad = _artist_job("executor_def.name", {**os.environ, "RAP_ASSETS_EXECUTOR": "celery"})
    assert bad.returncode != 0 and "the only option is 'k8s'" in bad.stderr
