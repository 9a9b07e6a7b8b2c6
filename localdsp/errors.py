"""Errors as the kfp-tekton 1.5.x API server reports them.

The server's `UserError` carries two texts: a short user-facing message and an internal chain that
each layer extends with `wrap` ("Create pipeline failed: Already exist error: ..."). grpc-gateway
turns the gRPC code into the HTTP status and puts both texts in its error JSON; the two multipart
upload handlers instead write `{"error_message", "error_details"}` with a status they choose
themselves (400 or 500). Clients match on these texts, so they are kept word for word.
"""

from __future__ import annotations

from enum import IntEnum


class GrpcCode(IntEnum):
    """The gRPC codes the server uses, with grpc-gateway's HTTP status for each."""

    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    INTERNAL = 13

    @property
    def http_status(self) -> int:
        return {3: 400, 5: 404, 6: 409, 13: 500}[self.value]


class ApiError(Exception):
    """A server error: its gRPC code, the user-facing message and the internal chain."""

    code = GrpcCode.INTERNAL
    prefix = ""

    def __init__(self, message: str, *, internal: str | None = None):
        super().__init__(message)
        self.message = message
        self.internal = internal if internal is not None else self.prefix + message

    @property
    def status(self) -> int:
        return self.code.http_status

    def wrap(self, context: str) -> ApiError:
        """The same error with one more layer of context, as Go's `util.Wrap` adds it."""
        return type(self)(self.message, internal=f"{context}: {self.internal}")

    def gateway_body(self) -> dict:
        """grpc-gateway v1's error JSON: the user text is in details[0].error_message."""
        return self._gateway(
            {
                "@type": "type.googleapis.com/api.Error",
                "error_message": self.message,
                "error_details": self.internal,
            }
        )

    def rpc_status_body(self) -> dict:
        """The same JSON as the KFP 2.5 server writes it: its detail is a google.rpc.Status."""
        return self._gateway(
            {
                "@type": "type.googleapis.com/google.rpc.Status",
                "code": int(self.code),
                "message": self.message,
            }
        )

    def _gateway(self, detail: dict) -> dict:
        """grpc-gateway v1's error JSON around one detail: `error` and `message` carry the
        internal chain."""
        return {
            "error": self.internal,
            "code": int(self.code),
            "message": self.internal,
            "details": [detail],
        }

    def upload_body(self) -> dict:
        """The multipart handlers' JSON: the whole chain in both fields (Go adds a stack)."""
        return {"error_message": self.internal, "error_details": self.internal}


class InvalidInput(ApiError):
    code = GrpcCode.INVALID_ARGUMENT
    prefix = "Invalid input error: "


class NotFound(ApiError):
    code = GrpcCode.NOT_FOUND
    prefix = "ResourceNotFoundError: "

    @classmethod
    def of(cls, kind: str, identifier: str) -> NotFound:
        """The server's wording: "Pipeline 1234 not found."."""
        return cls(f"{kind} {identifier} not found.")


class AlreadyExists(ApiError):
    code = GrpcCode.ALREADY_EXISTS
    prefix = "Already exist error: "


class Internal(ApiError):
    code = GrpcCode.INTERNAL
    prefix = "Internal error: "

    @classmethod
    def server_error(cls, context: str, cause: ApiError | str) -> Internal:
        """`util.NewInternalServerError(cause, context)`: the user sees only "Internal Server
        Error"; the chain keeps the context and the cause's own chain."""
        chain = cause.internal if isinstance(cause, ApiError) else cause
        return cls("Internal Server Error", internal=f"InternalServerError: {context}: {chain}")
