#!/usr/bin/env python3
"""Starts the app's settings with the environment each app container of a rendered overlay gets, as the container
would at start-up: a misspelt CELERY_ name, a malformed value or a missing variable in the ConfigMap fails here,
with the app's own message, before anything reaches a cluster.

    python settings_check.py OVERLAY APP-ENVIRONMENTS.json

Runs `manage.py check` under the Python of the app's image (`check` runs there), once for each distinct
environment that rules.py found. The secrets arrive in the cluster as files (NAME_FILE): here each is a
placeholder value instead, so the check needs no secret and never reads one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[2] / "app"
PLACEHOLDERS = {
    "DJANGO_SECRET_KEY": "settings-check-only",
    "DATABASE_URL": "postgres://check@localhost/check",
    "CELERY_BROKER_URL": "redis://localhost",
}


def main() -> None:
    overlay, environments = sys.argv[1], json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    checked: dict[str, str] = {}  # environment -> the first container that has it
    refusals: dict[str, list[str]] = {}  # the app's message -> the containers that get it
    for entry in environments:
        environment = {k: v for k, v in entry["environment"].items() if k.removesuffix("_FILE") not in PLACEHOLDERS}
        key = json.dumps(environment, sort_keys=True)
        if key in checked:
            continue
        checked[key] = entry["where"]
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=APP_DIR,
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **PLACEHOLDERS, **environment},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            refusals.setdefault(last[0], []).append(entry["where"])
    for message, where in refusals.items():
        print(f"  SETTINGS {overlay}: {message}\n    in {', '.join(where)}")
    if refusals:
        sys.exit(1)
    print(f"  {overlay}: the app's settings start with each of the {len(checked)} distinct container environments")


if __name__ == "__main__":
    main()
