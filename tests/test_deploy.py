"""The deployment example in deploy/. Docker Compose, Prometheus and Grafana cannot run here, so
their files are checked for what each of them needs, and against the relay itself: the variables
it reads, the metrics it exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import yaml
from pydantic import AliasChoices
from sqlalchemy.engine import make_url

from app.metrics import Metrics
from app.settings import Settings
from tests.commands import REPO

DEPLOY = REPO / "deploy"
#: `${NAME:-default}` and `${NAME:?message}`: what Compose puts in a value from the environment.
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::(?P<kind>[-?])(?P<rest>[^}]*))?\}")
#: The gauges of the work in progress: every replica shows the same figures.
SHARED_GAUGES = {
    "relay_watches",
    "relay_outbox_pending_events",
    "relay_outbox_due_events",
    "relay_outbox_oldest_due_age_seconds",
    "relay_polls_oldest_due_age_seconds",
    "relay_captures_pending",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and"}
PROMQL_WORDS |= {"or", "unless", "offset"}


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def relay_environment() -> dict[str, str | None]:
    environment: dict[str, str | None] = service("relay")["environment"]
    return environment


@cache
def setting_names() -> dict[str, str]:
    """Each variable the relay reads, with the name of its field in `Settings`."""
    names = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names[
            str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"RELAY_{name.upper()}"
        ] = name
    return names


def interpolated(value: str) -> str:
    """The value as Compose makes it with nothing set in the environment: each default."""
    return INTERPOLATION.sub(lambda match: match["rest"] if match["kind"] == "-" else "", value)


def env_file(name: str) -> dict[str, str]:
    lines = (DEPLOY / name).read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def read_settings(variables: dict[str, str]) -> Settings:
    """Settings from these variables only, checked as the relay checks them at start."""
    names = setting_names()
    values: dict[str, Any] = {names[name]: value for name, value in variables.items()}
    return Settings(_env_file=None, **values)


@cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana" / "relay-dashboard.json").read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions() -> Iterator[str]:
    for panel in panels():
        for target in panel.get("targets", []):
            yield target["expr"]


def metric_names(expression: str) -> set[str]:
    """The series a PromQL expression reads: its names that are not functions, keywords or
    labels (strings, matchers, ranges and label lists taken out first)."""
    bare = re.sub(r'"[^"]*"', "", expression)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    names = re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b(?!\s*\()", bare)
    return {name for name in names if name not in PROMQL_WORDS}


@cache
def exported() -> dict[str, str]:
    """Every series name the relay's registry exports, with the family it belongs to."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    return {
        family.name + suffix: family.name
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_every_variable_the_relay_service_sets_is_an_option_the_relay_reads() -> None:
    unknown = set(relay_environment()) - set(setting_names())

    assert unknown == set()


def test_the_values_the_relay_service_sets_are_accepted_by_the_relay() -> None:
    """Each value as Compose makes it with its defaults; one that must come from the
    environment (`${NAME:?…}`) stands for itself in the next test."""
    given = {
        name: interpolated(value)
        for name, value in relay_environment().items()
        if value is not None and ":?" not in value
    }

    loaded = read_settings(given)

    assert loaded.database_url.startswith("postgresql://")
    assert loaded.public_url == "http://localhost:8000"


def test_the_encryption_key_postgresql_needs_must_be_set_to_start() -> None:
    match = INTERPOLATION.fullmatch(relay_environment()["RELAY_ENCRYPTION_KEY"] or "")

    assert match is not None
    assert (match["name"], match["kind"]) == ("RELAY_ENCRYPTION_KEY", "?")
    assert match["rest"].strip()  # the message Compose stops with


