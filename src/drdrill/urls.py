"""Whether a URL is one a probe or a writer can use: checked once, the same way everywhere.

Light on purpose (standard library only): the command line's ``watch``, the config's
endpoints and the probes' own endpoints all ask it, so that a malformed URL is bad input with
one line, not a traceback inside the probes or a 100 % outage of a name that cannot exist.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from drdrill.errors import quote

#: a host name's characters (letters, digits, dots, hyphens, underscores)
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a usable host and port, or None when it is."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # unbalanced brackets, a port that is no number or out of range
        return f"'{quote(url)}' is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"'{quote(url)}' is not an http:// or https:// URL"
    host = parts.hostname
    if not host:
        return f"'{quote(url)}' has no host"
    if port == 0:
        return f"'{quote(url)}': port 0 is not a port to connect to (1-65535)"
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"'{quote(url)}': [{host}] is not an IPv6 address"
    elif not _HOST_NAME.fullmatch(host):
        return f"'{quote(url)}': host '{quote(host)}' is not a host name or an IP address"
    else:
        problem = _name_problem(host)
        if problem is not None:
            return f"'{quote(url)}': host '{quote(host)}' {problem}"
    return None


def _name_problem(host: str) -> str | None:
    """What keeps ``host`` (of the allowed characters) from being a name DNS can hold: an empty
    label (``a..b``), a label over 63 characters, the whole over 253; None when it can be."""
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        return f"is {len(name)} characters long: a DNS name has at most 253"
    labels = name.split(".")
    if any(not label for label in labels):
        return "has an empty label (two dots together, or a dot at its start)"
    longest = max(labels, key=len)
    if len(longest) > 63:
        return f"has a label of {len(longest)} characters: a DNS label has at most 63"
    return None
