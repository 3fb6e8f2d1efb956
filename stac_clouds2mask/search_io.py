"""The HTTP side of STAC API search: pystac-client's StacApiIO with every request under the trust rule.

A STAC API tells its client where to go next: the landing page's `search` link, the `next` link of every
page (with a `method`, `headers`, `body` and `merge` of its own) and HTTP redirects. Each of them is a
reference named by the API, so each is judged as an href the API names (trust.check_reference: remote,
not link-local, on the operator's host list), and:

- only GET and POST are sent (a link asking for PUT or DELETE is refused);
- a link's `headers` and `body` are honoured (as the STAC API spec has them) only towards the origin the
  user named; a link to another origin is followed as a plain GET or refused;
- requests to another origin carry none of the user's credentials: no session headers, query parameters
  or auth (the user info of the URL named is sent to its origin only), and the request modifier (which
  may sign) is not applied;
- redirects are followed here, one by one, under the same rules (at most MAX_REDIRECTS);
- an answer that is not a JSON object is a clear InvalidInputError, not a traceback.

pystac-client's own `StacApiIO.request` follows redirects inside requests, where none of this can be
decided per hop: so `request` is written again here (after pystac-client 0.9's), the rest is inherited.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from pystac.link import HREF, Link
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from .errors import InvalidInputError, LimitExceededError, UntrustedReferenceError
from .limits import BoundedSession, Limits
from .trust import check_reference, origin

METHODS = ("GET", "POST")
MAX_REDIRECTS = 5
ERROR_BODY_CHARS = 500  # of an API's error answer, in the message
_BODY_METHODS = ("POST",)


class TrustedStacApiIO(StacApiIO):
    """StacApiIO for the STAC API at `home` (the URL the user named), bounded by `limits` (whole-request
    deadline and body size, limits.BoundedSession). Other keyword arguments are StacApiIO's."""

    def __init__(self, home: str, limits: Limits | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        limits = limits or Limits.from_env()
        self.session = BoundedSession.like(self.session, limits.api_seconds, limits.max_body_bytes)
        parts = urlsplit(home)
        if parts.username is not None:  # the URL's user info: for every request to its origin, and only there
            self.session.auth = (unquote(parts.username), unquote(parts.password or ""))
            home = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
        self.home = home  # without user info: pystac-client copies it into links (root) of every item
        self._bare = requests.Session()  # prepares requests to other origins: no headers, auth or params of ours
        self.answered_by = home  # the URL of the last answer (after redirects), for messages

    def _refuse(self, reason: str) -> InvalidInputError:
        return InvalidInputError(f"STAC API {self.home}: {reason}")

    def _check(self, href: str, method: str, what: str) -> bool:
        """Whether `href` is at the user's origin; InvalidInputError when the API may not make us send
        `method` there."""
        if method not in METHODS:
            raise self._refuse(f"{what} asks for {method} {href!r}: refused (only {' and '.join(METHODS)})")
        try:
            check_reference(href, None if href == self.home else self.home, what=what)
        except UntrustedReferenceError as exc:
            raise self._refuse(str(exc)) from None
        return origin(href) == origin(self.home)

    def read_text(self, source: HREF, *args: Any, **kwargs: Any) -> str:
        """As StacApiIO's, but a link's method, headers and body are judged first, and a reference that
        is not a URL is never opened as a local file."""
        if isinstance(source, Link):
            link = source.to_dict()
            href, method = str(link.get("href")), str(link.get("method", "GET")).upper()
            home = self._check(href, method, f"its {link.get('rel')!r} link")
            if not home and (method != "GET" or link.get("headers") or link.get("body")):
                raise self._refuse(
                    f"its {link.get('rel')!r} link to another origin ({href!r}) has a method, headers or body "
                    "of its own: refused (they are sent only to the API named)"
                )
            return super().read_text(source, *args, **kwargs)
        return self.request(str(source), *args, **kwargs)

    def read_json(self, source: HREF, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The JSON object at `source`; InvalidInputError when the answer is not one."""
        text = self.read_text(source, *args, **kwargs)
        where = self.answered_by
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise self._refuse(f"the answer from {where!r} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise self._refuse(f"the answer from {where!r} is a JSON {type(data).__name__}, not an object")
        return data

    def request(
        self,
        href: str,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        """One request and its redirects, each hop checked (see the module docstring); APIError on an
        HTTP error or when the server cannot be reached (as StacApiIO)."""
        method = (method or "GET").upper()
        for _ in range(MAX_REDIRECTS + 1):
            home = self._check(href, method, "a request it leads to")
            body = method in _BODY_METHODS
            request = requests.Request(
                method,
                href,
                headers=headers if home else None,
                json=parameters if body else None,
                params=None if body else dict(parameters or {}),
            )
            if home and self._req_modifier:
                request = self._req_modifier(request) or request
            prepared = (self.session if home else self._bare).prepare_request(request)
            settings = self.session.merge_environment_settings(
                prepared.url, proxies={}, stream=None, verify=True, cert=None
            )
            try:
                response = self.session.send(prepared, timeout=self.timeout, allow_redirects=False, **settings)
            except (requests.RequestException, LimitExceededError) as exc:
                raise APIError(str(exc)) from exc
            if not response.is_redirect:
                break
            target = requests.compat.urljoin(prepared.url, response.headers["Location"])
            if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                method, parameters = "GET", None  # as browsers and requests do
            elif method == "POST" and origin(target) != origin(href):
                raise self._refuse(
                    f"POST {href!r} was redirected ({response.status_code}) to another origin ({target!r}): "
                    "refused, the body stays with the API named"
                )
            href, parameters = target, (parameters if method == "POST" else None)
        else:
            raise self._refuse(f"more than {MAX_REDIRECTS} redirects from {href!r}")
        self.answered_by = href
        if not 200 <= response.status_code < 300:
            error = APIError(f"HTTP {response.status_code} from {href}: {response.text[:ERROR_BODY_CHARS]}")
            error.status_code = response.status_code
            raise error
        try:
            return response.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._refuse(f"the answer from {href!r} is not UTF-8 text ({exc})") from None