def test_the_relay_reaches_its_database_by_service_name_once_it_is_ready() -> None:
    database = make_url(interpolated(relay_environment()["RELAY_DATABASE_URL"] or ""))
    postgres = {
        key: interpolated(value) for key, value in service("postgres")["environment"].items()
    }

    assert database.host == "postgres"
    assert (database.username, database.password, database.database) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert service("relay")["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "healthcheck" in service("postgres")


def test_what_a_service_waits_for_is_a_service_and_if_optional_one_of_a_profile() -> None:
    services = compose()["services"]
    for name, described in services.items():
        waits_for = described.get("depends_on", {})
        for other in waits_for:
            assert other in services, (name, other)
            if isinstance(waits_for, dict) and waits_for[other].get("required") is False:
                assert services[other].get("profiles"), (name, other)


def test_the_relay_and_its_database_run_without_a_profile_and_the_rest_with_one() -> None:
    profiles = {name: tuple(s.get("profiles", ())) for name, s in compose()["services"].items()}

    assert profiles == {
        "postgres": (),
        "relay": (),
        "minio": ("s3",),
        "minio-setup": ("s3",),
        "prometheus": ("monitoring",),
        "grafana": ("monitoring",),
    }


def test_every_image_but_the_relays_own_build_is_pinned_to_a_version() -> None:
    for name, described in compose()["services"].items():
        if "build" in described:
            assert described["build"]["context"] == ".."
            assert (DEPLOY / described["build"]["context"] / "Dockerfile").is_file()
            continue
        _, _, tag = described["image"].partition(":")
        assert tag and tag != "latest", name


def test_the_s3_env_file_turns_the_profile_on_and_points_the_relay_at_its_bucket() -> None:
    variables = env_file("s3.env")
    profile = variables.pop("COMPOSE_PROFILES")
    loaded = read_settings(variables)

    assert profile == "s3"
    # Passed through: the relay service sets them from the environment only.
    assert all(relay_environment()[name] is None for name in variables)
    assert loaded.storage_url == "s3://relay-files"
    assert "store/relay-files" in service("minio-setup")["entrypoint"][-1]
    assert make_url(loaded.s3_endpoint_url or "").host in compose()["services"]
    assert loaded.s3_access_key_id is not None and loaded.s3_secret_access_key is not None
    minio = {key: interpolated(value) for key, value in service("minio")["environment"].items()}
    assert minio["MINIO_ROOT_USER"] == loaded.s3_access_key_id.get_secret_value()
    assert minio["MINIO_ROOT_PASSWORD"] == loaded.s3_secret_access_key.get_secret_value()


def test_prometheus_scrapes_the_relays_metrics_at_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [targets] = [static["targets"] for static in job["static_configs"]]
    relay_port = service("relay")["ports"][0].rsplit(":", 1)[1]

    assert job["metrics_path"] == "/metrics"
    assert targets == [f"relay:{relay_port}"]


def test_grafana_is_given_this_folders_files_and_the_datasource_the_dashboard_uses() -> None:
    mounts = dict(
        volume.rsplit(":", 1)[0].split(":", 1) for volume in service("grafana")["volumes"]
    )
    for source in mounts:
        assert (DEPLOY / source).is_file(), source
    datasources = yaml.safe_load((DEPLOY / "grafana" / "datasources.yaml").read_text())
    [provider] = yaml.safe_load((DEPLOY / "grafana" / "dashboards.yaml").read_text())["providers"]

    assert mounts["./grafana/relay-dashboard.json"].startswith(provider["options"]["path"] + "/")
    assert [source["type"] for source in datasources["datasources"]] == ["prometheus"]
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"


def test_every_expression_on_the_dashboard_reads_only_metrics_the_relay_exports() -> None:
    for expression in expressions():
        names = metric_names(expression)
        assert names, expression
        assert names <= set(exported()), (expression, names - set(exported()))


def test_every_metric_the_relay_exports_is_on_the_dashboard() -> None:
    shown = {exported()[name] for expression in expressions() for name in metric_names(expression)}
    families = set(exported().values())

    assert families - shown == set()


def test_the_gauges_every_replica_shares_are_never_added_up_across_replicas() -> None:
    for expression in expressions():
        if metric_names(expression) & SHARED_GAUGES:
            assert not re.search(r"\bsum\b", expression), expression


def test_every_panel_has_an_id_of_its_own_and_a_place_on_the_grid() -> None:
    ids = [panel["id"] for panel in panels()]

    assert len(ids) == len(set(ids))
    for panel in panels():
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_every_query_asks_the_datasource_the_dashboard_lets_one_choose() -> None:
    [variable] = dashboard()["templating"]["list"]

    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in panels():
        for target in panel.get("targets", []):
            assert panel["datasource"]["uid"] == f"${{{variable['name']}}}", panel["title"]
            assert target["refId"], panel["title"]
