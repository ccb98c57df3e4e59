"""What make smoke and make prod-smoke share: a check that prints its line, and a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def check(name: str, condition: bool, detail: Any = "") -> None:
    """Prints `ok   name`, or raises AssertionError with the detail that shows what was found instead."""
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok   {name}")


def eventually(probe: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """probe()'s first truthy result, polling every half second; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")
