"""The Helm chart, rendered by Helm's own engine (PyPI ``helm-python-sdk``: Helm's Go SDK,
no binary) for each value set a deployment may use, linted strictly, every manifest checked
against the Kubernetes schemas offline (``kubernetes-validate``, strict: an unknown field
fails), the values against values.schema.json, and the promises the chart makes asserted on
what it renders: hardening on every pod, deny-by-default network policies, a worker pool
per job kind, autoscaling that does not depend on workers being up."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from sandboxes.schema import LIMIT_BOUNDS
from sandboxes.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "warden"
KUBERNETES = ("1.30.0", "1.37.0")  # the chart's kubeVersion floor, and the newest schemas
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject"),
                ("monitoring.coreos.com/v1", "ServiceMonitor")}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-redis": {
        "redis": {"enabled": False, "external": {
            "host": "redis.example.internal", "port": 6380, "db": 2, "tls": True,
            "egressTo": [{"ipBlock": {"cidr": "10.20.0.5/32"}}]}},
        "secrets": {"redisPassword": "s3cret-Pass.word"}},
    "external-redis-no-password": {
        "redis": {"enabled": False, "external": {"host": "redis"}}},
    "keda": {"workers": {"autoscaling": {"keda": True},
                         "sandbox": {"autoscaling": {"minReplicas": 0}},
                         "jail": {"enabled": True}}},
    "service-monitor": {"metrics": {"serviceMonitor": True, "labels": {"release": "prom"}}},
    "jail": {"workers": {"jail": {"enabled": True}}},
    "jail-unconfined": {"workers": {"jail": {
        "enabled": True, "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"}}}},
    "fixed-size": {"api": {"autoscaling": {"enabled": False}, "pdb": {"enabled": False}},
                   "workers": {"sandbox": {"autoscaling": {"enabled": False}, "replicas": 3},
                               "pdb": {"enabled": False}}},
    "ingress-restricted": {
        "api": {"ingress": {"enabled": True, "className": "nginx",
                            "tls": [{"secretName": "warden-tls",
                                     "hosts": ["warden.example.com"]}]},
                "networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "ingress-nginx"}}}]}},
        "metrics": {"scrapeFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]},
        "callbacks": {"allowedNetworks": ["10.30.0.0/16"]},
        "networkPolicy": {"dnsTo": [{"namespaceSelector": {}, "podSelector": {
            "matchLabels": {"k8s-app": "kube-dns"}}}]}},
    "existing-secret": {"secrets": {"existingSecret": "warden-prod"},
                        "config": {"WARDEN_MAX_QUEUE_LENGTH": 20000,
                                   "WARDEN_JOB_TTL_S": "24h"}},
    "no-callbacks": {"callbacks": {"enabled": False}},
}


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    loaded = helm_python.Chart.load(str(CHART))
    yield loaded
    loaded.close()


def render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every manifest the chart renders for ``values`` (NOTES.txt aside)."""
    out = chart.render(values, name="rel", namespace="warden")
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@pytest.fixture(scope="module")
def rendered(chart: Any) -> dict[str, list[dict[str, Any]]]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in docs])
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of everything that runs a pod."""
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            specs.append((doc["metadata"]["name"], doc["spec"]))
    return specs


# -- values and schema ----------------------------------------------------------------------
def test_every_value_set_matches_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for name, values in VALUE_SETS.items():
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(merged(defaults, values)))
        assert not errors, (name, [e.message for e in errors])


def test_every_value_is_documented() -> None:
    """Each leaf of values.yaml has a ``## @param`` line naming it or its parent."""
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"## @param ([\w.]+)", text))

    def leaves(node: Any, prefix: str) -> Iterator[str]:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                yield from leaves(value, f"{prefix}{key}.")
        else:
            yield prefix.rstrip(".")

    missing = [leaf for leaf in leaves(yaml.safe_load(text), "")
               if not any(leaf == d or leaf.startswith(d + ".") for d in documented)]
    assert not missing, missing


