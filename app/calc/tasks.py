"""Tasks whose results are stored (django-celery-results) and read back by id over HTTP."""

from celery import shared_task

Number = int | float


@shared_task(ignore_result=False)
def add(x: Number, y: Number) -> Number:
    return x + y


@shared_task(ignore_result=False)
def mul(x: Number, y: Number) -> Number:
    return x * y


@shared_task(ignore_result=False)
def xsum(numbers: list[Number]) -> Number:
    return sum(numbers)
