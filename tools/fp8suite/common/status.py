"""How a run ended, in the two vocabularies the suite uses, and the one table between them.

*Log statuses* are what the report reads from a log (`endstatus.find_status`); *run states*
are what the run queue stores in `logs/<matrix>/runs.json` (`runstate.STATES`). Both the report
and the queue translate through `RUN_STATE`, so a log the report calls "time-limit" is the
queue's "time-limited" and nothing else.
"""

from __future__ import annotations

COMPLETED = "completed"  # all planned iterations, or Megatron's `[after training is done]`
TIME_LIMIT = "time-limit"  # --exit-duration-in-mins, SIGTERM handler, Slurm's time limit
EXIT_INTERVAL = "exit-interval"  # --exit-interval: Megatron stopped where it was told to
DIVERGED = "diverged"  # loss or gradient went non-finite (NaN/Inf), or the loss scale collapsed
CRASHED = "crashed"  # a worker's exception, OOM, NCCL, a killed process, a node failure
CANCELLED = "cancelled"  # Slurm cancelled or preempted the job, the launcher got a signal
TRUNCATED = "running/truncated"  # the log just stops: still running, or cut off
UNREADABLE = "unreadable"  # the file could not be read or parsed at all

LOG_STATUSES = (COMPLETED, TIME_LIMIT, EXIT_INTERVAL, DIVERGED, CRASHED, CANCELLED, TRUNCATED,
                UNREADABLE)

# Log status -> run state (runstate.STATES). A log that just stops is "running" while its
# process lives; the queue decides "failed" once the process has ended.
RUN_STATE = {
    COMPLETED: "completed",
    TIME_LIMIT: "time-limited",
    EXIT_INTERVAL: "completed",
    DIVERGED: "failed",
    CRASHED: "failed",
    CANCELLED: "interrupted",
    TRUNCATED: "running",
    UNREADABLE: "failed",
}

# Statuses whose run reached the end it was given: a baseline must have one of these.
FINISHED = (COMPLETED,)
# Statuses whose figures describe a failure: no speedup or loss comparison is valid.
FAILED = (DIVERGED, CRASHED, UNREADABLE)


def run_state(log_status: str) -> str:
    """The run state for a log status; KeyError names the valid statuses."""
    try:
        return RUN_STATE[log_status]
    except KeyError:
        raise KeyError(f"unknown log status {log_status!r}; valid: {', '.join(LOG_STATUSES)}") from None
