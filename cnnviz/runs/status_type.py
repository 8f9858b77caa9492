"""The status of a run, as one type (`Status`): what the pages, the CLI and `runs --json` show."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A run's state. A str subclass: it compares equal to, and serialises as, its value."""

    QUEUED = "queued"            # waiting in the queue for a slot
    STARTING = "starting"        # its process started, nothing logged yet
    RUNNING = "running"          # training
    FINISHED = "finished"        # all epochs done
    STOPPED = "stopped"          # stopped by a user, with a checkpoint (resumable)
    PRUNED = "pruned"            # stopped by a search's pruner, with a checkpoint (resumable)
    DIVERGED = "diverged"        # the loss became NaN/inf
    ERROR = "error"              # failed (bad data, out of memory, a launch that failed)
    INTERRUPTED = "interrupted"  # its process is gone without a final line (resumable)

    def __str__(self) -> str:
        return self.value

    @property
    def live(self) -> bool:
        """Queued, starting or running: not ended."""
        return self in (Status.QUEUED, Status.STARTING, Status.RUNNING)

    @property
    def training(self) -> bool:
        """Holding a slot: starting or running."""
        return self in (Status.STARTING, Status.RUNNING)

    @classmethod
    def of(cls, value: object, default: "Status" = None) -> "Status":
        """The Status named `value` (a done line's status), else `default` (ERROR)."""
        try:
            return cls(str(value))
        except ValueError:
            return default or cls.ERROR
