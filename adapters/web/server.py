"""The web room's HTTP side (aiohttp): pages, the JSON API and the live stream.

Safety lives here: every response carries a Content-Security-Policy without inline scripts or
styles; every POST needs the session's CSRF token in a header (a JSON body, SameSite=Strict cookies
and a same-origin check besides), so another site's page cannot post as a visitor; bodies are small.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from bots.core.images import IMAGE_TYPES

from .adapter import InputError, persona_card
from .sessions import CSRF_HEADER, SESSION_COOKIE, Session, clean_name, same
from .uploads import PHOTO_PATH, Photo, read_form

if TYPE_CHECKING:
    from .adapter import WebAdapter

ADAPTER: web.AppKey[WebAdapter] = web.AppKey("adapter")
# Photo uploads read and decoded at once: each holds up to images_per_message * image_max_bytes in memory.
UPLOADS: web.AppKey[asyncio.Semaphore] = web.AppKey("uploads")
UPLOADS_AT_ONCE = 4
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGES = {"/": "feed.html", "/rooms": "rooms.html", "/operator": "operator.html"}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml", ".png": "image/png"}
HEARTBEAT_SECONDS = 15.0
TYPES = sorted(IMAGE_TYPES)


def static_bytes(name: str) -> bytes | None:
    """A file shipped in adapters/web/static (package data), None when there is no such file."""
    if "/" in name or name.startswith("."):
        return None
    item = resources.files("adapters.web").joinpath("static", name)
    return item.read_bytes() if item.is_file() else None


@web.middleware
async def security(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method == "POST":
        _check_post(request)
    response: web.StreamResponse = await handler(request)
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Frame-Options"] = "DENY"
    h.setdefault("Cache-Control", "no-store")
    return response


def _check_post(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    # Host only, not the scheme: behind a TLS proxy the page is https while this server sees http.
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text="cross-site request refused")
    session = _session(request)
    token = request.headers.get(CSRF_HEADER, "")
    if session is None or not token or not same(token, session.csrf):
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")


def _session(request: web.Request) -> Session | None:
    return request.app[ADAPTER].sessions.get(request.cookies.get(SESSION_COOKIE))


def session_of(request: web.Request) -> Session:
    s = _session(request)
    if s is None:
        raise web.HTTPUnauthorized(text="no session: reload the page")
    return s


def named(request: web.Request) -> Session:
    s = session_of(request)
    if not s.name:
        raise web.HTTPBadRequest(text="choose a display name first")
    return s


async def body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="JSON only")
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="malformed JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return data


def ok(data: Any = None) -> web.Response:
    return web.json_response({"ok": True} if data is None else data)


async def page(request: web.Request) -> web.Response:
    data = static_bytes(PAGES[request.path])
    assert data is not None
    return web.Response(body=data, content_type="text/html", charset="utf-8")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    ctype = STATIC_TYPES.get(name[name.rfind(".") :] if "." in name else "")
    data = static_bytes(name) if ctype else None
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type=ctype, headers={"Cache-Control": "no-cache"})


async def get_session(request: web.Request) -> web.Response:
    adapter = request.app[ADAPTER]
    s = _session(request)
    fresh = s is None
    if s is None:
        s = adapter.sessions.new()
    assert adapter.fleet is not None
    op = adapter.operator
    llm = adapter.fleet.config.llm
    if op is not None and op.signed_in(request):
        s.operator = True  # the operator cookie outlives sessions (a restart, a new tab)
    data = {
        "user": s.user_id,
        "name": s.name,
        "csrf": s.csrf,
        "feed": adapter.feed,
        "rooms": list(adapter.settings.rooms),
        "personas": [persona_card(p) for p in adapter.fleet.personas.values()],
        # What the photo picker checks before sending (the server checks it again while reading).
        "photos": {"max_bytes": llm.image_max_bytes, "per_message": llm.images_per_message, "types": TYPES},
        "operator": {"enabled": op is not None, "signed_in": op is not None and op.signed_in(request)},
    }
    response = web.json_response(data)
    if fresh:
        response.set_cookie(SESSION_COOKIE, s.key, httponly=True, samesite="Strict", path="/", max_age=30 * 86400)
    return response


async def set_name(request: web.Request) -> web.Response:
    s = session_of(request)
    name = clean_name(str((await body(request)).get("name", "")))
    if not name:
        raise web.HTTPBadRequest(text="a display name needs a letter or digit")
    s.name = name
    return ok({"name": name})


async def feed(request: web.Request) -> web.Response:
    adapter = request.app[ADAPTER]
    return ok({"posts": adapter.hub.posts(adapter.feed)})


async def room(request: web.Request) -> web.Response:
    adapter = request.app[ADAPTER]
    channel = request.query.get("channel", "")
    if channel not in adapter.settings.rooms:
        raise web.HTTPNotFound(text="no such room")
    return ok({"messages": adapter.hub.messages(channel)})


async def followers(request: web.Request) -> web.Response:
    return ok({"followers": await request.app[ADAPTER].followers(named(request))})


async def body_and_photos(request: web.Request) -> tuple[dict[str, Any], tuple[Photo, ...]]:
    """A JSON body, or a form with photos (the post box's picker): fields and the photos Pillow opened."""
    if request.content_type != "multipart/form-data":
        return await body(request), ()
    adapter = request.app[ADAPTER]
    assert adapter.fleet is not None
    async with request.app[UPLOADS]:
        form = await read_form(request, adapter.fleet.config.llm)
    return dict(form.fields), form.photos


async def post(request: web.Request) -> web.Response:
    s = named(request)
    data, photos = await body_and_photos(request)
    pid = await _input(request.app[ADAPTER].post(s, data.get("text", ""), photos))
    return ok({"id": pid})


async def say(request: web.Request) -> web.Response:
    s = named(request)
    data, photos = await body_and_photos(request)
    reply_to = data.get("reply_to")
    call = request.app[ADAPTER].say(
        s, str(data.get("channel", "")), data.get("text", ""), str(reply_to) if reply_to else None, photos
    )
    return ok({"id": await _input(call)})


async def photo(request: web.Request) -> web.Response:
    """A photo posted here, as the room re-encoded it: same origin, a fixed image type, never markup."""
    photos = request.app[ADAPTER].photos
    kept = photos.get(request.match_info["id"]) if photos is not None else None
    if kept is None:
        raise web.HTTPNotFound(text="no such photo (deleted, or the room restarted)")
    headers = {"Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"}
    return web.Response(body=kept.data, content_type=kept.mime, headers=headers)


async def command(request: web.Request) -> web.Response:
    """Buttons and checkboxes that are commands: /more under a post, /followers from the checkboxes."""
    s = named(request)
    data = await body(request)
    verb = str(data.get("command", ""))
    if verb not in ("more", "followers", "about", "optout", "optin", "forget", "personas", "help"):
        raise web.HTTPBadRequest(text="unknown command")
    args = data.get("args", "")
    if isinstance(args, list):
        args = " ".join(str(a) for a in args)
    call = request.app[ADAPTER].command(s, str(data.get("channel", "")), verb, str(args))
    await _input(call)
    return ok()


async def _input(call: Any) -> Any:
    try:
        return await call
    except InputError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every public event, this person's private answers, and for a signed-in
    operator the decision log."""
    adapter = request.app[ADAPTER]
    s = session_of(request)
    op = adapter.operator
    live = adapter.hub.open(s.user_id, operator=op is not None and op.signed_in(request))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    try:
        await response.write(b": hello\n\n")
        while True:
            try:
                event = await asyncio.wait_for(live.queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            await response.write(event)
    except ConnectionResetError:
        return response  # the page went away (a cancelled handler is cleaned up by finally alone)
    finally:
        adapter.hub.close(live)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response


def make_app(adapter: WebAdapter) -> web.Application:
    # Small bodies: a message is at most a few thousand characters.
    app = web.Application(middlewares=[security], client_max_size=64 * 1024)
    app[ADAPTER] = adapter
    app[UPLOADS] = asyncio.Semaphore(UPLOADS_AT_ONCE)
    r = app.router
    for path in PAGES:
        r.add_get(path, page)
    r.add_get("/static/{name}", asset)
    r.add_get("/api/session", get_session)
    r.add_post("/api/name", set_name)
    r.add_get("/api/feed", feed)
    r.add_get("/api/room", room)
    r.add_get("/api/followers", followers)
    r.add_post("/api/post", post)
    r.add_post("/api/say", say)
    r.add_post("/api/command", command)
    r.add_get("/api/stream", stream)
    r.add_get(PHOTO_PATH + "{id}", photo)
    if adapter.operator is not None:
        adapter.operator.routes(app)
    return app
