"""`tagd web`'s pages: gallery, search, photo, tags, stats, and the review actions.

A Starlette app over the index the daemon writes. Pages are server-rendered Jinja2 templates
that work without JavaScript (static/tagd.js only adds infinite scroll and selection keys).
Reads go through tagd.web.catalog; every change goes through tagd.review, the code path of
`tagd accept/reject`: the metadata writer first (atomic, verified, revertable), then the index.
Changes are serialised: one writer, one exiftool process, one index transaction at a time.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from tagd.errors import ReadError
from tagd.index.errors import QueryError
from tagd.index.query_tree import SORTS
from tagd.web.auth import UNDO_DEPTH, Credentials, Session, Sessions
from tagd.web.catalog import Catalog
from tagd.web.thumbs import Thumbnails

HERE = Path(__file__).parent
PREVIEW_PX = 1600
STATE_WORDS = {
    "kept": "kept", "added": "added by tagd", "suggested": "suggestion (below the threshold)",
    "suggested-removal": "tagd would remove it", "removed": "removed by tagd as imprecise", "rejected": "rejected by you",
}
SOURCE_WORDS = {"user": "yours", "model": "model", "neighbours": "similar photos"}
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class WebConfig:
    index_path: Path
    roots: list[Path]
    credentials: Credentials
    make_writer: Callable[[], Any]  # -> tagd.metadata.MetadataWriter (tagd.pipeline.make_writer)
    thumbnails: Thumbnails
    page_size: int = 120
    thumbnail_px: int = 320
    cookie_name: str = "tagd_session"
    bundle: str = ""  # the model bundle new photos are tagged with, in words
    secure_cookie: bool = False


@dataclass
class _Writes:
    """The one writer (an exiftool child process) and the lock every change holds."""

    make_writer: Callable[[], Any]
    index_path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    writer: Any = None

    def run(self, fn: Callable[[Any], Any]) -> Any:
        from tagd.index.db import Index
        from tagd.review import Review

        with self.lock:
            if self.writer is None:
                self.writer = self.make_writer()
            index = Index(self.index_path)
            try:
                return fn(Review(self.writer, index))
            finally:
                index.close()

    def close(self) -> None:
        with self.lock:
            if self.writer is not None:
                self.writer.exiftool.close()
                self.writer = None


def create_app(config: WebConfig) -> Starlette:
    catalog = Catalog(config.index_path, config.roots)
    sessions = Sessions()
    writes = _Writes(config.make_writer, config.index_path)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(state_words=STATE_WORDS, source_words=SOURCE_WORDS, quote=quote)

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(config.cookie_name))

    def render(request: Request, name: str, session: Session, status: int = 200, **context: Any) -> Response:
        flash, session.flash = session.flash, []
        undo = session.undo[-1].description if session.undo else None
        return templates.TemplateResponse(request, name, {"csrf": session.csrf, "flash": flash, "undo": undo, **context},
                                          status_code=status)

    # -- guards ---------------------------------------------------------------------------------

    def page(handler: Callable[[Request, Session], Awaitable[Response]]) -> Handler:
        """A page: no session sends the browser to the login page."""
        async def guarded(request: Request) -> Response:
            session = session_of(request)
            if session is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
            return await handler(request, session)
        return guarded

    def asset(handler: Callable[[Request, Session], Awaitable[Response]]) -> Handler:
        """An image: no session is 401."""
        async def guarded(request: Request) -> Response:
            session = session_of(request)
            if session is None:
                return PlainTextResponse("log in first", status_code=401)
            return await handler(request, session)
        return guarded

    def action(handler: Callable[[Request, Session, Any], Awaitable[Response]]) -> Handler:
        """A change: a session, a request from this site, and the session's CSRF token."""
        async def guarded(request: Request) -> Response:
            session = session_of(request)
            if session is None:
                return PlainTextResponse("log in first", status_code=401)
            if not same_site(request):
                return PlainTextResponse("refused: a cross-site request", status_code=403)
            form = await request.form()
            token = form.get("csrf") or request.headers.get("x-csrf-token", "")
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), session.csrf.encode()):
                return PlainTextResponse("refused: missing or wrong CSRF token (reload the page)", status_code=403)
            return await handler(request, session, form)
        return guarded

    def same_site(request: Request) -> bool:
        """False for a request a browser marks as coming from another site. A client that sends
        neither header (curl, an old browser) is judged by the CSRF token alone."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")

    # -- login ------------------------------------------------------------------------------------

    async def login(request: Request) -> Response:
        if request.method == "GET":
            token = request.query_params.get("token")
            if token is not None and config.credentials.check(token):
                return start_session(_local(request.query_params.get("next")))
            return templates.TemplateResponse(request, "login.html", {
                "next": _local(request.query_params.get("next")), "error": token is not None,
                "password": config.credentials.password_hash is not None, "token": config.credentials.token is not None},
                status_code=401 if token is not None else 200)
        if not same_site(request):
            return PlainTextResponse("refused: a cross-site request", status_code=403)
        form = await request.form()
        secret = form.get("secret")
        if isinstance(secret, str) and await run_in_threadpool(config.credentials.check, secret):
            return start_session(_local(form.get("next")))
        await asyncio.sleep(0.5)  # a guess costs time
        return templates.TemplateResponse(request, "login.html", {
            "next": _local(form.get("next")), "error": True,
            "password": config.credentials.password_hash is not None, "token": config.credentials.token is not None},
            status_code=401)

    def start_session(target: str) -> Response:
        sid, _ = sessions.create()
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(config.cookie_name, sid, httponly=True, samesite="strict", secure=config.secure_cookie,
                            max_age=7 * 24 * 3600)
        return response

    async def logout(request: Request, session: Session, form: Any) -> Response:
        sessions.end(request.cookies.get(config.cookie_name))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(config.cookie_name)
        return response

    # -- pages ------------------------------------------------------------------------------------

    async def gallery(request: Request, session: Session) -> Response:
        return await grid(request, session, query="", sort=request.query_params.get("sort", "taken"))

    async def search(request: Request, session: Session) -> Response:
        return await grid(request, session, query=request.query_params.get("q", ""),
                          sort=request.query_params.get("sort", "score"))

    async def tag_page(request: Request, session: Session) -> Response:
        name = request.query_params.get("name", "").strip()
        if not name:
            return RedirectResponse("/tags", status_code=303)
        from tagd.index.query_tree import quote_tag

        return await grid(request, session, query=quote_tag(name), sort=request.query_params.get("sort", "score"), tag=name)

    async def grid(request: Request, session: Session, *, query: str, sort: str, tag: str | None = None) -> Response:
        sort = sort if sort in SORTS else "score"
        number = _positive(request.query_params.get("page"), 1)
        offset = (number - 1) * config.page_size
        try:
            result = await run_in_threadpool(catalog.page, query, sort=sort, offset=offset, limit=config.page_size)
        except QueryError as exc:
            return render(request, "gallery.html", session, status=400, error=str(exc), query=query, page=None,
                          sort=sort, tag=tag, number=number, pages=0, path=request.url.path)
        pages = max(1, -(-result.total // config.page_size))
        return render(request, "gallery.html", session, error=None, query=query, page=result, sort=sort, tag=tag,
                      number=number, pages=pages, path=request.url.path, size=config.thumbnail_px)

    async def photo(request: Request, session: Session) -> Response:
        photo_id = int(request.path_params["photo_id"])
        record = await run_in_threadpool(catalog.photo, photo_id)
        if record is None:
            return PlainTextResponse("no such photo", status_code=404)
        similar = await run_in_threadpool(catalog.similar, record)
        order = {s: i for i, s in enumerate(STATE_WORDS)}
        tags = sorted(record.tags, key=lambda t: (order.get(t.state, 9), -t.score, t.name))
        return render(request, "photo.html", session, record=record, photo_id=photo_id, tags=tags, similar=similar,
                      hash=(record.content_hash or "")[:12])

    async def tags(request: Request, session: Session) -> Response:
        counts = await run_in_threadpool(catalog.tag_counts)
        return render(request, "tags.html", session, counts=counts)

    async def stats(request: Request, session: Session) -> Response:
        data = await run_in_threadpool(catalog.stats)
        return render(request, "stats.html", session, stats=data, bundle=config.bundle,
                      most=max((n for _, n in data["per_day"]), default=0) or 1)

    # -- images -----------------------------------------------------------------------------------

    async def image(request: Request, session: Session) -> Response:
        px = config.thumbnail_px if request.url.path.startswith("/thumb/") else PREVIEW_PX
        # A gallery page asks for 120 of these at once. The id lookup (one indexed row, a
        # realpath) and a cached thumbnail (tens of kB in the page cache) are read right here:
        # two thread hops per image would cost more than the work. Making one goes to a thread.
        found = catalog.file(int(request.path_params["photo_id"]))
        if found is None or not found[1]:
            return PlainTextResponse("no such photo", status_code=404)
        path, content_hash = found
        headers = {"Cache-Control": "private, max-age=31536000, immutable"}
        if px == config.thumbnail_px:
            try:
                return Response(config.thumbnails.path_for(content_hash, px).read_bytes(), media_type="image/jpeg",
                                headers=headers)
            except (FileNotFoundError, ValueError):
                pass
        try:
            cached = await run_in_threadpool(config.thumbnails.get, path, content_hash, px)
        except ReadError as exc:
            return PlainTextResponse(f"cannot show this photo: {exc.reason}", status_code=422)
        except OSError as exc:
            return PlainTextResponse(f"cannot show this photo: {exc.strerror or exc}", status_code=500)
        return FileResponse(cached, media_type="image/jpeg", headers=headers)

    # -- changes ----------------------------------------------------------------------------------

    async def review(request: Request, session: Session, form: Any) -> Response:
        verdict = form.get("verdict")
        tag = str(form.get("tag") or "").strip()
        ids = [int(i) for i in form.getlist("ids") if str(i).isdigit()]
        if verdict not in ("accept", "reject", "add") or not tag or not ids:
            session.flash.append("choose photos, a tag, and what to do with it")
            return back(form)
        paths = await run_in_threadpool(catalog.ids, ids)
        if not paths:
            return PlainTextResponse("no such photo", status_code=404)
        done = await run_in_threadpool(writes.run, lambda r: r.verdict(paths, tag, "reject" if verdict == "reject" else "accept"))
        if verdict == "add":
            done.description = f"added {tag}"
        remember(session, done)
        return back(form)

    async def rename(request: Request, session: Session, form: Any) -> Response:
        old, new = str(form.get("old") or "").strip(), str(form.get("new") or "").strip()
        if not old or not new or old == new:
            session.flash.append("give the tag a new name")
            return back(form)

        def run(r: Any) -> Any:
            return r.rename(old, new, [p for p in r.photos_with(old) if catalog.servable(p)])

        done = await run_in_threadpool(writes.run, run)
        remember(session, done)
        return RedirectResponse(f"/tag?name={quote(new)}", status_code=303)

    async def undo(request: Request, session: Session, form: Any) -> Response:
        if not session.undo:
            session.flash.append("nothing to undo")
            return back(form)
        last = session.undo.pop()
        done = await run_in_threadpool(writes.run, lambda r: r.undo(last))
        tell(session, done)
        return back(form)

    def remember(session: Session, done: Any) -> None:
        tell(session, done)
        if done.changed:
            session.undo.append(done)
            del session.undo[:-UNDO_DEPTH]

    def tell(session: Session, done: Any) -> None:
        n = len(done.changed)
        said = f"{done.description[0].upper()}{done.description[1:]}"
        if n:
            session.flash.append(f"{said} on {n} photo{'s' if n != 1 else ''}.")
        elif not done.failed:
            session.flash.append(f"{said}: no photo had it, nothing changed.")
        for path, reason in done.failed[:5]:
            session.flash.append(f"{path.name}: {reason}")
        if len(done.failed) > 5:
            session.flash.append(f"... and {len(done.failed) - 5} more photos not changed")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(writes.close)
        catalog.close()

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", action(logout), methods=["POST"]),
        Route("/", page(gallery)),
        Route("/search", page(search)),
        Route("/tag", page(tag_page)),
        Route("/tags", page(tags)),
        Route("/stats", page(stats)),
        Route("/photo/{photo_id:int}", page(photo)),
        Route("/thumb/{photo_id:int}", asset(image)),
        Route("/preview/{photo_id:int}", asset(image)),
        Route("/review", action(review), methods=["POST"]),
        Route("/rename", action(rename), methods=["POST"]),
        Route("/undo", action(undo), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.catalog = catalog
    return app


def back(form: Any) -> Response:
    return RedirectResponse(_local(form.get("next")), status_code=303)


def _local(target: Any) -> str:
    """A redirect target on this site only: a path, never `//host` or `scheme:`."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _positive(text: str | None, default: int) -> int:
    try:
        return max(1, int(text or default))
    except ValueError:
        return default
