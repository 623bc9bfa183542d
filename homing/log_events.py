"""The log entries written for each change of a message other than an attempt's outcome.

Pure. An attempt's outcome carries its own entries (`homing.delivery.outcome`, in
`Effect.events`); the entries below are those of publishing, cancelling and a lease given up.
Both storage backends write exactly these, so the log reads the same on either.
"""

from __future__ import annotations

from homing.models import LogEvent, LogState, NewMessage

# The attempt that was running when a lease was released may or may not have reached the
# destination: an error entry shows in the timeline why the message is delivered again.
LEASE_RELEASED = LogEvent(LogState.ERROR, {"error": "attempt interrupted; lease released"})

# A pending message is canceled at once; an active one is only marked, and the outcome of its
# attempt decides (`AttemptOutcome.if_canceled`).
CANCEL_PENDING = (LogEvent(LogState.CANCEL_REQUESTED), LogEvent(LogState.CANCELED))
CANCEL_ACTIVE = (LogEvent(LogState.CANCEL_REQUESTED),)

# A queue deleted with messages that had not started.
QUEUE_DELETED = LogEvent(LogState.CANCELED)


def created(message: NewMessage, now_ms: int) -> LogEvent:
    """CREATED, with the time of the first attempt when it is later than now."""
    if message.not_before_ms > now_ms:
        return LogEvent(LogState.CREATED, {"nextDeliveryTime": message.not_before_ms})
    return LogEvent(LogState.CREATED)
