"""deploy/k8s: what `kubectl apply -k` would send, checked without a cluster.

The manifests are rendered by kustomize (`kubectl kustomize` or `kustomize build`; a small
Python renderer in conftest.py when neither is installed). Built-in kinds are validated against
the Kubernetes OpenAPI schemas shipped in the `kubernetes-validate` package (strict: unknown
fields fail). KEDA's ScaledObject is a CRD with no schema there, so its fields are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "pneumo"
# The oldest Kubernetes we claim to support, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", None)
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def base_name(name: str) -> str:
    """kustomize appends a content hash to generated ConfigMaps: redis-config-b24k54fk6d."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def test_builtin_kinds_match_the_kubernetes_schemas(k8s_docs):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate for schema validation"
    )
    from kubernetes_validate.utils import latest_version

    checked = 0
    for version in KUBERNETES_VERSIONS:
        for doc in k8s_docs:
            if doc["kind"] == "ScaledObject":
                continue
            kubernetes_validate.validate(doc, version or latest_version(), strict=True)
            checked += 1
    assert checked == 2 * (len(k8s_docs) - 1)


def test_schema_validation_rejects_a_misspelt_field(k8s_docs):
    # Guards against a validator that accepts anything.
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    gateway = by_kind(k8s_docs, "Deployment")["pneumo-gateway"]
    broken = {**gateway, "spec": {**gateway["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.29.0", strict=True)


def test_every_resource_is_named_labelled_and_namespaced(k8s_docs):
    kinds = sorted(doc["kind"] for doc in k8s_docs)
    assert kinds.count("PodDisruptionBudget") == 2
    for required in ("Namespace", "ConfigMap", "Service", "Deployment", "StatefulSet"):
        assert required in kinds
    for doc in k8s_docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
        if doc["kind"] != "ConfigMap":
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "pneumo-triage"


def test_namespace_enforces_restricted_pod_security(k8s_docs):
    labels = by_kind(k8s_docs, "Namespace")[NAMESPACE]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_pod_runs_non_root_without_privileges(k8s_docs):
    for workload in workloads(k8s_docs):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name


def test_every_container_has_requests_limits_and_probes(k8s_docs):
    for workload in workloads(k8s_docs):
        for container in containers(workload):
            name = f"{workload['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            assert "livenessProbe" in container and "startupProbe" in container, name
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), name


def test_gateway_probes_healthz_for_liveness_and_readyz_for_readiness(k8s_docs):
    gateway = by_kind(k8s_docs, "Deployment")["pneumo-gateway"]
    (container,) = containers(gateway)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["command"] == [
        "uvicorn",
        "--factory",
        "gateway.app:create_app",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--no-proxy-headers",
        "--http",
        "gateway.http_protocol:HeadDeadlineProtocol",
    ]
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    assert gateway["spec"]["replicas"] >= 2, "one gateway is a single point of failure"


def test_worker_owns_one_gpu_and_runs_the_compose_command(k8s_docs, compose):
    worker = by_kind(k8s_docs, "Deployment")["pneumo-worker"]
    (container,) = containers(worker)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["command"] == compose["services"]["worker-gpu"]["command"]
    assert container["image"].startswith("pneumo-worker-gpu:")
    assert {"name": "TF_FORCE_GPU_ALLOW_GROWTH", "value": "true"} in container["env"]


def test_worker_grace_period_matches_compose_and_outlives_a_batch(k8s_docs, compose):
    worker = by_kind(k8s_docs, "Deployment")["pneumo-worker"]
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    compose_grace = compose["services"]["worker-gpu"]["stop_grace_period"]
    assert f"{grace}s" == compose_grace
    assert grace >= 30


def test_selectors_match_the_pods_they_mean(k8s_docs):
    pod_labels = {
        workload["metadata"]["name"]: workload["spec"]["template"]["metadata"]["labels"]
        for workload in workloads(k8s_docs)
    }
    for workload in workloads(k8s_docs):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels[workload["metadata"]["name"]])
    expected = {
        ("Service", "pneumo-gateway"): "pneumo-gateway",
        ("Service", "redis"): "redis",
        ("PodDisruptionBudget", "pneumo-gateway"): "pneumo-gateway",
        ("PodDisruptionBudget", "pneumo-worker"): "pneumo-worker",
        ("NetworkPolicy", "redis"): "redis",
    }
    for (kind, name), target in expected.items():
        spec = by_kind(k8s_docs, kind)[name]["spec"]
        selector = spec.get("selector") or spec["podSelector"]
        selector = selector.get("matchLabels", selector)
        matched = [pod for pod, labels in pod_labels.items() if selects(selector, labels)]
        assert matched == [target], (kind, name, matched)


