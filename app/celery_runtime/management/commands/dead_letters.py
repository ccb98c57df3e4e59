"""manage.py dead_letters [list | requeue | drop] [--id TASK_ID | --all]: the messages the worker set aside."""

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from celery_runtime.dead_letters import dead_letter_count, dead_letter_drop, dead_letter_list, dead_letter_requeue


class Command(BaseCommand):
    help = "Lists the messages the worker set aside (dead letters), or requeues or drops them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", choices=["list", "requeue", "drop"], default="list")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--id", dest="task_id", help="the task id of one dead letter")
        which.add_argument("--all", action="store_true", help="every dead letter")

    def handle(self, *args: Any, action: str, task_id: str | None, all: bool, **options: Any) -> None:
        if action == "list":
            letters = dead_letter_list()
            self.stdout.write(f"{dead_letter_count()} dead letter(s)")
            for letter in letters:
                at = datetime.fromtimestamp(letter.at, UTC).isoformat(timespec="seconds")
                deaths = f", {letter.deaths} deaths" if letter.reason == "deaths" else ""
                self.stdout.write(
                    f"{at}  {letter.task}[{letter.task_id}]  queue {letter.queue}: {letter.reason}{deaths}"
                )
            return
        if not task_id and not all:
            raise CommandError(f"{action} what: --id TASK_ID, or --all")
        done = (dead_letter_requeue if action == "requeue" else dead_letter_drop)(task_id=task_id)
        if task_id and not done:
            raise CommandError(f"no dead letter of task {task_id} to {action}")
        self.stdout.write(f"{action}: {done} dead letter(s)")
