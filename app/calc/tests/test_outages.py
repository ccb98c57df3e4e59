from typing import Any

import pytest

from tests.outages import post_is_refused_with_a_bounded_503


@pytest.mark.django_db(transaction=True)  # delay_on_commit publishes at once, outside a test transaction
def test_enqueueing_with_the_broker_down_is_a_bounded_503_with_retry_after(
    client: Any, broker_unreachable: None
) -> None:
    post_is_refused_with_a_bounded_503(client, "/tasks/add/", {"x": 1, "y": 2}, dependency="broker")
