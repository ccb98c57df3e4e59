"""Starting the example calculations: the input checked (BadRequest says what is wrong), then the task sent."""

import math
from typing import Any

from celery.result import AsyncResult

from calc.tasks import Number, add, mul, xsum
from config.api import BadRequest, require_database

MAX_XSUM_NUMBERS = 10_000
MAX_MAGNITUDE = 10**18  # keeps every result JSON-serialisable (Python refuses ints of over 4,300 digits)
OPERATIONS = ("add", "mul", "xsum")


def _number(payload: dict[str, Any], field: str) -> Number:
    if field not in payload:
        raise BadRequest(f"{field} is required")
    return _as_number(payload[field], field)


def _as_number(value: Any, field: str) -> Number:
    if isinstance(value, str):  # form fields arrive as text
        try:
            value = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise BadRequest(f"{field} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{field} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{field} must be a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise BadRequest(f"{field} must be between -1e18 and 1e18")
    return value


def _numbers(payload: dict[str, Any]) -> list[Number]:
    numbers = payload.get("numbers")
    if isinstance(numbers, str):  # form: numbers=1,2,3
        numbers = [item for item in numbers.split(",") if item.strip()]
    if not isinstance(numbers, list):
        raise BadRequest("numbers is required: a JSON array, or comma-separated in a form")
    if len(numbers) > MAX_XSUM_NUMBERS:
        raise BadRequest(f"numbers has {len(numbers)} items; at most {MAX_XSUM_NUMBERS} are allowed")
    return [_as_number(item, f"numbers[{index}]") for index, item in enumerate(numbers)]


def calculation_start(*, operation: str, payload: dict[str, Any]) -> AsyncResult:
    """add and mul take x and y, xsum takes numbers. Refused (the database error, a 503) when Postgres, where
    the result goes, cannot be reached now."""
    task: Any
    args: tuple[Any, ...]
    if operation == "xsum":
        task, args = xsum, (_numbers(payload),)
    elif operation in ("add", "mul"):
        task, args = (add if operation == "add" else mul), (_number(payload, "x"), _number(payload, "y"))
    else:
        raise BadRequest(f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}")
    require_database()
    result: AsyncResult = task.delay(*args)
    return result