def test_service_ports_reach_named_container_ports(k8s_docs):
    for name, service in by_kind(k8s_docs, "Service").items():
        workload = next(w for w in workloads(k8s_docs) if w["metadata"]["name"] == name)
        port_names = {
            port["name"] for container in containers(workload) for port in container["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (name, port)


def test_disruption_budgets_never_block_a_drain_of_one_worker(k8s_docs):
    budgets = by_kind(k8s_docs, "PodDisruptionBudget")
    assert budgets["pneumo-worker"]["spec"] == {
        "maxUnavailable": 1,
        "selector": budgets["pneumo-worker"]["spec"]["selector"],
    }
    gateway_replicas = by_kind(k8s_docs, "Deployment")["pneumo-gateway"]["spec"]["replicas"]
    assert budgets["pneumo-gateway"]["spec"]["minAvailable"] < gateway_replicas


def test_scaled_object_scales_the_worker_on_the_celery_queue(k8s_docs, compose):
    (scaled,) = by_kind(k8s_docs, "ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] in by_kind(k8s_docs, "Deployment")
    assert target["name"] == "pneumo-worker"
    # Never to zero: /readyz needs a live worker, so an empty pool could never wake up.
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    # The CRD types every trigger metadata value as a string.
    assert all(isinstance(value, str) for value in metadata.values()), metadata
    queue = next(
        flag.split("=", 1)[1]
        for flag in compose["services"]["worker-gpu"]["command"]
        if flag.startswith("--queues=")
    )
    assert metadata["listName"] == queue
    assert int(metadata["listLength"]) >= 1
    # KEDA's operator lives in another namespace: only the FQDN of our Redis resolves there.
    assert metadata["address"] == f"redis.{NAMESPACE}.svc.cluster.local:6379"
    assert metadata["databaseIndex"] == "0"
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 60


def test_config_points_every_pod_at_the_in_cluster_redis(k8s_docs):
    config_maps = {base_name(name): doc for name, doc in by_kind(k8s_docs, "ConfigMap").items()}
    settings = config_maps["pneumo-config"]["data"]
    assert settings["PNEUMO_REDIS_URL"] == "redis://redis:6379/0"
    assert settings["PNEUMO_MODEL_DIR"] == "/app/models/demo"
    assert "PNEUMO_API_KEYS" not in settings, "API keys belong in the pneumo-secrets Secret"
    rendered_names = set(by_kind(k8s_docs, "ConfigMap"))
    for workload in workloads(k8s_docs):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in rendered_names
                else:
                    assert source["secretRef"].get("optional") is True
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in rendered_names


def test_redis_keeps_its_aof_on_a_volume_with_the_shared_config(k8s_docs):
    redis = by_kind(k8s_docs, "StatefulSet")["redis"]
    (container,) = containers(redis)
    assert container["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert mounts["config"] == "/usr/local/etc/redis"
    claims = {claim["metadata"]["name"] for claim in redis["spec"]["volumeClaimTemplates"]}
    assert "data" in claims
    config_maps = {base_name(name): doc for name, doc in by_kind(k8s_docs, "ConfigMap").items()}
    shipped = (REPO_ROOT / "deploy" / "redis" / "redis.conf").read_text(encoding="utf-8")
    assert config_maps["redis-config"]["data"]["redis.conf"] == shipped
    assert container["image"] == "redis:7.4-alpine"


def test_redis_accepts_only_our_pods_and_keda(k8s_docs):
    policy = by_kind(k8s_docs, "NetworkPolicy")["redis"]["spec"]
    (rule,) = policy["ingress"]
    components = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in rule["from"]
        if "podSelector" in peer
    }
    assert components == {"gateway", "worker"}
    namespaces = [peer["namespaceSelector"] for peer in rule["from"] if "namespaceSelector" in peer]
    assert namespaces == [{"matchLabels": {"kubernetes.io/metadata.name": "keda"}}]


def test_image_tags_follow_the_project_version(k8s_docs, pyproject):
    version = pyproject["project"]["version"]
    for workload in workloads(k8s_docs):
        for container in containers(workload):
            if container["image"].startswith("pneumo-"):
                assert container["image"].endswith(f":{version}"), container["image"]


def test_fallback_renderer_agrees_with_kustomize(k8s_docs, k8s_render_without_kustomize):
    """Machines without kustomize get the Python renderer; it must render the same resources."""

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], base_name(doc["metadata"]["name"])

    fallback = {key(doc): doc for doc in k8s_render_without_kustomize()}
    assert set(fallback) == {key(doc) for doc in k8s_docs}
    for doc in k8s_docs:
        if doc["kind"] == "ConfigMap":
            assert fallback[key(doc)]["data"] == doc["data"]
        elif doc["kind"] not in WORKLOAD_KINDS:  # workloads differ only by ConfigMap hashes
            assert fallback[key(doc)] == doc
