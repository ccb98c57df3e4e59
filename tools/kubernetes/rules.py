#!/usr/bin/env python3
"""The checks `check` runs on a rendered overlay beyond the schemas: what docker-compose.prod.yml guarantees and
`make prod-config` checks there, and what ties values in several objects together.

    python3 rules.py OVERLAY RENDERED.yaml OUT_DIR

Writes every object to OUT_DIR/kubernetes/ (built-in kinds, for kubernetes-validate) or
OUT_DIR/crd/<group>/<kind>_<version>/ (custom resources, validated against schemas/<group>/<kind>_<version>.json),
and the environment of every app container to OUT_DIR/app-environments.json (for settings_check.py), then prints
each broken rule and exits 1 if there is one. Needs PyYAML.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import yaml

APP = "django-celery-stack"  # the app's pods: label app.kubernetes.io/name
APP_UID = 1000  # the image's app user and group (compose/Dockerfile)
SOFT_SHUTDOWN_SECONDS = 60  # CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT's default (config/settings/base.py)
SHUTDOWN_MARGIN_SECONDS = 15  # as make prod-config asks of the worker's stop_grace_period
WEB_GRACE_SECONDS = 30  # gunicorn's graceful_timeout (25 s) and a margin
RESERVED_CONNECTIONS = 3  # Postgres's superuser_reserved_connections (reserved_connections is 0)
BEAT_LOCK_CONNECTIONS = 1  # beat's advisory lock keeps a session of its own (celery_runtime/beat_lock.py)
SCHEMAS = Path(__file__).resolve().parent / "schemas"
POD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def is_builtin(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def split(objects: list[dict[str, Any]], out_dir: Path) -> None:
    for index, obj in enumerate(objects):
        api_version, kind = obj["apiVersion"], obj["kind"]
        file_name = f"{index:02d}-{kind.lower()}-{obj['metadata']['name']}.yaml"
        if is_builtin(api_version):
            target = out_dir / "kubernetes"
        else:
            group, _, version = api_version.partition("/")
            schema = f"{kind.lower()}_{version}"
            if not (SCHEMAS / group / f"{schema}.json").is_file():
                problem(f"{name_of(obj)}: no schema for {api_version} {kind} in schemas/{group}/{schema}.json")
                continue
            target = out_dir / "crd" / group / schema
        target.mkdir(parents=True, exist_ok=True)
        (target / file_name).write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def env_value(container: dict[str, Any], name: str, config: dict[str, dict[str, str]]) -> Any:
    """A variable's value in a container: its own env first (a dict for valueFrom), else its ConfigMaps."""
    for variable in container.get("env", []):
        if variable["name"] == name:
            return variable.get("value", variable.get("valueFrom"))
    for source in container.get("envFrom", []):
        data = config.get(source.get("configMapRef", {}).get("name", ""), {})
        if name in data:
            return data[name]
    return None