@pytest.mark.parametrize(("values", "message"), [
    ({"api": {"replicas": -1}}, "/api/replicas': minimum: got -1, want 0"),
    ({"workers": {"sandbox": {"replicas": -2}}}, "/workers/sandbox/replicas': minimum"),
    ({"replica": 3}, "additional properties 'replica' not allowed"),
    ({"workers": {"jail": {"enable": True}}}, "additional properties 'enable' not allowed"),
    ({"api": {"port": "8000"}}, "/api/port': got string, want integer"),
    ({"workers": {"terminationGracePeriodSeconds": 60}}, "minimum: got 60, want 330"),
    ({"secrets": {"adminApiKey": "letmein"}}, "/secrets/adminApiKey"),
    ({"config": {"redis_url": "x"}}, "'redis_url' does not match pattern '^WARDEN_"),
    ({"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0}}, "/podSecurityContext"),
    ({"workers": {"autoscaling": {"keda": "maybe"}}}, "/workers/autoscaling/keda"),
])
def test_a_bad_value_is_refused_before_anything_renders(
        chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        chart.validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(message)):
        chart.render(values, name="rel", namespace="warden")


@pytest.mark.parametrize(("values", "message"), [
    ({"config": {"WARDEN_REDIS_URL": "redis://elsewhere"}},
     "config.WARDEN_REDIS_URL is set by the chart"),
    ({"redis": {"enabled": False}}, "redis.external.host is required"),
    ({"workers": {"autoscaling": {"keda": True}},
      "config": {"WARDEN_METRICS_TENANT_LABELS": "true"}},
     "turn WARDEN_METRICS_TENANT_LABELS off"),
])
def test_a_contradiction_fails_with_one_clear_line(
        chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        chart.render(values, name="rel", namespace="warden")


# -- lint and Kubernetes schemas ------------------------------------------------------------
@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_is_clean(name: str) -> None:
    report = helm_python.lint(str(CHART), VALUE_SETS[name], strict=True)
    assert report["errors"] == [], report
    # severity 1 is information ("icon is recommended": the project has no icon)
    assert [m for m in report["messages"] if m["severity"] > 1] == [], report


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue  # a CRD's schema is not bundled: checked field by field below
        for version in KUBERNETES:
            kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel", doc
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "warden", doc


# -- hardening ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_pod_is_locked_down(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    specs = pod_specs(rendered[name])
    assert len(specs) >= 3  # API, a worker pool, the helm test pod (and Redis)
    for pod, spec in specs:
        assert spec["automountServiceAccountToken"] is False, pod
        assert spec["serviceAccountName"] == "rel-warden", pod
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] > 0, pod
        seccomp = context["seccompProfile"]
        if pod == "rel-warden-worker-jail":  # its one extra permission: user namespaces
            assert seccomp["type"] in ("Localhost", "Unconfined"), pod
        else:
            assert seccomp == {"type": "RuntimeDefault"}, pod
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), (pod, key)
        for volume in spec.get("volumes", []):
            assert set(volume) <= {"name", "emptyDir", "persistentVolumeClaim", "secret",
                                   "configMap"}, (pod, volume)
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), (pod, volume)
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, pod
            assert sc["readOnlyRootFilesystem"] is True, pod
            assert sc["runAsNonRoot"] is True and sc["privileged"] is False, pod
            assert sc["capabilities"] == {"drop": ["ALL"]}, pod
            if pod != "rel-warden-worker-jail":
                assert "appArmorProfile" not in sc, pod
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), (pod, part)


