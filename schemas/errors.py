"""One error root, with MLflow's error codes and HTTP statuses as class attributes.

The HTTP layers render every ``RunstreamError`` as ``{"error_code": ..., "message": ...}``
with ``http_status``; nothing else decides statuses.
"""

from __future__ import annotations


class RunstreamError(Exception):
    error_code = "INTERNAL_ERROR"
    http_status = 500
    sqlstate: str | None = "XXM00"
    """MLflow 3 classifies errors beside the code; None where MLflow sends no classification."""
    error_class: str | None = "CLIENT_INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        body = {"error_code": self.error_code, "message": self.message}
        if self.sqlstate is not None:
            body["sqlstate"] = self.sqlstate
        if self.error_class is not None:
            body["error_class"] = self.error_class
        return body


class InvalidParameterValue(RunstreamError):
    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400
    sqlstate = "KAM00"
    error_class = "INVALID_PARAMETER_VALUE"


class ParamValueConflict(InvalidParameterValue):
    """A param logged again with another value; MLflow words it per route (both forms here)."""

    def __init__(
        self, run_id: str, conflicts: list[tuple[str, str, str]], *, batch: bool = False
    ) -> None:
        self.run_id = run_id
        self.conflicts = conflicts
        if not batch and len(conflicts) == 1:
            key, old, new = conflicts[0]
            message = (
                f"Changing param values is not allowed. Param with key='{key}' was already"
                f" logged with value='{old}' for run ID='{run_id}'. Attempted logging new value"
                f" '{new}'."
            )
        else:
            message = self.batch_message()
        super().__init__(message)

    def batch_message(self) -> str:
        """``log-batch``'s wording, whatever the number of params."""
        non_matching = [{"key": k, "old_value": o, "new_value": n} for k, o, n in self.conflicts]
        return (
            "Changing param values is not allowed. Params were already"
            f" logged='{non_matching}' for run ID='{self.run_id}'."
        )


class MalformedRequest(RunstreamError):
    error_code = "MALFORMED_REQUEST"
    http_status = 400
    sqlstate = None
    error_class = None


class BadRequest(RunstreamError):
    error_code = "BAD_REQUEST"
    http_status = 400
    sqlstate = "KAM00"
    error_class = "INVALID_PARAMETER_VALUE"


class InvalidState(RunstreamError):
    error_code = "INVALID_STATE"
    http_status = 400


class EventDecodeError(MalformedRequest):
    """A body or stream entry that does not decode into valid events."""


class ResourceDoesNotExist(RunstreamError):
    error_code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404
    sqlstate = "KAM00"
    error_class = "RESOURCE_NOT_FOUND"


class ResourceAlreadyExists(RunstreamError):
    error_code = "RESOURCE_ALREADY_EXISTS"
    http_status = 400
    sqlstate = "KAM00"
    error_class = "RESOURCE_ALREADY_EXISTS"


class FeatureNotImplemented(RunstreamError):
    """MLflow's NOT_IMPLEMENTED, e.g. proxied multipart upload on a store that has none."""

    error_code = "NOT_IMPLEMENTED"
    http_status = 501
    sqlstate = None
    error_class = None


class EndpointNotFound(RunstreamError):
    error_code = "ENDPOINT_NOT_FOUND"
    http_status = 404
    sqlstate = "KAM00"
    error_class = "RESOURCE_NOT_FOUND"


class RequestTooLarge(RunstreamError):
    error_code = "RESOURCE_EXHAUSTED"
    http_status = 413
    sqlstate = None
    error_class = None


class RequestTimedOut(RunstreamError):
    """A client that stopped sending its request body (HTTP's 408; MLflow's code for a
    deadline passed)."""

    error_code = "DEADLINE_EXCEEDED"
    http_status = 408
    sqlstate = None
    error_class = None


class Overloaded(RunstreamError):
    """The projector is behind on a shard; the client should retry after ``retry_after``."""

    error_code = "REQUEST_LIMIT_EXCEEDED"
    http_status = 429
    sqlstate = None
    error_class = None

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TemporarilyUnavailable(RunstreamError):
    error_code = "TEMPORARILY_UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(RunstreamError):
    """A setting (flag or RUNSTREAM_* variable) with a bad value; names the setting."""


class Unauthenticated(RunstreamError):
    """No credentials, or credentials that do not verify (answered with WWW-Authenticate)."""

    error_code = "UNAUTHENTICATED"
    http_status = 401
    sqlstate = None
    error_class = None


class PermissionDenied(RunstreamError):
    """Authenticated, but the caller's permission does not allow the request."""

    error_code = "PERMISSION_DENIED"
    http_status = 403
    sqlstate = "KAM00"
    error_class = "PERMISSION_DENIED"
