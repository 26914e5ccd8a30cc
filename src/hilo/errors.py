"""Domain errors: each carries its HTTP status, a stable code and a user-facing message."""

from __future__ import annotations

from typing import Any


class HiloError(Exception):
    """Base of every error a user may see; rendered by one handler as ``{"error": ...}``."""

    status_code = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, code: str | None = None, **params: Any):
        self.message = message or self.message
        if code:
            self.code = code
        self.params = params
        super().__init__(self.message)


class NotFound(HiloError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Unauthorized(HiloError):
    status_code = 401
    code = "unauthorized"
    message = "Authentication required."


class InvalidSignature(HiloError):
    status_code = 401
    code = "invalid_signature"
    message = "The signature is missing or does not match."


class StaleSignature(HiloError):
    status_code = 401
    code = "stale_timestamp"
    message = "The timestamp is too far from the current time."


class Forbidden(HiloError):
    status_code = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class PayloadTooLarge(HiloError):
    status_code = 413
    code = "payload_too_large"
    message = "The request body is too large."


class InvalidPayload(HiloError):
    status_code = 422
    code = "invalid_payload"
    message = "The request body is not valid."


class Conflict(HiloError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class TooManyRequests(HiloError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; try again in a moment."
