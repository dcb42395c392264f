"""API keys for the HTTP API and the chat: loaded once, compared in constant time, never logged."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field

from rag.settings import ApiScope, Settings, parse_api_keys
from rag.types import RagError

LOOPBACK_NAMES = ("localhost",)


class InsecureBind(RagError):
    """A non-loopback address without keys: anyone on the network could upload or delete documents."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"refusing to listen on {host} without API keys: set RAG_API_KEYS or RAG_API_KEYS_FILE "
            "(on 127.0.0.1 keys are optional)"
        )


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys and their scopes; empty means the server is open (loopback only)."""

    # repr=False: a dataclass repr would print every key into any log line that shows this object.
    scopes: dict[str, ApiScope] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, settings: Settings) -> ApiKeys:
        """RAG_API_KEYS and the pairs in RAG_API_KEYS_FILE, together."""
        scopes: dict[str, ApiScope] = {}
        if settings.api_keys is not None:
            scopes |= parse_api_keys(settings.api_keys.get_secret_value())
        if settings.api_keys_file is not None:
            try:
                text = settings.api_keys_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise RagError(f"cannot read RAG_API_KEYS_FILE {settings.api_keys_file}: {reason}") from exc
            try:
                scopes |= parse_api_keys(text)
            except ValueError as exc:
                raise RagError(f"RAG_API_KEYS_FILE {settings.api_keys_file}: {exc}") from exc
        return cls(scopes)

    @property
    def required(self) -> bool:
        """True when requests must carry a key."""
        return bool(self.scopes)

    def scope_of(self, presented: str) -> ApiScope | None:
        """The scope of a presented key, or None; every key is compared, in constant time, so timing tells nothing."""
        found: ApiScope | None = None
        given = presented.encode()
        for key, scope in self.scopes.items():
            if hmac.compare_digest(given, key.encode()):
                found = scope
        return found

    def allows(self, scope: ApiScope | None, needed: ApiScope) -> bool:
        """True when a key of this scope may do what needs the other: write covers read."""
        return scope == "write" or (scope == "read" and needed == "read")

    def chat_login(self, username: str, password: str) -> bool:
        """Gradio's login for the chat: any user name, a write key as the password (the chat uploads and deletes)."""
        return self.scope_of(password) == "write"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; a name or any other address may be reachable from the network."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: ApiKeys) -> None:
    """Refuse a non-loopback address when no keys are configured."""
    if not keys.required and not is_loopback(host):
        raise InsecureBind(host)
