"""Whether a URL is one a probe or a writer can use: checked once, the same way everywhere.

Light on purpose (standard library only): the command line's ``watch``, the config's
endpoints and the probes' own endpoints all ask it, so that a malformed URL is bad input with
one line, not a traceback inside the probes or a 100 % outage of a name that cannot exist.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

#: a host name's characters (letters, digits, dots, hyphens, underscores)
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a usable host and port, or None when it is."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # unbalanced brackets, a port that is no number or out of range
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} is not an http:// or https:// URL"
    host = parts.hostname
    if not host:
        return f"{url!r} has no host"
    if port == 0:
        return f"{url!r}: port 0 is not a port to connect to (1-65535)"
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"{url!r}: [{host}] is not an IPv6 address"
    elif not _HOST_NAME.fullmatch(host):
        return f"{url!r}: host {host!r} is not a host name or an IP address"
    return None
