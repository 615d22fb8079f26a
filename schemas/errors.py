"""One error root, with MLflow's error codes and HTTP statuses as class attributes.

The HTTP layers render every ``RunstreamError`` as ``{"error_code": ..., "message": ...}``
with ``http_status``; nothing else decides statuses.
"""

from __future__ import annotations


class RunstreamError(Exception):
    error_code = "INTERNAL_ERROR"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


class InvalidParameterValue(RunstreamError):
    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400


class MalformedRequest(RunstreamError):
    error_code = "MALFORMED_REQUEST"
    http_status = 400


class BadRequest(RunstreamError):
    error_code = "BAD_REQUEST"
    http_status = 400


class InvalidState(RunstreamError):
    error_code = "INVALID_STATE"
    http_status = 400


class EventDecodeError(MalformedRequest):
    """A body or stream entry that does not decode into valid events."""


class ResourceDoesNotExist(RunstreamError):
    error_code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404


class ResourceAlreadyExists(RunstreamError):
    error_code = "RESOURCE_ALREADY_EXISTS"
    http_status = 400


class FeatureNotImplemented(RunstreamError):
    """MLflow's NOT_IMPLEMENTED, e.g. proxied multipart upload on a store that has none."""

    error_code = "NOT_IMPLEMENTED"
    http_status = 501


class EndpointNotFound(RunstreamError):
    error_code = "ENDPOINT_NOT_FOUND"
    http_status = 404


class RequestTooLarge(RunstreamError):
    error_code = "RESOURCE_EXHAUSTED"
    http_status = 413


class Overloaded(RunstreamError):
    """The projector is behind on a shard; the client should retry after ``retry_after``."""

    error_code = "REQUEST_LIMIT_EXCEEDED"
    http_status = 429

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
