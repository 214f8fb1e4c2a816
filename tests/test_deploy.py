"""The manifests in deploy/: valid against the Kubernetes schemas, and in step with the server.

`kubernetes-validate` bundles the Kubernetes JSON schemas, so this runs offline. No
schema of Knative's CRDs is available offline: the Knative Service's pod template is
checked against Kubernetes' PodTemplateSpec schema instead, its own fields by hand.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pyfunc_ensembler.health import HEALTHZ, METRICS, READYZ
from pyfunc_ensembler.settings import Settings, env_name, parse_value
from tests.helpers import ROOT

KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes the manifests must apply to (autoscaling/v2 is GA since 1.23)."""

KNATIVE_ONLY = ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds")
SETTINGS = {env_name(f.name): f for f in dataclasses.fields(Settings)}


def documents(pattern: str) -> list[dict[str, Any]]:
    found = [
        doc
        for path in sorted((ROOT / "deploy").glob(pattern))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    assert found, f"no manifests match deploy/{pattern}"
    return found


def kind(name: str) -> dict[str, Any]:
    (doc,) = [d for d in documents("kubernetes/*.yaml") if d["kind"] == name]
    return doc


def knative_service() -> dict[str, Any]:
    (doc,) = documents("knative/*.yaml")
    return doc


def pod_templates() -> list[dict[str, Any]]:
    return [kind("Deployment")["spec"]["template"], knative_service()["spec"]["template"]]


def containers() -> list[dict[str, Any]]:
    return [c for template in pod_templates() for c in template["spec"]["containers"]]


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("doc", documents("kubernetes/*.yaml"), ids=lambda d: d["kind"])
def test_kubernetes_manifests_match_the_schemas(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_knative_pod_template_matches_the_pod_schema() -> None:
    service = knative_service()
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    template = service["spec"]["template"]
    spec = {k: v for k, v in template["spec"].items() if k not in KNATIVE_ONLY}
    # Knative fills in the container name; the pod schema requires one.
    spec["containers"] = [{"name": "user-container", **c} for c in spec["containers"]]
    pod_template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": service["metadata"]["name"]},
        "template": {"metadata": template["metadata"], "spec": spec},
    }
    kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)
    (port,) = template["spec"]["containers"][0]["ports"]
    assert port["name"] in ("http1", "h2c")  # the only names Knative accepts


def test_deployment_service_and_autoscaler_point_at_each_other() -> None:
    deployment, service, hpa = kind("Deployment"), kind("Service"), kind("HorizontalPodAutoscaler")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == Settings().port
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_probes_use_the_servers_health_endpoints_on_its_port() -> None:
    for container in containers():
        (port,) = container["ports"]
        assert port["containerPort"] == Settings().port
        assert container["livenessProbe"]["httpGet"]["path"] == HEALTHZ
        assert container["readinessProbe"]["httpGet"]["path"] == READYZ
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            target = container.get(probe, {}).get("httpGet", {}).get("port")
            assert target in (None, port.get("name"), port["containerPort"])


def test_prometheus_scrapes_metrics_on_the_servers_port() -> None:
    for template in pod_templates():
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == METRICS
        assert annotations["prometheus.io/port"] == str(Settings().port)


def test_every_setting_in_the_manifests_exists_and_parses() -> None:
    for container in containers():
        for name, variable in env(container).items():
            assert name in SETTINGS, f"{name} is not a setting of the server"
            if "value" in variable:
                parse_value(SETTINGS[name], variable["value"])


def test_workers_follow_the_cpus_requested() -> None:
    deployment_container, knative_container = containers()
    source = env(deployment_container)["ENSEMBLER_WORKERS"]["valueFrom"]["resourceFieldRef"]
    assert source["resource"] == "requests.cpu" and source["divisor"] == "1"
    # Knative refuses resourceFieldRef by default: the number must match the request.
    cpus = knative_container["resources"]["requests"]["cpu"]
    assert env(knative_container)["ENSEMBLER_WORKERS"]["value"] == cpus


def graceful_timeout(container: dict[str, Any]) -> int:
    variable = env(container).get(env_name("graceful_timeout"))
    raw = variable["value"] if variable else None
    return int(raw) if raw is not None else int(Settings().graceful_timeout)


def test_the_pod_outlives_the_servers_drain() -> None:
    deployment = kind("Deployment")["spec"]["template"]["spec"]
    (container,) = deployment["containers"]
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    needed = graceful_timeout(container) + int(pause[1])
    assert deployment["terminationGracePeriodSeconds"] > needed
    # Knative derives the pod's grace period from the revision's request timeout.
    knative = knative_service()["spec"]["template"]["spec"]
    assert knative["timeoutSeconds"] >= graceful_timeout(knative["containers"][0])


def test_pods_run_as_the_images_non_root_user() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+)$", dockerfile, flags=re.MULTILINE)
    security = kind("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and str(security["runAsUser"]) == user
    for container in containers():
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["requests"]["memory"]