def app_environments(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each app container's environment as the kubelet would set it from its ConfigMaps and literal values.

    Values from elsewhere (secrets, the Downward API) are left out: settings_check.py stands in for the secrets.
    """
    config = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    found = []
    for obj in objects:
        if obj["kind"] not in POD_KINDS:
            continue
        if obj["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name") != APP:
            continue
        for container in containers(pod_spec(obj)):
            environment: dict[str, str] = {}
            for source in container.get("envFrom", []):
                environment |= config.get(source.get("configMapRef", {}).get("name", ""), {})
            environment |= {v["name"]: v["value"] for v in container.get("env", []) if "value" in v}
            found.append({"where": f"{name_of(obj)} container {container['name']}", "environment": environment})
    return found


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def check_pods(obj: dict[str, Any]) -> None:
    spec, where = pod_spec(obj), name_of(obj)
    security = spec.get("securityContext", {})
    if security.get("runAsNonRoot") is not True:
        problem(f"{where}: securityContext.runAsNonRoot must be true")
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(f"{where}: securityContext.seccompProfile.type must be RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        problem(f"{where}: automountServiceAccountToken must be false (nothing here calls the Kubernetes API)")
    if spec.get("enableServiceLinks") is not False:
        problem(f"{where}: enableServiceLinks must be false (the Service flower would set FLOWER_PORT)")
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    app_user = (security.get("runAsUser"), security.get("runAsGroup")) == (APP_UID, APP_UID)
    if labels.get("app.kubernetes.io/name") == APP and not app_user:
        problem(f"{where}: the app's pods run as the image's user: runAsUser and runAsGroup {APP_UID}")
    for container in containers(spec):
        at = f"{where} container {container['name']}"
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            problem(f"{at}: allowPrivilegeEscalation must be false")
        if context.get("readOnlyRootFilesystem") is not True:
            problem(f"{at}: readOnlyRootFilesystem must be true")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problem(f"{at}: capabilities must drop ALL")
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in container.get("resources", {}).get(bound, {}):
                    problem(f"{at}: resources.{bound}.{resource} is not set")
        if not any(mount["mountPath"] == "/tmp" for mount in container.get("volumeMounts", [])):
            problem(f"{at}: no writable /tmp (an emptyDir) on the read-only root filesystem")


def check(overlay: str, objects: list[dict[str, Any]]) -> None:
    by_name = {name_of(obj): obj for obj in objects}
    config = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}

    for obj in objects:
        if obj["kind"] in POD_KINDS:
            check_pods(obj)
    for namespace in (o for o in objects if o["kind"] == "Namespace"):
        if namespace["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
            problem(f"{name_of(namespace)}: label pod-security.kubernetes.io/enforce must be restricted")
    if overlay == "prod" and any(o["kind"] == "Secret" for o in objects):
        problem("the prod overlay renders a Secret: secrets are created in the cluster, never committed")
    for pdb in ("web", "worker"):
        if f"PodDisruptionBudget/{pdb}" not in by_name:
            problem(f"no PodDisruptionBudget for {pdb}")

    web, worker, beat = (by_name.get(f"Deployment/{name}") for name in ("web", "worker", "beat"))
    scaled = by_name.get("ScaledObject/worker")
    if not (web and worker and beat and scaled):
        problem("Deployments web, worker, beat and the ScaledObject worker must all be rendered")
        return
    worker_container = next(c for c in pod_spec(worker)["containers"] if c["name"] == "worker")
    web_container = next(c for c in pod_spec(web)["containers"] if c["name"] == "web")

    # Beat: exactly one, never two during a deploy.
    if beat["spec"].get("replicas") != 1 or beat["spec"].get("strategy", {}).get("type") != "Recreate":
        problem("Deployment/beat: replicas 1 and strategy Recreate (two beats send every periodic task twice)")

    # Shutdown: the worker's soft shutdown, gunicorn's graceful stop.
    if env_value(worker_container, "REMAP_SIGTERM", config) != "SIGQUIT":
        problem("Deployment/worker: REMAP_SIGTERM must be SIGQUIT (SIGTERM starts Celery's soft shutdown)")
    soft = float(env_value(worker_container, "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", config) or SOFT_SHUTDOWN_SECONDS)
    grace = pod_spec(worker).get("terminationGracePeriodSeconds", 30)
    if grace < soft + SHUTDOWN_MARGIN_SECONDS:
        problem(f"Deployment/worker: terminationGracePeriodSeconds {grace} < soft shutdown {soft:g} s + 15 s")
    if pod_spec(web).get("terminationGracePeriodSeconds", 30) < WEB_GRACE_SECONDS:
        problem(f"Deployment/web: terminationGracePeriodSeconds below {WEB_GRACE_SECONDS} s (gunicorn needs 25 s)")

    # Autoscaling and the Postgres connection budget (base/worker.yaml).
    minimum, maximum = scaled["spec"].get("minReplicaCount", 0), scaled["spec"].get("maxReplicaCount", 100)
    if minimum > maximum:  # the CRD's CEL rule, which a JSON Schema cannot express
        problem(f"ScaledObject/worker: minReplicaCount {minimum} > maxReplicaCount {maximum}")
    if "replicas" in worker["spec"]:
        problem("Deployment/worker: no `replicas`: KEDA owns the count, and each apply would reset it")
    replicas_env = env_value(worker_container, "WORKER_REPLICAS", config)
    if str(replicas_env) != str(maximum):
        problem(
            f"Deployment/worker: WORKER_REPLICAS={replicas_env} must equal the ScaledObject's maxReplicaCount "
            f"{maximum}, so the worker's start-up check counts every pod that can run"
        )
    worker_surge = worker["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%")
    if worker_surge != 0:
        problem(f"Deployment/worker: maxSurge {worker_surge} must be 0: more pods than WORKER_REPLICAS would run")
    processes = env_value(worker_container, "WORKER_PROCESSES", config)
    if isinstance(processes, dict) or processes in (None, "auto"):
        processes = math.ceil(cpu_cores(str(worker_container["resources"]["limits"]["cpu"])))
    pool = int(env_value(worker_container, "DJANGO_DB_POOL_SIZE", config) or 0)
    per_process = pool or int(env_value(worker_container, "CELERY_WORKER_CONCURRENCY", config) or 20)
    per_web_pod = int(env_value(web_container, "WEB_CONCURRENCY", config) or 2) * int(
        env_value(web_container, "GUNICORN_THREADS", config) or 4
    )
    web_replicas = web["spec"].get("replicas", 1)
    web_surge = web["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 1)
    singles = sum(
        o["spec"].get("replicas", 1)
        for o in objects
        if o["kind"] in {"Deployment", "Job"} and o["metadata"]["name"] not in {"web", "worker"}
    )
    starting = web_replicas + web_surge + maximum + singles - 1  # init containers' migrate --check; not the Job
    # One terminating pod beside its replacement during a rollout, for the web and for the worker.
    peak = (maximum + 1) * int(processes) * per_process + (web_replicas + web_surge + 1) * per_web_pod + singles
    peak += starting + BEAT_LOCK_CONNECTIONS
    postgres = by_name.get("StatefulSet/postgres")
    if postgres:
        args = " ".join(pod_spec(postgres)["containers"][0].get("args", []))
        found = re.search(r"max_connections=(\d+)", args)
        usable = (int(found.group(1)) if found else 100) - RESERVED_CONNECTIONS
        verdict = "fits" if peak <= usable else "DOES NOT FIT"
        print(f"  {overlay}: Postgres connections at the peak of a rollout: {peak} of {usable} usable: {verdict}")
        if peak > usable:
            problem(f"Postgres connections: {peak} at the peak of a rollout, but max_connections allows {usable}")
    else:
        print(
            f"  {overlay}: Postgres connections at the peak of a rollout: {peak}; the database must allow "
            f"max_connections >= {peak + RESERVED_CONNECTIONS}"
        )

    # The Ingress host must be one Django accepts, and Flower's unauthenticated URLs must not reach Flower.
    allowed = set(env_value(web_container, "DJANGO_ALLOWED_HOSTS", config).split(","))
    origins = set(env_value(web_container, "DJANGO_CSRF_TRUSTED_ORIGINS", config).split(","))
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            host = rule.get("host", "")
            if host not in allowed:
                problem(f"{name_of(ingress)}: host {host} is not in DJANGO_ALLOWED_HOSTS ({','.join(allowed)})")
            if f"https://{host}" not in origins:
                problem(f"{name_of(ingress)}: https://{host} is not in DJANGO_CSRF_TRUSTED_ORIGINS")
            routes = {p["path"]: p["backend"]["service"]["name"] for p in rule.get("http", {}).get("paths", [])}
            for hidden in ("/flower/metrics", "/flower/healthcheck"):
                if routes.get(hidden, "flower") == "flower":
                    problem(f"{name_of(ingress)}: {hidden} must not be routed to Flower (no authentication there)")


def main() -> None:
    overlay, rendered, out_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    objects = [obj for obj in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if obj]
    split(objects, out_dir)
    environments = json.dumps(app_environments(objects), indent=1)
    (out_dir / "app-environments.json").write_text(environments, encoding="utf-8")
    try:
        check(overlay, objects)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, StopIteration) as exc:
        problem(
            f"an object is malformed, so the rules could not all be checked ({exc.__class__.__name__}: {exc}); "
            "the schema validation says where"
        )
    for message in problems:
        print(f"  RULE {overlay}: {message}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
