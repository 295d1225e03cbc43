"""The typed errors of a model request, each with a sentence fit to show a Discord user."""

from __future__ import annotations


class LLMError(Exception):
    """Anything that stopped a model answer; `user_message` is one sentence for the user."""

    default_user_message = "The model could not answer just now. Please try again."

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.default_user_message)
        self.detail = detail
        self._user_message = user_message

    @property
    def user_message(self) -> str:
        """One sentence for the person who asked; never contains secrets."""
        return self._user_message or self.default_user_message

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed if sent again later."""
        return False


class LLMStatusError(LLMError):
    """The API answered with an HTTP error status before any stream began."""

    default_user_message = "The model service refused the request."

    def __init__(
        self,
        status: int,
        code: str | int | None = None,
        detail: str = "",
        *,
        user_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail or f"HTTP {status}", user_message=user_message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class BadRequestError(LLMStatusError):
    """400: the request was malformed or used a parameter the model does not support."""

    default_user_message = "The model service rejected the request as invalid."


class AuthenticationError(LLMStatusError):
    """401: the API key is missing, wrong or revoked."""

    default_user_message = "The bot's OpenRouter API key was refused; the bot owner must fix it."


class PaymentRequiredError(LLMStatusError):
    """402: the account is out of credits."""

    default_user_message = "The bot's OpenRouter account is out of credits."


class ModerationError(LLMStatusError):
    """403: a moderation filter or guardrail blocked the request."""

    default_user_message = "The request was blocked by the model provider's moderation."

    def __init__(
        self,
        status: int = 403,
        code: str | int | None = None,
        detail: str = "",
        *,
        reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, detail, retry_after=retry_after)
        self.reason = reason

    @property
    def user_message(self) -> str:
        """Moderation messages say why, when the API told us."""
        if self._user_message:
            return self._user_message
        if self.reason:
            return f"The request was blocked by moderation: {self.reason}."
        return self.default_user_message


class ModelNotFoundError(LLMStatusError):
    """404: the model name is unknown or no longer offered."""

    default_user_message = "That model does not exist on OpenRouter; pick another with /model."


class RequestTimeoutError(LLMStatusError):
    """408: the service gave up waiting."""

    default_user_message = "The model service timed out. Please try again."

    @property
    def retryable(self) -> bool:
        """Worth another attempt."""
        return True


class PayloadTooLargeError(LLMStatusError):
    """413: the history plus the question is too big for the model."""

    default_user_message = "The conversation is too long for this model; use /reset to start over."


class RateLimitError(LLMStatusError):
    """429: too many requests."""

    default_user_message = "The model is rate limited right now. Please try again in a moment."

    @property
    def retryable(self) -> bool:
        """Worth another attempt."""
        return True


class ServerError(LLMStatusError):
    """5xx: the service or the model provider failed."""

    default_user_message = "The model provider had an error. Please try again."

    @property
    def retryable(self) -> bool:
        """Worth another attempt."""
        return True


class LLMConnectionError(LLMError):
    """The service could not be reached at all."""

    default_user_message = "Could not reach the model service. Please try again."

    @property
    def retryable(self) -> bool:
        """Worth another attempt."""
        return True


class LLMTimeoutError(LLMConnectionError):
    """Connecting, the first byte, or the next byte of the stream took too long."""

    default_user_message = "The model took too long to answer."

    def __init__(self, phase: str, seconds: float) -> None:
        super().__init__(f"{phase} timeout after {seconds:g} s")
        self.phase = phase
        self.seconds = seconds

    @property
    def user_message(self) -> str:
        """A stall mid-answer reads differently from a slow start."""
        if self.phase == "idle":
            return "The model stopped sending mid-answer."
        return self.default_user_message

    @property
    def retryable(self) -> bool:
        """Only before the stream began: text already shown must not be asked for twice."""
        return self.phase != "idle"


class LLMStreamError(LLMError):
    """The stream began with HTTP 200 but carried an error, broke off, or was not SSE."""

    default_user_message = "The model's answer broke off with an error."

    def __init__(
        self, detail: str = "", *, code: str | int | None = None, user_message: str | None = None
    ) -> None:
        super().__init__(detail, user_message=user_message)
        self.code = code


class StorageError(LLMError):
    """The conversation store (Redis) failed, so the turn could not run or be kept."""

    default_user_message = "I can't reach my conversation store right now; please try again soon."


def status_error(
    status: int,
    code: str | int | None,
    message: str,
    *,
    retry_after: float | None = None,
    reason: str = "",
) -> LLMStatusError:
    """Build the error class that fits an HTTP status, keeping the API's own message as detail."""
    kinds: dict[int, type[LLMStatusError]] = {
        400: BadRequestError,
        401: AuthenticationError,
        402: PaymentRequiredError,
        404: ModelNotFoundError,
        408: RequestTimeoutError,
        413: PayloadTooLargeError,
        429: RateLimitError,
    }
    if status == 403:
        return ModerationError(status, code, message, reason=reason, retry_after=retry_after)
    kind = kinds.get(status, ServerError if status >= 500 else LLMStatusError)
    return kind(status, code, message, retry_after=retry_after)
