"""Where engine credentials come from (options, else environment variables), and how they are kept out of output.

Credentials never travel inside a printed string: `redact` removes the user-info part of URLs
(`https://user:secret@host` -> `https://***@host`) and the values of key-like query parameters from any
text the library prints or puts in an exception.
"""

from __future__ import annotations

import os
import re
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

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_SECRET_PARAM = re.compile(r"(?P<key>(?:api[_-]?key|token|password|secret)=)[^&\s]+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with URL credentials and key-like query parameters replaced by ***."""
    return _SECRET_PARAM.sub(r"\g<key>***", _USERINFO.sub(r"\g<scheme>***@", text))


def credentials_from_env(engine: str, given: dict[str, Any]) -> dict[str, Any]:
    """The credential options for `engine`: those in `given`, the rest from the environment when set there."""
    found = {}
    for option, variable in ENV_CREDENTIALS.get(engine, ()):
        if given.get(option) is None and os.environ.get(variable):
            found[option] = os.environ[variable]
    return found
