"""Every error Homing raises on purpose, in one tree.

    HomingError                    500  something went wrong that is not the caller's fault
    ├── InvalidRequest             400  the request is malformed or names an invalid value
    │   └── ForbiddenDestination   400  the destination is not allowed by the destination policy
    ├── Unauthorized               401  missing or unknown token
    ├── ReadOnlyToken              403  a read-only token tried to change something
    ├── NotFound                   404  the named resource does not exist (for this account)
    ├── QuotaExceeded              412  a configured maximum would be exceeded
    ├── PreconditionFailed         412  a workflow message Homing cannot take (fails the run)
    ├── PayloadTooLarge            413  the body is larger than the configured maximum
    ├── NotImplementedYet          501  an endpoint of a feature Homing does not have yet
    └── StorageUnavailable         503  the store cannot be reached right now
        └── StorageFull            507  the disk holding the store is full

The API maps this tree to QStash-shaped JSON errors (`{"error": "..."}`) in exactly one place,
`homing.api.errors`. A class's docstring is its default message.
"""

from __future__ import annotations


class HomingError(Exception):
    """Internal error."""

    status_code = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidRequest(HomingError):
    """Invalid request."""

    status_code = 400


class ForbiddenDestination(InvalidRequest):
    """Destination is not allowed."""


class Unauthorized(HomingError):
    """Unauthorized: a valid token is required (Authorization: Bearer <token>)."""

    status_code = 401


class ReadOnlyToken(HomingError):
    """This token is read-only and cannot change anything."""

    status_code = 403


class NotFound(HomingError):
    """Not found."""

    status_code = 404


class QuotaExceeded(HomingError):
    """Quota exceeded."""

    status_code = 412


class PreconditionFailed(HomingError):
    """The request cannot be taken."""

    # A 400 on a publish inside a workflow run makes the JS SDK stop the run quietly, as if it
    # had ended; a 412 makes it fail the run visibly, with this message.
    status_code = 412


class NotImplementedYet(HomingError):
    """Not implemented by Homing yet."""

    status_code = 501


class PayloadTooLarge(HomingError):
    """Request body is too large."""

    status_code = 413


class StorageUnavailable(HomingError):
    """The message store is unavailable; try again."""

    status_code = 503


class StorageFull(StorageUnavailable):
    """The disk holding the message store is full: nothing new can be stored until space is
    freed; try again later."""

    status_code = 507
