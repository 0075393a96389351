"""The sandbox's AWS API endpoint: moto, in this process, as the protocol and state layer.

moto answers every call (its serializers, its resource state, its errors); the sandbox's
processes are the data plane. Calls that must act on that data plane (``StopTask`` kills the
task's process, ``UpdateService`` drives the scheduler, ...) are *intercepted*: a hook named by
``(service, action)`` runs before moto answers, with the call's region and parameters. The
reconciler (:mod:`drdrill.sandbox.aws.reconcile`) keeps moto's state true to the processes.

The endpoint listens on loopback only; one endpoint serves both regions (the region is the one
of the call's SigV4 credential scope, as on AWS).
"""

from __future__ import annotations

import contextvars
import io
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

#: Lambda's REST path of ``Invoke``
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
#: Route53's REST path of ChangeResourceRecordSets (POST)
_RRSET = re.compile(r"^/2013-04-01/hostedzone/([^/]+)/rrset/?$")
#: ``Credential=AKID/20261130/eu-west-1/ecs/aws4_request``
_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Call:
    """One AWS API call as the endpoint received it."""

    service: str  # the SigV4 signing name: ecs, rds, elasticloadbalancing, monitoring, ...
    region: str
    action: str  # StopTask, RebootDBInstance, ...
    params: Mapping[str, Any]  # JSON body, or the query/form parameters (first value each)
    path: str
    protocol: str = "json"  # json (X-Amz-Target) or query (Action=...; XML answers)
    #: the access key id it was signed with: who sent it (CloudTrail's userIdentity)
    access_key: str = ""


#: the call the endpoint is handling in this thread (moto's handlers run in it)
_CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def current_call() -> Call | None:
    """The call being handled, for code that runs inside moto's handler of it (a listener of
    Route53's record changes); None outside a call."""
    return _CURRENT.get()


#: A hook runs before moto answers; it may raise to refuse the call (moto never sees it).
Hook = Callable[[Call], None]
#: Runs after moto answered the call with a 2xx status.
AfterHook = Callable[[Call], None]
#: Answers the call instead of moto: (status, headers, body); LookupError lets moto answer.
Responder = Callable[[Call, bytes], tuple[int, dict[str, str], bytes]]


def parse_call(environ: Environ, body: bytes) -> Call | None:
    """Which service, region and action a request is, or None when it is not a signed call."""
    scope = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if scope is None:
        return None
    key, region, service = scope.group(1), scope.group(2), scope.group(3)
    path = str(environ.get("PATH_INFO", ""))
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    params: dict[str, Any] = {}
    action = ""
    invoke = _INVOKE.match(path) if service == "lambda" else None
    if invoke is not None:  # REST: the function in the path, the payload is the body
        name = urllib.parse.unquote(invoke.group(1))
        return Call(service, region, "Invoke", {"FunctionName": name}, path, "rest-json", key)
    rrset = _RRSET.match(path) if service == "route53" else None
    if rrset is not None and environ.get("REQUEST_METHOD") == "POST":  # REST-XML
        zone = urllib.parse.unquote(rrset.group(1))
        return Call(
            service,
            region,
            "ChangeResourceRecordSets",
            {"HostedZoneId": zone},
            path,
            "rest-xml",
            key,
        )
    if target:  # JSON protocol: X-Amz-Target: AmazonEC2ContainerServiceV20141113.StopTask
        action = target.rsplit(".", 1)[-1]
        try:
            loaded = json.loads(body or b"{}")
        except ValueError:
            loaded = {}
        params = loaded if isinstance(loaded, dict) else {}
    else:  # query protocol: Action=RebootDBInstance in the form body or the query string
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
        content_type = str(environ.get("CONTENT_TYPE", ""))
        if "x-www-form-urlencoded" in content_type:
            query.update(urllib.parse.parse_qs(body.decode(errors="replace")))
        params = {k: v[0] for k, v in query.items()}
        action = str(params.get("Action", ""))
    return Call(
        service=service,
        region=region,
        action=action,
        params=params,
        path=path,
        protocol="json" if target else "query",
        access_key=key,
    )


