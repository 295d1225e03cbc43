"""The typed errors of a model request, each with a line fit to show a Discord user.

`user_message` is the bot's own sentence (chosen by the HTTP status or the API's error code)
followed by the provider's own message, folded onto one line, cut at 200 characters and with
every mention neutralised, so it can be shown as a one-line notice as it is.
"""

from __future__ import annotations

import unicodedata

PROVIDER_MESSAGE_MAX_CHARS = 200
ZERO_WIDTH_SPACE = "\u200b"

RATE_LIMITED = "The model provider is rate-limited right now; try again in a moment."
TOO_LONG = (
    "The conversation is too long for this model; use /reset or pick a model with a bigger context."
)
PROVIDER_FAILED = "The model provider had an error. Please try again."


def one_line_notice(text: str, limit: int = PROVIDER_MESSAGE_MAX_CHARS) -> str:
    """Text from outside made safe for a notice: one line, at most `limit` characters, no
    control characters, and an `@` that can never start a mention (`@everyone`, `<@id>`)."""
    printable = "".join(ch for ch in text if unicodedata.category(ch) != "Cc" or ch.isspace())
    folded = " ".join(printable.split())
    safe = folded.replace("@", "@" + ZERO_WIDTH_SPACE)
    if len(safe) <= limit:
        return safe
    return safe[: limit - 1].rstrip() + "…"


def with_provider_message(sentence: str, provider_message: str) -> str:
    """The bot's sentence followed by the provider's own message (made safe), if there is one."""
    message = one_line_notice(provider_message)
    return f"{sentence} ({message})" if message else sentence


class LLMError(Exception):
    """Anything that stopped a model answer; `user_message` is one line for the user."""

    default_user_message = "The model could not answer just now. Please try again."

    def __init__(
        self, detail: str = "", *, user_message: str | None = None, provider_message: str = ""
    ) -> None:
        super().__init__(detail or self.default_user_message)
        self.detail = detail
        self.provider_message = provider_message
        self._user_message = user_message

    @property
    def sentence(self) -> str:
        """The bot's own sentence for this error, without the provider's message."""
        return self._user_message or self.default_user_message

    @property
    def user_message(self) -> str:
        """One line for the person who asked: the sentence, then the provider's message."""
        return with_provider_message(self.sentence, self.provider_message)

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
        provider_message: str = "",
    ) -> None:
        super().__init__(
            detail or f"HTTP {status}",
            user_message=user_message,
            provider_message=provider_message,
        )
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def sentence(self) -> str:
        """A known error code's sentence beats the status's (a 400 can mean "too long")."""
        if self._user_message:
            return self._user_message
        return _CODE_SENTENCES.get(_code_key(self.code), self.default_user_message)


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
        provider_message: str = "",
    ) -> None:
        super().__init__(
            status, code, detail, retry_after=retry_after, provider_message=provider_message
        )
        self.reason = reason

    @property
    def sentence(self) -> str:
        """Moderation messages say why, when the API told us."""
        if self._user_message:
            return self._user_message
        if self.reason:
            return moderation_sentence(self.reason)
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

    default_user_message = TOO_LONG


class RateLimitError(LLMStatusError):
    """429: too many requests."""

    default_user_message = RATE_LIMITED

    @property
    def retryable(self) -> bool:
        """Worth another attempt."""
        return True


class ServerError(LLMStatusError):
    """5xx: the service or the model provider failed."""

    default_user_message = PROVIDER_FAILED

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
    def sentence(self) -> str:
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
        self,
        detail: str = "",
        *,
        code: str | int | None = None,
        user_message: str | None = None,
        provider_message: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(detail, user_message=user_message, provider_message=provider_message)
        self.code = code
        self.reason = reason

    @property
    def sentence(self) -> str:
        """Moderation with its reason, else the sentence of the error's code, else the default."""
        if self._user_message:
            return self._user_message
        if self.reason:
            return moderation_sentence(self.reason)
        return sentence_for_code(self.code) or self.default_user_message


class StorageError(LLMError):
    """The conversation store (Redis) failed, so the turn could not run or be kept."""

    default_user_message = "I can't reach my conversation store right now; please try again soon."


_STATUS_KINDS: dict[int, type[LLMStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: ModerationError,
    404: ModelNotFoundError,
    408: RequestTimeoutError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}


def status_kind(status: int) -> type[LLMStatusError]:
    """The error class of an HTTP error status."""
    return _STATUS_KINDS.get(status, ServerError if status >= 500 else LLMStatusError)


def _code_key(code: str | int | None) -> str:
    """A string error code as a lookup key (numbers and None give "")."""
    return code.strip().lower() if isinstance(code, str) else ""


_IMAGE_CODES = (
    "invalid_image",
    "invalid_image_format",
    "invalid_base64_image",
    "invalid_image_url",
    "invalid_image_mode",
    "image_too_large",
    "image_too_small",
    "image_parse_error",
    "image_file_too_large",
    "image_file_not_found",
    "unsupported_image_media_type",
    "empty_image_file",
    "failed_to_download_image",
)
_CODE_SENTENCES: dict[str, str] = {
    "rate_limit_exceeded": RATE_LIMITED,
    "context_length_exceeded": TOO_LONG,
    "server_error": PROVIDER_FAILED,
    "invalid_prompt": BadRequestError.default_user_message,
    "model_not_found": ModelNotFoundError.default_user_message,
    "moderation": ModerationError.default_user_message,
    "content_filter": ModerationError.default_user_message,
    "content_policy_violation": ModerationError.default_user_message,
    "image_content_policy_violation": ModerationError.default_user_message,
    "insufficient_quota": PaymentRequiredError.default_user_message,
    "invalid_api_key": AuthenticationError.default_user_message,
    "vector_store_timeout": RequestTimeoutError.default_user_message,
    **dict.fromkeys(_IMAGE_CODES, "The model could not use an image in the conversation."),
}
"""Sentences for the `code` strings of OpenRouter's and OpenAI's Responses API errors."""


def sentence_for_code(code: str | int | None) -> str | None:
    """The sentence for an API error code: a known string, or a number that is an HTTP status."""
    if isinstance(code, int) and not isinstance(code, bool):
        return status_kind(code).default_user_message if 400 <= code <= 599 else None
    return _CODE_SENTENCES.get(_code_key(code))


def moderation_sentence(reason: str) -> str:
    """Why moderation blocked the request, in one safe sentence."""
    return f"The request was blocked by moderation: {one_line_notice(reason, 100)}."


def status_error(
    status: int,
    code: str | int | None,
    message: str,
    *,
    retry_after: float | None = None,
    reason: str = "",
    provider_message: str = "",
) -> LLMStatusError:
    """Build the error class that fits an HTTP status, keeping the API's own message as detail
    (and as `provider_message`, shown after the sentence, when the API sent one)."""
    if status == 403:
        return ModerationError(
            status,
            code,
            message,
            reason=reason,
            retry_after=retry_after,
            provider_message=provider_message,
        )
    kind = status_kind(status)
    return kind(status, code, message, retry_after=retry_after, provider_message=provider_message)
