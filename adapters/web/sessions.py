"""Who is at the other end of a browser: a session per browser (a cookie), with the display name the
person chose, and the token every POST must carry (CSRF).

Sessions live in this process only: a restart asks for names again. The cookie holds a random key,
never the user id or the operator token; SameSite=Strict and the CSRF header both keep other sites'
pages from posting as the person.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

SESSION_COOKIE = "botfleet_session"
ADMIN_COOKIE = "botfleet_operator"
CSRF_HEADER = "X-Botfleet-CSRF"
NAME_MAX = 32
# Letters, digits, spaces and a little punctuation: a name is shown in every message header.
_NAME = re.compile(r"[^\w .'\-]", re.UNICODE)
MAX_SESSIONS = 10_000


@dataclass
class Session:
    key: str
    user_id: str
    csrf: str
    name: str = ""
    # Signed in on the operator page: an admin in the rooms too (/mute, /unmute).
    operator: bool = False


def clean_name(raw: str) -> str:
    return " ".join(_NAME.sub("", raw).split())[:NAME_MAX].strip()


def same(a: str, b: str) -> bool:
    """Constant-time comparison (tokens, CSRF values)."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class Sessions:
    def __init__(self) -> None:
        self._by_key: dict[str, Session] = {}
        self.by_user: dict[str, Session] = {}

    def get(self, key: str | None) -> Session | None:
        return self._by_key.get(key) if key else None

    def new(self) -> Session:
        if len(self._by_key) >= MAX_SESSIONS:
            # Oldest first: a flood of cookie-less requests cannot grow memory without bound.
            old = next(iter(self._by_key.values()))
            self.drop(old)
        s = Session(key=secrets.token_urlsafe(32), user_id=f"w{secrets.token_hex(6)}", csrf=secrets.token_urlsafe(24))
        self._by_key[s.key] = s
        self.by_user[s.user_id] = s
        return s

    def drop(self, s: Session) -> None:
        self._by_key.pop(s.key, None)
        self.by_user.pop(s.user_id, None)
