"""No secret leaves the machine in a report: one redaction, used at every exit.

What is redacted, wherever it appears in text:

- the password of a URL's user information (``http://user:PASSWORD@host``), whatever its length;
- the value of a query parameter whose name looks like a secret (``token``, ``key``,
  ``secret``, ``password``, ``signature``, ``credential``, ``auth``, and every ``X-Amz-*``);
- AWS access key ids (``AKIA...``, ``ASIA...``) and the value given to a secret access key or
  session token (``aws_secret_access_key=...``, ``"SecretAccessKey": "..."``);
- every configured secret registered with :func:`register_secret` (the config's passwords and
  credentials, whatever their form). One of :data:`MIN_SECRET_LENGTH` characters or more is
  masked literally, as a whole token (not inside a longer word: a password ``test`` must not
  mask ``test_region_failover``). A shorter one (``pw``, ``123``) is masked only where it
  stands as the whole value of a key that names a secret (``password=pw``, ``"pwd": "pw"``,
  ``DB_PASSWORD: pw``) or as a URL's password (above). Anywhere else it is left alone on
  purpose: a two-letter value is an ordinary word or number ("ok", "12"), and masking every
  occurrence would garble reports *and* point at the password (every "12" turned into ``***``
  says what it is).

In JSON-like data (:func:`redact_data`), the value of a key that names a secret is redacted
whole, and every string is redacted as text; :func:`redact_fields` does the same to a tree of
dataclasses. Redacted values read ``***``.

:func:`secret_spans` says where the secrets of a text are (what :func:`redact` masks), for a
writer that must keep them out of a file but still name where they came from (the fault
journal, :mod:`drdrill.faults.journal`).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TypeVar, cast

T = TypeVar("T")

MASK: Final = "***"
#: shorter registered values are masked only as the value of a secret-named key (see above)
MIN_SECRET_LENGTH: Final = 4

_SECRET_WORDS = r"token|key|secret|passw(?:or)?d|pwd|signature|credential|auth"
_URL_PASSWORD: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:]*):([^/@\s]+)@")
_SECRET_PARAM: Final = re.compile(
    rf"(?i)([?&;](?:[^=&#\s]*(?:{_SECRET_WORDS})[^=&#\s]*|x-amz-[^=&#\s]*)=)([^&#\s\"'<>]+)"
)
_AWS_KEY_ID: Final = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
#: how many characters of an access key id stay readable ("AKIA***": which kind of key)
_AWS_KEY_ID_SHOWN: Final = 4
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
#: what may end a sentence right after a query value, and is left shown
_SENTENCE_PUNCTUATION: Final = ".,:;)]"
#: a word character: a registered secret is masked only where none touches it
_WORD: Final = "A-Za-z0-9_"

_lock = threading.Lock()
_registered: set[str] = set()
#: the patterns of the registered secrets, built when first needed after a change
_patterns: tuple[re.Pattern[str] | None, re.Pattern[str] | None] | None = None


def register_secret(value: object) -> None:
    """Mask ``value`` from now on wherever it appears (a configured password). Text and whole
    numbers count (a YAML ``password: 1234`` is a number); an empty value is no secret."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value:
        global _patterns
        with _lock:
            if value not in _registered:
                _registered.add(value)
                _patterns = None


def forget_secrets() -> None:
    """Forget every registered secret (a test that registered some cleans up after itself)."""
    global _patterns
    with _lock:
        _registered.clear()
        _patterns = None


def register_secrets(values: Iterable[object]) -> None:
    """:func:`register_secret` for each."""
    for value in values:
        register_secret(value)


def _registered_patterns() -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """The long registered secrets as whole tokens, and the short ones as the value of a key."""
    global _patterns
    with _lock:
        if _patterns is None:
            # longest first: of two secrets where one contains the other, the whole is masked
            ordered = sorted(_registered, key=lambda s: (-len(s), s))
            long = [re.escape(s) for s in ordered if len(s) >= MIN_SECRET_LENGTH]
            short = [re.escape(s) for s in ordered if len(s) < MIN_SECRET_LENGTH]
            _patterns = (
                re.compile(rf"(?<![{_WORD}])(?:{'|'.join(long)})(?![{_WORD}])") if long else None,
                # KEY, a separator (= or :, maybe quoted, maybe spaced), then the value
                re.compile(
                    rf"(?<![{_WORD}.-])([{_WORD}.-]+)(['\"]?\s*[:=]\s*['\"]?)"
                    rf"(?P<value>{'|'.join(short)})(?![{_WORD}])"
                )
                if short
                else None,
            )
        return _patterns


def secret_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` holds secrets: ``(start, end)`` of each, sorted, overlaps merged.

    Exactly what :func:`redact` masks (an access key id keeps its ``AKIA`` out of its span).
    """
    spans: list[tuple[int, int]] = []
    long, short = _registered_patterns()
    if long is not None:
        spans += [m.span() for m in long.finditer(text)]
    if short is not None:
        spans += [m.span("value") for m in short.finditer(text) if is_secret_key(m.group(1))]
    spans += [m.span(2) for m in _URL_PASSWORD.finditer(text)]
    spans += [_without_trailing_punctuation(text, *m.span(2)) for m in _SECRET_PARAM.finditer(text)]
    spans += [(m.start() + _AWS_KEY_ID_SHOWN, m.end()) for m in _AWS_KEY_ID.finditer(text)]
    spans += [m.span(3) for m in _AWS_SECRET.finditer(text)]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _without_trailing_punctuation(text: str, start: int, end: int) -> tuple[int, int]:
    """A query value at the end of a sentence or a clause ("...?token=abc: refused") without
    the punctuation that ends it, which is the sentence's, not the value's."""
    if end < len(text) and not text[end].isspace() and text[end] not in "\"'<>":
        return start, end
    while end - start > 1 and text[end - 1] in _SENTENCE_PUNCTUATION:
        end -= 1
    return start, end


def redact(text: str) -> str:
    """``text`` with every secret it holds masked."""
    spans = secret_spans(text)
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts += [text[last:start], MASK]
        last = end
    parts.append(text[last:])
    return "".join(parts)


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


def redact_fields(value: T) -> T:
    """A copy of ``value`` with every string in it masked as text: dataclasses (frozen ones
    too, field by field), tuples, lists and dicts (as :func:`redact_data`) all the way down.

    For what is rendered into text later (a table, an HTML page): masked before it is wrapped
    or escaped, where a secret can still be found whole.
    """
    if isinstance(value, str):
        return cast(T, redact(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: redact_fields(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.init
        }
        return cast(T, dataclasses.replace(value, **changes))
    if isinstance(value, tuple):
        items = [redact_fields(item) for item in value]
        named = hasattr(value, "_fields")  # a named tuple is built from its fields
        return cast(T, type(value)(*items) if named else tuple(items))
    if isinstance(value, list):
        return cast(T, [redact_fields(item) for item in value])
    if isinstance(value, dict):
        return cast(
            T,
            {
                key: (
                    MASK
                    if isinstance(key, str) and is_secret_key(key) and isinstance(item, str)
                    else redact_fields(item)
                )
                for key, item in value.items()
            },
        )
    return value


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
