"""deploy/k8s-rabbitmq: the base plus RabbitMQ as the broker, checked without a cluster.

The overlay patches the base's ScaledObject, which only kustomize itself renders (the small
renderer in conftest.py knows no patches): without kubectl or kustomize these checks skip.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.deploy import test_k8s as base_rules  # a module: its tests are not collected again
from tests.deploy.conftest import render_kustomization
from tests.deploy.test_k8s import KUBERNETES_VERSIONS, NAMESPACE, by_kind
from tests.support.processes import REPO_ROOT

KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


@pytest.fixture(scope="module")
def overlay_docs() -> list[dict[str, Any]]:
    if not (shutil.which("kustomize") or shutil.which("kubectl")):
        pytest.skip("the overlay's patch needs kustomize or kubectl to render")
    return render_kustomization(REPO_ROOT / "deploy" / "k8s-rabbitmq")


def test_the_base_rules_hold_for_the_broker_too(overlay_docs: list[dict[str, Any]]) -> None:
    base_rules.test_every_resource_is_named_labelled_and_namespaced(overlay_docs)
    base_rules.test_every_pod_runs_non_root_without_privileges(overlay_docs)
    base_rules.test_every_container_has_requests_limits_and_probes(overlay_docs)
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    from kubernetes_validate.utils import latest_version

    for version in KUBERNETES_VERSIONS:
        for doc in overlay_docs:
            if doc["kind"] not in KEDA_KINDS:
                kubernetes_validate.validate(doc, version or latest_version(), strict=True)


def test_rabbitmq_keeps_its_data_and_admits_only_our_pods_and_keda(
    overlay_docs: list[dict[str, Any]],
) -> None:
    broker = by_kind(overlay_docs, "StatefulSet")["rabbitmq"]
    (container,) = broker["spec"]["template"]["spec"]["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    claims = [claim["metadata"]["name"] for claim in broker["spec"]["volumeClaimTemplates"]]
    assert mounts["/var/lib/rabbitmq"] in claims
    environment = {variable["name"]: variable for variable in container["env"]}
    assert "secretKeyRef" in environment["RABBITMQ_DEFAULT_PASS"]["valueFrom"]  # never in git
    policy = by_kind(overlay_docs, "NetworkPolicy")["rabbitmq"]["spec"]
    sources = policy["ingress"][0]["from"]
    components = {source["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                  for source in sources if "podSelector" in source}  # fmt: skip
    assert components == {"gateway", "worker"}
    assert [port["port"] for port in policy["ingress"][0]["ports"]] == [5672]


def test_workers_scale_on_the_rabbitmq_queue_as_the_base_did_on_the_list(
    overlay_docs: list[dict[str, Any]], k8s_docs: list[dict[str, Any]]
) -> None:
    (scaled,) = by_kind(overlay_docs, "ScaledObject").values()
    (base,) = by_kind(k8s_docs, "ScaledObject").values()
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == base["spec"]["triggers"][0]["metadata"]["listName"]
    assert trigger["metadata"]["value"] == base["spec"]["triggers"][0]["metadata"]["listLength"]
    assert trigger["authenticationRef"]["name"] in by_kind(overlay_docs, "TriggerAuthentication")
    unchanged = ("scaleTargetRef", "minReplicaCount", "maxReplicaCount", "advanced")
    assert {key: scaled["spec"][key] for key in unchanged} == {
        key: base["spec"][key] for key in unchanged
    }
    assert scaled["metadata"]["namespace"] == NAMESPACE
