"""Where engine credentials come from (options, else environment variables), and how they are kept out of output.

Credentials never travel inside a printed string: `redact` removes every credential registered with
`remember_secret` (keys, tokens, passwords the library was given), the user-info part of URLs
(`https://user:secret@host` -> `https://***@host`), bearer tokens and the values of key-like query
parameters from any text the library prints or puts in an exception.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

# engine -> (open_store option, environment variable) pairs; an option given explicitly wins.
ENV_CREDENTIALS: dict[str, tuple[tuple[str, str], ...]] = {
    "qdrant": (("api_key", "CSRV2_QDRANT_API_KEY"),),
    "milvus": (("token", "CSRV2_MILVUS_TOKEN"),),
    "elasticsearch": (
        ("api_key", "CSRV2_ES_API_KEY"),
        ("username", "CSRV2_ES_USERNAME"),
        ("password", "CSRV2_ES_PASSWORD"),
    ),
}

# scheme://user:password@host: everything up to the last "@" of the token, so that a password holding "@",
# "/" or "#" (unescaped, as users type them) is removed whole.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)\S*@")
_SECRET_PARAM = re.compile(r"(?P<key>(?:api[_-]?key|token|password|secret)=)[^&\s]+", re.IGNORECASE)
_BEARER = re.compile(r"(?P<key>Bearer\s+)\S+", re.IGNORECASE)
# Every credential this process was given (options, environment, URL passwords): removed from any text the
# library prints or raises, also when a server echoes it back ("Incorrect API key provided: sk-...").
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
MIN_SECRET = 4  # shorter values would redact ordinary words


def remember_secret(value: object) -> None:
    """Register a credential (an API key, a token, a password, or a URL whose user-info holds one)."""
    if not isinstance(value, str) or not value:
        return
    found = {value}
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):  # a URL: only its user-info is secret
        userinfo = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://(\S*)@", value)
        found = {userinfo.group(1), userinfo.group(1).partition(":")[2]} if userinfo else set()
    with _KNOWN_LOCK:
        _KNOWN.update(v for v in found if len(v) >= MIN_SECRET)


def redact(text: str) -> str:
    """`text` without any registered credential, URL user-info, bearer tokens or key-like query parameters."""
    for secret in sorted(_KNOWN, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _BEARER.sub(r"\g<key>***", _SECRET_PARAM.sub(r"\g<key>***", text))


_REDACTED_LOGGERS: set[str] = set()


def redact_logs(*loggers: str) -> None:
    """Redact the records of these loggers and their children (e.g. "pymilvus", which logs the URI it dials,
    password included) as they are made, before any handler sees them."""
    if not _REDACTED_LOGGERS:
        make = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            if any(record.name == n or record.name.startswith(n + ".") for n in _REDACTED_LOGGERS):
                record.msg, record.args = redact(record.getMessage()), ()
            return record

        logging.setLogRecordFactory(factory)
    _REDACTED_LOGGERS.update(loggers)


def credentials_from_env(engine: str, given: dict[str, Any]) -> dict[str, Any]:
    """The credential options for `engine`: those in `given`, the rest from the environment when set there."""
    found = {}
    for option, variable in ENV_CREDENTIALS.get(engine, ()):
        if given.get(option) is None and os.environ.get(variable):
            found[option] = os.environ[variable]
        remember_secret(found.get(option, given.get(option)))
    return found