def test_the_jail_pool_gets_the_profile_it_is_given(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    jail = named(rendered["jail"], "Deployment", "rel-warden-worker-jail")["spec"]["template"]
    assert jail["spec"]["securityContext"]["seccompProfile"] == {
        "type": "Localhost", "localhostProfile": "warden/jail-seccomp.json"}
    assert jail["spec"]["containers"][0]["securityContext"]["appArmorProfile"] == {
        "type": "RuntimeDefault"}
    loose = named(rendered["jail-unconfined"], "Deployment", "rel-warden-worker-jail")
    spec = loose["spec"]["template"]["spec"]
    assert spec["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert spec["containers"][0]["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}
    assert not [d for d in rendered["defaults"] if d["metadata"]["name"].endswith("-jail")]


def _load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_jail_seccomp_profile_refuses_by_default_and_allows_only_the_jail_extras() -> None:
    profile = json.loads((CHART / "files" / "jail-seccomp.json").read_text())
    script = _load_script("jail_seccomp")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"  # a syscall it does not name: refused
    assert len(profile["syscalls"]) == 1
    rule = profile["syscalls"][0]
    assert rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
    allowed = set(rule["names"])
    assert allowed >= script.JAIL_NEEDS
    assert not allowed & script.REFUSED, allowed & script.REFUSED
    assert {"read", "write", "openat", "execve", "mmap", "exit_group"} <= allowed
    assert {"ptrace", "bpf", "kexec_load", "init_module", "keyctl"}.isdisjoint(allowed)


# -- what runs where ------------------------------------------------------------------------
def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_settings_reach_warden_under_names_it_reads(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    known = {env_name(field) for field in Settings.model_fields}
    for name, docs in rendered.items():
        config = named(docs, "ConfigMap", "rel-warden-settings")["data"]
        assert set(config) <= known, (name, set(config) - known)
        for _, spec in pod_specs(docs):
            for container in spec["containers"]:
                warden = {k for k in _env(container) if k.startswith("WARDEN_")}
                assert warden <= known, (name, warden - known)
    config = named(rendered["existing-secret"], "ConfigMap", "rel-warden-settings")["data"]
    assert config["WARDEN_MAX_QUEUE_LENGTH"] == "20000" and config["WARDEN_JOB_TTL_S"] == "24h"
    settings = Settings.model_validate({k[len("WARDEN_"):].lower(): v
                                        for k, v in config.items()})
    assert settings.worker_health_file == Path("/tmp/warden/worker-health.json")
    assert settings.max_queue_length == 20000 and settings.job_ttl_s == 86_400


def test_the_redis_url_takes_its_password_from_the_secret(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    api = named(rendered["defaults"], "Deployment", "rel-warden-api")
    container = api["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    # Kubernetes expands $(VAR) only from variables defined before it
    assert names.index("REDIS_PASSWORD") < names.index("WARDEN_REDIS_URL")
    env = _env(container)
    assert env["WARDEN_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@rel-warden-redis:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "rel-warden-secrets", "key": "redis-password"}
    assert env["WARDEN_BOOTSTRAP_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "admin-api-key"
    external = _env(named(rendered["external-redis"], "Deployment", "rel-warden-worker-sandbox")
                    ["spec"]["template"]["spec"]["containers"][0])
    assert external["WARDEN_REDIS_URL"]["value"] == (
        "rediss://:$(REDIS_PASSWORD)@redis.example.internal:6380/2")
    bare = _env(named(rendered["external-redis-no-password"], "Deployment",
                      "rel-warden-api")["spec"]["template"]["spec"]["containers"][0])
    assert bare["WARDEN_REDIS_URL"]["value"] == "redis://redis:6379/0"
    assert "REDIS_PASSWORD" not in bare
    assert not of_kind(rendered["external-redis"], "StatefulSet")


def test_generated_secrets_are_valid_and_an_existing_secret_is_used_instead(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    secret = named(rendered["defaults"], "Secret", "rel-warden-secrets")
    admin = base64.b64decode(secret["data"]["admin-api-key"]).decode()
    pattern = Settings.model_fields["bootstrap_admin_key"].metadata[0].pattern
    assert re.fullmatch(pattern, admin), admin  # the API accepts the key it is given
    assert len(base64.b64decode(secret["data"]["redis-password"])) == 32
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    docs = rendered["existing-secret"]
    assert not of_kind(docs, "Secret")
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if "valueFrom" in env:
                    assert env["valueFrom"]["secretKeyRef"]["name"] == "warden-prod"


def test_redis_keeps_every_job_on_its_volume(rendered: dict[str, list[dict[str, Any]]]) -> None:
    redis = named(rendered["defaults"], "StatefulSet", "rel-warden-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    assert options["--requirepass"] == "$(REDIS_PASSWORD)" and options["--dir"] == "/data"
    claim = redis["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"


def test_workers_outlive_their_longest_job_and_probe_themselves(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    longest = LIMIT_BOUNDS["wall_time_s"].maximum + Settings().source_compile_timeout_s
    for name, docs in rendered.items():
        workers = [d for d in of_kind(docs, "Deployment") if "-worker-" in d["metadata"]["name"]]
        assert workers, name
        for worker in workers:
            spec = worker["spec"]["template"]["spec"]
            assert spec["terminationGracePeriodSeconds"] > longest
            container = spec["containers"][0]
            assert container["args"] == ["worker"]
            assert "ports" not in container  # nothing connects to a worker
            for probe, kind in (("livenessProbe", "live"), ("startupProbe", "live"),
                                ("readinessProbe", "ready")):
                assert container[probe]["exec"]["command"] == [
                    "python", "-m", "workers.health", kind], (worker["metadata"]["name"], probe)
            assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    api = named(rendered["defaults"], "Deployment", "rel-warden-api")
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # Redis, not workers
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_pools_scale_with_keda_on_their_own_queue_or_with_an_hpa(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    keda = rendered["keda"]
    scaled = {d["metadata"]["name"]: d for d in of_kind(keda, "ScaledObject")}
    assert set(scaled) == {"rel-warden-worker-sandbox", "rel-warden-worker-jail"}
    for pool in ("sandbox", "jail"):
        spec = scaled[f"rel-warden-worker-{pool}"]["spec"]
        assert spec["scaleTargetRef"] == {"name": f"rel-warden-worker-{pool}"}
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "metrics-api"
        assert trigger["metadata"] == {
            "url": "http://rel-warden-api.warden.svc:80/metrics", "format": "prometheus",
            "valueLocation": f'warden_queue_depth{{pool="{pool}"}}', "targetValue": "4",
            "activationTargetValue": "0"}
    assert scaled["rel-warden-worker-sandbox"]["spec"]["minReplicaCount"] == 0
    hpas = {d["metadata"]["name"] for d in of_kind(keda, "HorizontalPodAutoscaler")}
    assert hpas == {"rel-warden-api"}  # the API is scaled on CPU either way
    # no KEDA API in the cluster and `auto`: an HPA on CPU per pool, never below one pod
    plain = {d["metadata"]["name"]: d for d in of_kind(rendered["jail"], "HorizontalPodAutoscaler")}
    assert set(plain) == {"rel-warden-api", "rel-warden-worker-sandbox", "rel-warden-worker-jail"}
    assert not of_kind(rendered["jail"], "ScaledObject")
    assert plain["rel-warden-worker-sandbox"]["spec"]["minReplicas"] == 1
    fixed = rendered["fixed-size"]
    assert not of_kind(fixed, "HorizontalPodAutoscaler")
    assert not of_kind(fixed, "PodDisruptionBudget")
    assert named(fixed, "Deployment", "rel-warden-worker-sandbox")["spec"]["replicas"] == 3
    assert named(fixed, "Deployment", "rel-warden-api")["spec"]["replicas"] == 2
    assert "replicas" not in named(keda, "Deployment", "rel-warden-worker-sandbox")["spec"]
    pdbs = {d["metadata"]["name"]: d["spec"] for d in of_kind(keda, "PodDisruptionBudget")}
    assert pdbs["rel-warden-api"]["minAvailable"] == 1
    assert pdbs["rel-warden-worker-jail"]["maxUnavailable"] == 1


def test_metrics_are_scraped_by_a_service_monitor_or_by_annotations(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    (monitor,) = of_kind(rendered["service-monitor"], "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics",
                                             "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    service = named(rendered["service-monitor"], "Service", "rel-warden-api")
    assert "annotations" not in service["metadata"]
    assert not of_kind(rendered["defaults"], "ServiceMonitor")
    service = named(rendered["defaults"], "Service", "rel-warden-api")
    annotations = service["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                           "prometheus.io/port": "8000"}


# -- network policies -----------------------------------------------------------------------
def _policy(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = named(docs, "NetworkPolicy", f"rel-warden-{component}")["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    assert spec["policyTypes"] == ["Ingress", "Egress"]  # both denied but for the rules
    return spec


REDIS_PEER = {"podSelector": {"matchLabels": {
    "app.kubernetes.io/name": "warden", "app.kubernetes.io/instance": "rel",
    "app.kubernetes.io/component": "redis"}}}
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


def test_workers_reach_redis_and_dns_and_nothing_reaches_them(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    worker = _policy(rendered["defaults"], "worker")
    assert worker["ingress"] == []
    assert worker["egress"] == [
        {"to": [REDIS_PEER], "ports": [{"port": 6379, "protocol": "TCP"}]},
        {"ports": DNS_PORTS}]
    external = _policy(rendered["external-redis"], "worker")
    assert external["egress"][0] == {"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
                                     "ports": [{"port": 6380, "protocol": "TCP"}]}
    dns = _policy(rendered["ingress-restricted"], "worker")["egress"][1]
    assert dns["to"] == [{"namespaceSelector": {}, "podSelector": {
        "matchLabels": {"k8s-app": "kube-dns"}}}]
    for docs in rendered.values():  # a worker policy in every deployment
        assert _policy(docs, "worker")["ingress"] == []


def test_redis_is_reached_by_warden_only(rendered: dict[str, list[dict[str, Any]]]) -> None:
    redis = _policy(rendered["defaults"], "redis")
    assert redis["egress"] == []
    (rule,) = redis["ingress"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in rule["from"]] == ["api", "worker"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert not [d for d in of_kind(rendered["external-redis"], "NetworkPolicy")
                if d["metadata"]["name"] == "rel-warden-redis"]


def test_the_api_takes_requests_and_reaches_redis_dns_and_public_callbacks(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    api = _policy(rendered["defaults"], "api")
    assert api["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert api["egress"][:2] == [
        {"to": [REDIS_PEER], "ports": [{"port": 6379, "protocol": "TCP"}]}, {"ports": DNS_PORTS}]
    (callbacks,) = api["egress"][2:]
    v4, v6 = callbacks["to"]
    assert v4["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
            "127.0.0.0/8"} <= set(v4["ipBlock"]["except"])
    assert v6["ipBlock"] == {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10", "::1/128"]}
    assert _policy(rendered["no-callbacks"], "api")["egress"] == api["egress"][:2]
    restricted = _policy(rendered["ingress-restricted"], "api")
    assert [rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for rule in restricted["ingress"]] == ["ingress-nginx", "monitoring"]
    assert restricted["egress"][2]["to"][2] == {"ipBlock": {"cidr": "10.30.0.0/16"}}
    config = named(rendered["ingress-restricted"], "ConfigMap", "rel-warden-settings")["data"]
    assert config["WARDEN_CALLBACK_ALLOWED_NETWORKS"] == "10.30.0.0/16"
    assert named(rendered["no-callbacks"], "ConfigMap",
                 "rel-warden-settings")["data"]["WARDEN_CALLBACKS_ENABLED"] == "false"


def test_notes_say_how_to_get_the_admin_key_and_what_pools_run(chart: Any) -> None:
    notes = chart.render({}, name="rel", namespace="warden")["warden/templates/NOTES.txt"]
    assert "kubectl -n warden get secret rel-warden-secrets" in notes
    assert "until workers.jail.enabled=true" in notes
    jail = chart.render(VALUE_SETS["jail"], name="rel", namespace="warden")
    assert "install it on every node first" in jail["warden/templates/NOTES.txt"]
