"""No secret leaves the machine in a report: one redaction, used at every exit.

What is redacted, wherever it appears in text:

- the password of a URL's user information (``http://user:PASSWORD@host``);
- the value of a query parameter whose name looks like a secret (``token``, ``key``,
  ``secret``, ``password``, ``signature``, ``credential``, ``auth``, and every ``X-Amz-*``);
- AWS access key ids (``AKIA...``, ``ASIA...``) and the value given to a secret access key or
  session token (``aws_secret_access_key=...``, ``"SecretAccessKey": "..."``);
- every configured secret registered with :func:`register_secret` (the config's passwords and
  credentials, whatever their form), literally, as a whole token (not inside a longer word).

In JSON-like data (:func:`redact_data`), the value of a key that names a secret is redacted
whole, and every string is redacted as text. Redacted values read ``***``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

MASK: Final = "***"
#: shorter registered values are not masked literally: they would mask ordinary words
MIN_SECRET_LENGTH: Final = 4

_SECRET_WORDS = r"token|key|secret|passw(?:or)?d|pwd|signature|credential|auth"
_URL_PASSWORD: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:]*):([^/@\s]+)@")
_SECRET_PARAM: Final = re.compile(
    rf"(?i)([?&;](?:[^=&#\s]*(?:{_SECRET_WORDS})[^=&#\s]*|x-amz-[^=&#\s]*)=)([^&#\s\"'<>]+)"
)
_AWS_KEY_ID: Final = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_AWS_SECRET: Final = re.compile(
    r"(?i)(aws_secret_access_key|aws_session_token|secret_?access_?key|session_?token)"
    r"(['\"]?\s*[:=]\s*['\"]?)([A-Za-z0-9/+=]{8,})"
)
#: the words of a mapping key that make it name a secret (``api_key``, ``SecretAccessKey``)
_SECRET_KEY_WORDS: Final = frozenset(
    {"token", "key", "secret", "password", "passwd", "pwd", "signature", "credential"}
    | {"credentials", "auth", "authorization"}
)
_KEY_WORD: Final = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

_lock = threading.Lock()
_registered: set[str] = set()


def register_secret(value: object) -> None:
    """Mask ``value`` literally from now on wherever it appears (a configured password)."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def forget_secrets() -> None:
    """Forget every registered secret (a test that registered some cleans up after itself)."""
    with _lock:
        _registered.clear()


def register_secrets(values: Iterable[object]) -> None:
    """:func:`register_secret` for each."""
    for value in values:
        register_secret(value)


def redact(text: str) -> str:
    """``text`` with every secret it holds masked."""
    with _lock:
        literal = sorted(_registered, key=len, reverse=True)
    for secret in literal:
        if secret in text:
            # as a whole token only: a password "test" must not mask "test_region_failover"
            text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])", MASK, text)
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _SECRET_PARAM.sub(rf"\1{MASK}", text)
    text = _AWS_KEY_ID.sub(lambda m: m.group(0)[:4] + MASK, text)
    return _AWS_SECRET.sub(rf"\1\2{MASK}", text)


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (``password``, ``api_key``, ``X-Amz-Signature``;
    not ``author`` or ``keys``): by its words, split at separators and case changes."""
    if key.lower().startswith("x-amz-"):
        return True
    return any(word.lower() in _SECRET_KEY_WORDS for word in _KEY_WORD.findall(key))


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` with secrets masked: values of secret-named keys whole,
    every string as text."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {
            key: (
                MASK
                if isinstance(key, str) and is_secret_key(key) and isinstance(value, str)
                else redact_data(value)
            )
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact_data(item) for item in data]
    return data


def redact_files(folder: Path) -> int:
    """Mask secrets in every UTF-8 text file of ``folder`` (another tool's output, such as
    allure-pytest's results, which it writes from the exception itself); how many changed."""
    changed = 0
    for path in sorted(folder.glob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a binary attachment: nothing of ours is in it
        masked = redact(text)
        if masked != text:
            path.write_text(masked, encoding="utf-8")
            changed += 1
    return changed
