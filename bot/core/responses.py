"""The OpenRouter Responses API client: builds stateless requests and streams typed events.

`ResponsesClient.stream()` always ends with exactly one final event (Completed, Incomplete or
Failed) and never raises an LLMError: every error before or during the stream becomes
`Failed(error)`. Requests are retried only while no 2xx response has begun.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

from bot.core.errors import (
    LLMConnectionError,
    LLMError,
    LLMStatusError,
    LLMStreamError,
    LLMTimeoutError,
    status_error,
)
from bot.core.events import Failed, HistoryItem, StreamEvent
from bot.core.images import ImageRef, image_parts
from bot.core.labels import item_label, labelled_text
from bot.core.options import AnswerOptions
from bot.core.response_stream import (
    ResponseStreamParser,
    error_code,
    error_from_payload,
    moderation_reason,
)
from bot.core.sse import SSEDecoder

log = logging.getLogger(__name__)

ERROR_BODY_MAX_CHARS = 300
NOT_SSE_BODY_MAX_BYTES = 64 * 1024
ERROR_BODY_MAX_BYTES = 64 * 1024
_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)


def hashed_user(user_key: str) -> str:
    """The `user` field: a sha256 hex digest, so no raw platform id leaves the bot."""
    return hashlib.sha256(user_key.encode()).hexdigest()


def prompt_cache_key(conversation_key: str) -> str:
    """A short stable key per conversation, for providers' prompt caching."""
    return "conv_" + hashlib.sha256(conversation_key.encode()).hexdigest()[:32]


def fallback_item_id(item: HistoryItem) -> str:
    """A stable id for an answer stored without one (older data): derived from its text, so
    every request sends the same bytes and a prompt cache can serve them."""
    return "msg_" + hashlib.sha256(item.text.encode("utf-8", "replace")).hexdigest()[:24]


