"""Errors of the domain. The API turns them into problem responses in one place."""

from __future__ import annotations


class DomainError(Exception):
    """A command that the rules refuse; the message is a sentence for a person."""


class TaskNotFound(DomainError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} does not exist")
        self.task_id = task_id


class VersionConflict(DomainError):
    def __init__(self, current_version: int) -> None:
        super().__init__(f"the task is at version {current_version}")
        self.current_version = current_version


class NothingToRestore(DomainError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} is not deleted, so there is nothing to restore")
        self.task_id = task_id