class HookedApp:
    """moto's WSGI application with hooks before and after chosen calls."""

    def __init__(self) -> None:
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._before: dict[tuple[str, str], Hook] = {}
        self._after: dict[tuple[str, str], AfterHook] = {}
        self._responders: dict[tuple[str, str], Responder] = {}
        self._noted: set[tuple[str, str]] = set()
        self._unlogged: set[tuple[str, str]] = set()
        #: told of each call the sandbox acts on or answers (the API's own log of them)
        self.on_call: Callable[[Call], object] | None = None

    def _note(self, call: Call) -> None:
        if self.on_call is not None:
            self.on_call(call)

    def before(self, service: str, action: str, hook: Hook, *, logged: bool = True) -> None:
        """Run ``hook`` before moto answers ``service:action``; ``logged=False`` keeps the call
        out of the API's log (:attr:`on_call`): a read that only brings moto's answer up to
        date, asked many times a second by a drill's polls."""
        self._before[(service, action)] = hook
        if not logged:
            self._unlogged.add((service, action))

    def after(self, service: str, action: str, hook: AfterHook) -> None:
        """Run ``hook`` once moto has answered ``service:action`` successfully."""
        self._after[(service, action)] = hook

    def note(self, service: str, action: str) -> None:
        """Put ``service:action`` in the API's log (:attr:`on_call`) though no hook runs for
        it: a call that moto answers and the sandbox acts on inside moto's own handler."""
        self._noted.add((service, action))

    def respond(self, service: str, action: str, responder: Responder) -> None:
        """Answer ``service:action`` with ``responder`` instead of moto (what moto cannot do,
        like running a function)."""
        self._responders[(service, action)] = responder

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        call = parse_call(environ, body)
        if call is None:
            return self._moto(environ, start_response)  # type: ignore[no-any-return]
        token = _CURRENT.set(call)
        try:
            return self._handle(call, environ, body, start_response)
        finally:
            _CURRENT.reset(token)

    def _handle(
        self, call: Call, environ: Environ, body: bytes, start_response: StartResponse
    ) -> Iterable[bytes]:
        key = (call.service, call.action)
        responder = self._responders.get(key)
        if responder is not None:
            self._note(call)
            try:
                code, headers, reply = responder(call, body)
            except LookupError:
                pass
            except ApiError as exc:
                return exc.respond(start_response, call.protocol)
            else:
                start_response(
                    f"{code} {'OK' if code < 300 else 'Error'}",
                    [*headers.items(), ("Content-Length", str(len(reply)))],
                )
                return [reply]
        hook = self._before.get(key)
        if (hook is not None and key not in self._unlogged) or key in self._noted:
            self._note(call)
        if hook is not None:
            try:
                hook(call)
            except ApiError as exc:
                return exc.respond(start_response, call.protocol)
        after = self._after.get(key)
        if after is None:
            return self._moto(environ, start_response)  # type: ignore[no-any-return]
        status: list[str] = []

        def capture(code: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            status.append(code)
            return start_response(code, headers, *rest)

        answer = list(self._moto(environ, capture))
        if status and status[0].startswith("2"):
            after(call)
        return answer


class ApiError(Exception):
    """An error the sandbox answers instead of moto (as AWS would answer it)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def respond(self, start_response: StartResponse, protocol: str = "json") -> list[bytes]:
        """The error as the protocol writes one (JSON ``__type``/``message``, or the query
        protocol's XML ``ErrorResponse``), readable by botocore."""
        if protocol == "query":
            body = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
                "</Error><RequestId>drdrill-sandbox</RequestId></ErrorResponse>"
            ).encode()
            content_type = "text/xml"
        else:
            body = json.dumps({"__type": self.code, "message": self.message}).encode()
            content_type = "application/x-amz-json-1.1"
        start_response(
            f"{self.status} Error",
            [
                ("Content-Type", content_type),
                ("x-amzn-ErrorType", self.code),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]


class AwsEndpoint:
    """The HTTP server of :class:`HookedApp` on ``host:port``, in a thread of this process."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.app = HookedApp()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port``: what ``AWS_ENDPOINT_URL`` is set to."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind and serve (raises OSError when the port is taken)."""
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aws-endpoint", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