def history_item_input(
    item: HistoryItem, images: Mapping[ImageRef, str | None] | None = None
) -> dict[str, Any]:
    """One history item as a Responses API input message; the same item gives the same dict.

    A user item's images follow its text: an `input_image` for each ref `images` maps to a
    URL, else a text placeholder (see bot.core.images.image_parts).
    """
    if item.role == "user":
        label = item_label(item)
        content: list[dict[str, str]] = [{"type": "input_text", "text": labelled_text(item)}]
        if item.images:
            if not item.text:
                content = [{"type": "input_text", "text": f"[{label}]:"}] if label else []
            content += image_parts(item.images, images or {})
        return {
            "type": "message",
            "role": "user",
            "content": content,
        }
    return {
        "type": "message",
        "role": "assistant",
        "id": item.item_id or fallback_item_id(item),
        "status": item.status,
        "content": [{"type": "output_text", "text": item.text, "annotations": []}],
    }


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or HTTP-date form)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def http_error(status: int, body: bytes, retry_after: float | None) -> LLMStatusError:
    """The typed error for an HTTP error status and its body (JSON or not)."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return status_error(
            status, None, text.strip()[:ERROR_BODY_MAX_CHARS], retry_after=retry_after
        )
    message = error.get("message")
    message = message if isinstance(message, str) else ""
    return status_error(
        status,
        error_code(error.get("code")),
        message,
        retry_after=retry_after,
        reason=moderation_reason(parsed),
        provider_message=message,
    )


def not_event_stream_error(content_type: str, body: bytes) -> LLMError:
    """The error for a 2xx answer that is not SSE; a JSON error object inside is kept."""
    try:
        parsed = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(parsed, dict) and isinstance(error, dict):
        code = error_code(error.get("code"))
        if isinstance(code, int) and 400 <= code <= 599:
            return http_error(code, body, None)
        return error_from_payload({"error": error, "metadata": parsed.get("metadata")})
    return LLMStreamError(f"the answer was not an event stream ({content_type or 'no type'})")


class EventSource(Protocol):
    """Streams the typed events of one request: the Responses client, or a source wrapped around
    it (a shorter retry, the tool loop)."""

    def stream(self, request: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        """Send the request and yield its events, ending with exactly one final event."""
        ...


class ResponsesClient:
    """Streams answers from `POST {base_url}/responses` over one shared aiohttp session.

    `first_byte_timeout` bounds the whole wait for the first body byte (an SSE comment counts):
    every attempt and every retry wait included. After that byte, `idle_timeout` bounds each
    wait for the next one.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        connect_timeout: float = 10,
        first_byte_timeout: float = 30,
        idle_timeout: float = 60,
        max_retries: int = 2,
        max_retry_wait: float = 10.0,
        app_title: str = "discord-llm-bot",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/responses"
        self._api_key = api_key
        self._connect_timeout = connect_timeout
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait
        self._app_title = app_title
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"ResponsesClient(url={self._url!r})"

    def build_request(
        self,
        history: Sequence[HistoryItem],
        *,
        instructions: str,
        model: str,
        max_output_tokens: int,
        user_key: str,
        conversation_key: str,
        images: Mapping[ImageRef, str | None] | None = None,
        options: AnswerOptions | None = None,
    ) -> dict[str, Any]:
        """The JSON body of a stateless streamed request carrying the whole history; the answer
        options' fields (fallbacks, reasoning, web search) come last, only when set.

        `images` maps image refs to the data URLs to send (see bot.core.images.resolve_images).
        """
        return {
            "model": model,
            "instructions": instructions,
            "input": [history_item_input(item, images) for item in history],
            "max_output_tokens": max_output_tokens,
            "user": hashed_user(user_key),
            "prompt_cache_key": prompt_cache_key(conversation_key),
            "stream": True,
            **(options or AnswerOptions()).request_fields(model),
        }

    async def stream(self, request: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        """Send the request and yield typed events, ending with exactly one final event."""
        deadline = asyncio.get_running_loop().time() + self._first_byte_timeout
        opened = await self._open_with_retries(request, deadline)
        if isinstance(opened, LLMError):
            log.info("model request failed before the stream: %s", opened)
            yield Failed(opened)
            return
        response = opened
        parser = ResponseStreamParser()
        decoder = SSEDecoder()
        try:
            if not _is_event_stream(response):
                yield Failed(await self._read_not_sse(response, deadline))
                return
            async with aclosing(self._events(response, deadline, parser, decoder)) as events:
                async for event in events:
                    yield event
        finally:
            _free(response)

    async def _events(
        self,
        response: aiohttp.ClientResponse,
        first_byte_deadline: float,
        parser: ResponseStreamParser,
        decoder: SSEDecoder,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Read body chunks under the first-byte and idle timeouts and map their events."""
        deadline: float | None = first_byte_deadline
        while True:
            try:
                chunk = await self._read_chunk(response, deadline)
            except LLMError as error:
                log.info("model stream broke off: %s", error)
                yield parser.fail(error)
                return
            deadline = None
            for sse in decoder.feed(chunk) if chunk else decoder.close():
                for event in parser.on_event(sse):
                    yield event
                if parser.finished:
                    return
            if not chunk:
                yield parser.finish()
                return

    async def _read_chunk(self, response: aiohttp.ClientResponse, deadline: float | None) -> bytes:
        """The next body bytes (b"" at the end); a deadline means the first byte is awaited."""
        phase, seconds = ("first_byte", self._first_byte_timeout)
        if deadline is None:
            phase, seconds = ("idle", self._idle_timeout)
            deadline = asyncio.get_running_loop().time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                return await response.content.readany()
        except TimeoutError:
            raise LLMTimeoutError(phase, seconds) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise LLMStreamError(f"the connection broke mid-answer: {exc}") from None

    async def _read_not_sse(self, response: aiohttp.ClientResponse, deadline: float) -> LLMError:
        """Read a 2xx body that is not SSE and turn it into an error."""
        content_type = response.headers.get("Content-Type", "")
        try:
            async with asyncio.timeout_at(deadline):
                body = await _read_capped(response, NOT_SSE_BODY_MAX_BYTES)
        except TimeoutError:
            return LLMTimeoutError("first_byte", self._first_byte_timeout)
        except (aiohttp.ClientError, OSError) as exc:
            return LLMStreamError(f"the connection broke: {exc}")
        return not_event_stream_error(content_type, body)

    async def _open_with_retries(
        self, request: dict[str, Any], deadline: float
    ) -> aiohttp.ClientResponse | LLMError:
        """POST until a 2xx response begins, retrying retryable errors within the budgets: the
        retry waits' own, and the first-byte deadline that every attempt and wait shares."""
        waited = 0.0
        attempt = 0
        while True:
            opened = await self._open(request, deadline)
            if not isinstance(opened, LLMError):
                return opened
            wait = self._retry_wait(opened, attempt, waited)
            if wait is None or asyncio.get_running_loop().time() + wait >= deadline:
                return opened
            log.warning("model request failed (%s); retry %d in %.2f s", opened, attempt + 1, wait)
            await self._sleep(wait)
            waited += wait
            attempt += 1

    def _retry_wait(self, error: LLMError, attempt: int, waited: float) -> float | None:
        """Seconds to wait before retrying, or None when the error must be returned."""
        if not error.retryable or attempt >= self._max_retries:
            return None
        retry_after = error.retry_after if isinstance(error, LLMStatusError) else None
        if retry_after is None:
            backoff = _BACKOFF_SECONDS[min(attempt, len(_BACKOFF_SECONDS) - 1)]
            wait = backoff * (1 + random.uniform(0, 0.2))
        else:
            wait = retry_after
        if waited + wait > self._max_retry_wait:
            return None
        return wait

    async def _open(
        self, request: dict[str, Any], deadline: float
    ) -> aiohttp.ClientResponse | LLMError:
        """One attempt: the response once its 2xx headers arrived, or the error it met."""
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._session.post(
                    self._url, json=request, headers=self._headers(), timeout=self._timeout()
                )
                if response.status < 300:
                    return response
                try:
                    body = await _read_capped(response, ERROR_BODY_MAX_BYTES)
                finally:
                    _free(response)
        except aiohttp.ConnectionTimeoutError:
            return LLMTimeoutError("connect", self._connect_timeout)
        except TimeoutError:
            return LLMTimeoutError("first_byte", self._first_byte_timeout)
        except (aiohttp.ClientError, OSError) as exc:
            return LLMConnectionError(f"could not reach the model service: {exc}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return http_error(response.status, body, retry_after)

    def _headers(self) -> dict[str, str]:
        """Request headers; the key appears here and nowhere else."""
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "text/event-stream",
            "X-Title": self._app_title,
        }

    def _timeout(self) -> aiohttp.ClientTimeout:
        """aiohttp's own timeouts cover connecting only; reads are timed by the client."""
        return aiohttp.ClientTimeout(
            total=None, connect=self._connect_timeout, sock_connect=self._connect_timeout
        )


def _free(response: aiohttp.ClientResponse) -> None:
    """Give the connection back when the body was read to its end, else close it."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


def _is_event_stream(response: aiohttp.ClientResponse) -> bool:
    """Whether the response declares an SSE body."""
    return response.content_type.lower() == "text/event-stream"


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit` bytes of the body."""
    body = b""
    while len(body) < limit:
        chunk = await response.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return body
