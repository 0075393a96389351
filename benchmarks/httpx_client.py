"""An httpx implementation of the probes' ``HttpClient``, to compare with the aiohttp one.

It lives in ``benchmarks/`` because drdrill ships aiohttp only; the benchmark runs the very same
``ProbeRunner`` with either client so the figures differ by the HTTP library alone.
"""

from __future__ import annotations

import errno

import httpx

from drdrill.probes.http import USER_AGENT, ProbeFailure
from drdrill.probes.stats import (
    ERROR_CONNECT,
    ERROR_OTHER,
    ERROR_PROTOCOL,
    ERROR_REFUSED,
    ERROR_RESET,
    ERROR_TIMEOUT,
)


def _connect_error_class(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED:
            return ERROR_REFUSED
        cause = cause.__cause__ or cause.__context__
    return ERROR_REFUSED if "refused" in str(exc).lower() else ERROR_CONNECT


class HttpxClient:
    """``HttpClient`` on an ``httpx.AsyncClient`` with a keep-alive pool, no proxies from env."""

    def __init__(self, max_connections: int) -> None:
        """Pool up to ``max_connections`` connections, all of them kept alive when idle."""
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            trust_env=False,
            timeout=None,  # the runner times each request itself
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    async def get(self, url: str) -> tuple[int, bytes]:
        """GET ``url``; status and body, or :class:`ProbeFailure`."""
        try:
            response = await self._client.get(url)
            return response.status_code, response.content
        except httpx.ConnectError as exc:
            raise ProbeFailure(_connect_error_class(exc), str(exc)) from exc
        except (httpx.ReadError, httpx.WriteError) as exc:
            raise ProbeFailure(ERROR_RESET, str(exc)) from exc
        except httpx.RemoteProtocolError as exc:
            # "Server disconnected without sending a response" is a reset to the probe
            error = ERROR_RESET if "disconnected" in str(exc).lower() else ERROR_PROTOCOL
            raise ProbeFailure(error, str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ProbeFailure(ERROR_TIMEOUT, str(exc)) from exc
        except httpx.HTTPError as exc:
            raise ProbeFailure(ERROR_OTHER, f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the client and its pool."""
        await self._client.aclose()
