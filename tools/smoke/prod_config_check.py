"""Checks the rendered production compose file against the stack's rules (make prod-config).

Reads `docker compose config --format json` on stdin, so it sees what compose would run, override files
included. Standard library only. Prints one line per rule; exits 1 listing every service that breaks one.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

Service = dict[str, Any]

PUBLISHER = "proxy"  # the only service with published ports
ONE_REPLICA = "beat"  # two would send every periodic task twice
DATA_SERVICES = ("postgres", "redis")  # internal networks only
MIGRATE = "migrate"
RUNS_AFTER_MIGRATE = ("web", "worker", "beat")
SOFT_SHUTDOWN_DEFAULT = 60.0  # CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT in app/config/settings/base.py


def seconds(duration: str | int | float | None) -> float:
    """Compose's durations: a number of seconds, or Go's form ("2m30s", "150s", "1m")."""
    if duration is None:
        return 10.0  # Docker's default stop timeout
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"([\d.]+)(ms|h|m|s)", duration)
    if not parts or "".join(number + unit for number, unit in parts) != duration:
        raise ValueError(f"unreadable duration {duration!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def is_one_off(service: Service) -> bool:
    return service.get("restart") in (None, "no")


def rules(services: dict[str, Service], networks: dict[str, Any]) -> list[tuple[str, Callable[[str, Service], bool]]]:
    built_images = {service["image"] for service in services.values() if "build" in service}

    def non_root(name: str, service: Service) -> bool:
        # Images built here set a numeric USER (compose/Dockerfile, compose/caddy/Dockerfile); make prod-smoke
        # checks the running processes. Any other image must be given a user here.
        if service.get("image") in built_images and "user" not in service:
            return True
        user = str(service.get("user", "")).split(":")[0]
        return user not in ("", "0", "root")

    def limits(name: str, service: Service) -> bool:
        limit = service.get("deploy", {}).get("resources", {}).get("limits", {})
        return bool(limit.get("memory")) and bool(limit.get("cpus"))

    def log_rotation(name: str, service: Service) -> bool:
        logging = service.get("logging", {})
        options = logging.get("options", {})
        return logging.get("driver") == "local" or (
            logging.get("driver") == "json-file" and "max-size" in options and "max-file" in options
        )

    def healthcheck(name: str, service: Service) -> bool:
        check = service.get("healthcheck", {})
        return is_one_off(service) or (bool(check.get("test")) and not check.get("disable"))

    def ports(name: str, service: Service) -> bool:
        return name == PUBLISHER or not service.get("ports")

    def internal_only(name: str, service: Service) -> bool:
        if name not in DATA_SERVICES:
            return True
        attached = service.get("networks") or {"default": None}
        return "network_mode" not in service and all(networks.get(net, {}).get("internal") for net in attached)

    def migrations_first(name: str, service: Service) -> bool:
        depends = service.get("depends_on", {})
        if name in RUNS_AFTER_MIGRATE and depends.get(MIGRATE, {}).get("condition") != "service_completed_successfully":
            return False
        conditions = {dep: spec.get("condition") for dep, spec in depends.items()}
        expected = {dep: "service_completed_successfully" if dep == MIGRATE else "service_healthy" for dep in depends}
        return conditions == expected

    def no_source_mounts(name: str, service: Service) -> bool:
        for volume in service.get("volumes", []):
            if volume.get("type") == "bind" and not volume.get("read_only"):
                return False
            if volume.get("type") == "bind" and volume.get("target", "").startswith("/app"):
                return False
            if "docker.sock" in str(volume.get("source", "")):
                return False
        return True

    def not_privileged(name: str, service: Service) -> bool:
        return not service.get("privileged") and not service.get("cap_add") and "container_name" not in service

    def restarts(name: str, service: Service) -> bool:
        return not is_one_off(service) or name == MIGRATE

    def replicas(name: str, service: Service) -> bool:
        return name != ONE_REPLICA or service.get("deploy", {}).get("replicas", 1) == 1

    def settings(name: str, service: Service) -> bool:
        environment = service.get("environment") or {}
        if service.get("image") not in built_images or name == PUBLISHER:
            return True
        module_ok = environment.get("DJANGO_SETTINGS_MODULE") == "config.settings.production"
        return module_ok and (name != "worker" or environment.get("DJANGO_CONN_MAX_AGE") == "0")

    def no_data_passwords(name: str, service: Service) -> bool:
        # The app gets the whole env file (env_file), but not the data services' passwords: its credentials are
        # inside DATABASE_URL and CELERY_BROKER_URL. Flower's password reaches Flower only.
        if service.get("image") not in built_images or name == PUBLISHER:
            return True
        environment = service.get("environment") or {}
        withheld = ["POSTGRES_PASSWORD", "REDIS_PASSWORD"] + (["FLOWER_PASSWORD"] if name != "flower" else [])
        return not any(environment.get(variable) for variable in withheld)

    def graceful_worker(name: str, service: Service) -> bool:
        # A deploy must not kill running tasks: SIGTERM starts Celery's soft shutdown, and Docker waits longer
        # than it lasts (the worker needs a few seconds to close after it) before it kills.
        if name != "worker":
            return True
        environment = service.get("environment") or {}
        soft_timeout = float(environment.get("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT") or SOFT_SHUTDOWN_DEFAULT)
        grace = seconds(service.get("stop_grace_period"))
        return environment.get("REMAP_SIGTERM") == "SIGQUIT" and soft_timeout > 0 and grace >= soft_timeout + 15

    return [
        ("runs as a non-root user", non_root),
        ("drops every capability, adds none, is not privileged, has no container_name", not_privileged),
        ("no-new-privileges", lambda n, s: "no-new-privileges:true" in s.get("security_opt", [])),
        ("read-only root filesystem", lambda n, s: s.get("read_only") is True),
        (f"a restart policy ({MIGRATE}, a one-off job, excepted)", restarts),
        ("memory and CPU limits", limits),
        ("log rotation", log_rotation),
        ("a healthcheck (one-off jobs excepted)", healthcheck),
        (f"no published ports but on {PUBLISHER}", ports),
        ("Postgres and Redis on internal networks only", internal_only),
        ("waits for healthy services and for migrate to succeed", migrations_first),
        ("no writable or source bind mounts, no Docker socket", no_source_mounts),
        (f"{ONE_REPLICA} has exactly one replica", replicas),
        ("Django services use the production settings; the worker CONN_MAX_AGE 0", settings),
        ("the app gets no Postgres or Redis password, and only Flower gets Flower's", no_data_passwords),
        ("SIGTERM starts the worker's soft shutdown, and Docker waits longer than it lasts", graceful_worker),
    ]


def main() -> int:
    config = json.load(sys.stdin)
    services: dict[str, Service] = config["services"]
    networks: dict[str, Any] = config.get("networks", {})
    failures = 0
    for description, rule in rules(services, networks):
        broken = [name for name, service in sorted(services.items()) if not rule(name, service)]
        if broken:
            failures += 1
            print(f"FAIL {description}: {', '.join(broken)}")
        else:
            print(f"ok   {description}")
    if failures:
        return 1
    print(f"prod-config: {len(services)} services follow every rule")
    return 0


if __name__ == "__main__":
    sys.exit(main())
