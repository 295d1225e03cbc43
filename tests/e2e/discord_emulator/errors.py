"""Discord's REST error answers, as the emulator raises and serialises them."""

from __future__ import annotations

from typing import Any


class DiscordError(Exception):
    """A REST error with Discord's status, numeric code, message and optional field errors."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        """The JSON body Discord sends for this error."""
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def invalid_form_body(field_path: list[str | int], error_code: str, message: str) -> DiscordError:
    """400 code 50035 with the nested `errors` object Discord builds for one bad field."""
    leaf: dict[str, Any] = {"_errors": [{"code": error_code, "message": message}]}
    for key in reversed(field_path):
        leaf = {str(key): leaf}
    return DiscordError(400, 50035, "Invalid Form Body", leaf)


def unknown_channel() -> DiscordError:
    """404 code 10003."""
    return DiscordError(404, 10003, "Unknown Channel")


def unknown_message() -> DiscordError:
    """404 code 10008."""
    return DiscordError(404, 10008, "Unknown Message")


def unknown_interaction() -> DiscordError:
    """404 code 10062: the interaction was never seen or answered after 3 s."""
    return DiscordError(404, 10062, "Unknown interaction")


def already_acknowledged() -> DiscordError:
    """400 code 40060."""
    return DiscordError(400, 40060, "Interaction has already been acknowledged.")


def unknown_webhook() -> DiscordError:
    """404 code 10015."""
    return DiscordError(404, 10015, "Unknown Webhook")


def invalid_webhook_token() -> DiscordError:
    """401 code 50027: the interaction token's 15 minutes are over."""
    return DiscordError(401, 50027, "Invalid Webhook Token")


def empty_message() -> DiscordError:
    """400 code 50006."""
    return DiscordError(400, 50006, "Cannot send an empty message")


def unauthorized() -> DiscordError:
    """401 code 0, what Discord answers to a missing or wrong bot token."""
    return DiscordError(401, 0, "401: Unauthorized")


def not_found_route() -> DiscordError:
    """404 code 0 for a route Discord does not have (or the emulator does not know)."""
    return DiscordError(404, 0, "404: Not Found")


def missing_permissions() -> DiscordError:
    """403 code 50013: the bot lacks a permission for this channel (e.g. Send Messages)."""
    return DiscordError(403, 50013, "Missing Permissions")


def thread_archived() -> DiscordError:
    """400 code 50083: the thread is archived (and locked, so the bot cannot reopen it)."""
    return DiscordError(400, 50083, "Thread is archived")
