"""The one family of errors this package raises, each carrying its HTTP status.

    EnsemblerError (500 internal_error)
    ├── RequestError (400 bad_request)
    │   ├── InvalidJSON (400 invalid_json)
    │   ├── InvalidUTF8 (400 invalid_utf8)
    │   └── InvalidRequest (400 invalid_request)
    ├── NotFound (404 not_found)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── RequestTimeout (408 request_timeout)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── UnsupportedEncoding (415 unsupported_encoding)  a Content-Encoding we do not decode
    ├── HeadersTooLarge (431 headers_too_large)
    ├── EnsembleFailed (500 ensemble_error)        the ensembler raised
    │   └── EnsembleRowFailed                        ... for one row of a batch (names it)
    ├── SerializationFailed (500 serialization_error)  its answer is not JSON-able
    ├── EnsemblerCrashed (500 ensembler_crashed)   its process died answering (--isolate)
    ├── UnsupportedTransferCoding (501 not_implemented)  a transfer coding but chunked
    ├── Overloaded (503 overloaded)
    ├── DeadlineExceeded (504 deadline_exceeded)
    ├── LoadError (model_load_error)               the model could not be loaded
    ├── BatchError (batch_error)                   a batch job cannot run or failed
    │   ├── InvalidJob (invalid_job)                 the job spec is wrong: every problem listed
    │   ├── InvalidResult (invalid_result)           an answer does not fit the result type
    │   └── UnreadableValue (unreadable_value)       a source value Python cannot hold
    ├── MissingExtra (missing_extra)               a feature's optional extra is not installed
    └── UsageError (usage_error)                   a command's arguments do not fit together

Every error reaches a client as one JSON shape, built by `error_body` alone:
``{"error": {"type": "<type>", "message": "<text>"}}``.  An ensembler may raise
any of these itself (say `InvalidRequest`) to choose the status of its answer.
"""

from __future__ import annotations

import traceback

import orjson


class EnsemblerError(Exception):
    """Root of every error this package raises."""

    status: int = 500
    type: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(EnsemblerError):
    status = 400
    type = "bad_request"

    @classmethod
    def malformed(cls, detail: str) -> RequestError:
        """What both front ends say of a request their HTTP parser refused."""
        return cls(f"malformed HTTP request: {detail}")


class InvalidJSON(RequestError):
    type = "invalid_json"


class InvalidUTF8(RequestError):
    type = "invalid_utf8"


class InvalidRequest(RequestError):
    type = "invalid_request"


class NotFound(EnsemblerError):
    status = 404
    type = "not_found"


class MethodNotAllowed(EnsemblerError):
    status = 405
    type = "method_not_allowed"


class RequestTimeout(EnsemblerError):
    status = 408
    type = "request_timeout"

    @classmethod
    def after(cls, seconds: float) -> RequestTimeout:
        return cls(f"the request did not arrive within {seconds} s")


class PayloadTooLarge(EnsemblerError):
    status = 413
    type = "payload_too_large"

    @classmethod
    def over(cls, limit: int, declared: int | None = None) -> PayloadTooLarge:
        """A body over `limit` bytes: as its Content-Length `declared`, or as it arrived."""
        if declared is not None:
            return cls(f"the body has {declared} bytes; the limit is {limit}")
        return cls(f"the body is over the limit of {limit} bytes")


class UnsupportedEncoding(EnsemblerError):
    status = 415
    type = "unsupported_encoding"


class HeadersTooLarge(EnsemblerError):
    status = 431
    type = "headers_too_large"

    @classmethod
    def over(cls, limit: int) -> HeadersTooLarge:
        return cls(f"the request head is over the limit of {limit} bytes")


class EnsembleFailed(EnsemblerError):
    type = "ensemble_error"

    @classmethod
    def wrap(cls, exc: BaseException) -> EnsembleFailed:
        error = cls(f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error


class EnsembleRowFailed(EnsembleFailed):
    """The ensembler raised for one row of a table; `row` is its index in the table given."""

    def __init__(self, row: int, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.row = row
        self.__cause__ = exc


class SerializationFailed(EnsemblerError):
    type = "serialization_error"


class EnsemblerCrashed(EnsemblerError):
    type = "ensembler_crashed"


class UnsupportedTransferCoding(EnsemblerError):
    status = 501
    type = "not_implemented"


class Overloaded(EnsemblerError):
    status = 503
    type = "overloaded"


class DeadlineExceeded(EnsemblerError):
    status = 504
    type = "deadline_exceeded"


class LoadError(EnsemblerError):
    type = "model_load_error"


class BatchError(EnsemblerError):
    type = "batch_error"


class InvalidJob(BatchError):
    """A job spec with problems, each as ``(path to the field, what is wrong)``."""

    type = "invalid_job"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        lines = [f"{path}: {what}" if path else what for path, what in problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"the job is invalid ({count}):\n  " + "\n  ".join(lines))
        self.problems = problems


class InvalidResult(BatchError):
    """An ensembler's answer that does not fit the job's result type (names the row)."""

    type = "invalid_result"


class UnreadableValue(BatchError):
    """A value of a source column that has no Python equivalent (a timestamp after year
    9999): the message names the column and the row; `row`, its index in the batch."""

    type = "unreadable_value"

    def __init__(self, message: str, row: int = 0) -> None:
        super().__init__(message)
        self.row = row


class MissingExtra(EnsemblerError):
    """What a feature needs is not installed: the message names the extra to install."""

    type = "missing_extra"

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra ({missing} is not installed): "
            f"pip install 'pyfunc-ensembler[{extra}]'"
        )
        self.extra = extra


class UsageError(EnsemblerError):
    """A command's arguments or settings do not fit together (the CLI exits with 2)."""

    type = "usage_error"


def error_body(error: EnsemblerError, *, debug: bool = False) -> bytes:
    """The JSON a client receives for `error`; a traceback only when debugging."""
    detail: dict[str, object] = {"type": error.type, "message": error.message}
    cause = error.__cause__
    if debug and cause is not None:
        detail["traceback"] = traceback.format_exception(cause)
    return orjson.dumps({"error": detail})
