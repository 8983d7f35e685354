"""`codegemma learn`: the practice web app (FastAPI, the server's ASGI stack): exercise list, exercise page with
an editor, Run / Hint / Explain / Fix in Python and BabelCode's languages, and the learner's progress.

Pages are static HTML and JavaScript shipped in static/ that talk to the JSON API below; syntax highlighting
is Pygments' on the server (POST /api/highlight), so nothing is fetched from the network at run time. One
model call runs at a time (a lock); grading runs in the sandbox and needs no model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..errors import CodeGemmaError
from .exercises import Exercise, ExerciseError, custom, shipped
from .fixing import BY_NAME, FixError, fix
from .grading import grade
from .hints import TooLong, hint, stream_explanation
from .languages import LANGUAGES, LanguageError, calls, grade_in, missing_toolchain, offered, question, starter
from .progress import Progress

STATIC = Path(__file__).with_name("static")
MAX_CODE = 100_000  # characters of code in one request


class CodeIn(BaseModel):
    code: str = Field(max_length=MAX_CODE)
    seconds: float = Field(default=0.0, ge=0.0)  # time spent since the page opened or the last run
    language: str = "python"  # one of languages.LANGUAGES


class SourceIn(BaseModel):
    code: str = Field(max_length=MAX_CODE)
    language: str = "python"


class ExerciseIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    statement: str = Field(min_length=1, max_length=20_000)
    tests: str = Field(min_length=1, max_length=MAX_CODE)
    starter: str = Field(default="", max_length=MAX_CODE)
    reference: str = Field(default="", max_length=MAX_CODE)


class Catalog:
    """The shipped exercises plus the learner's own (kept in the progress database)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.shipped = {e.id: e for e in shipped()}

    def all(self) -> list[Exercise]:
        return list(self.shipped.values()) + self._custom()

    def _custom(self) -> list[Exercise]:
        return [custom(r["id"], r["title"], r["statement"], r["tests"], r["starter"], r["reference"])
                for r in self.progress.exercises()]

    def get(self, exercise_id: str) -> Exercise:
        found = self.shipped.get(exercise_id) or next((e for e in self._custom() if e.id == exercise_id), None)
        if found is None:
            raise HTTPException(404, f"no exercise {exercise_id!r}")
        return found

    def add(self, body: ExerciseIn) -> Exercise:
        draft = custom(0, body.title, body.statement, body.tests, body.starter, body.reference)  # refuses bad input
        if body.reference.strip():
            failing = grade(draft, body.reference).first_failure()
            if failing is not None:
                raise ExerciseError(f"the reference solution does not pass `{failing.code}` ({failing.status})")
        number = self.progress.add_exercise(body.title, body.statement, body.tests, body.starter, body.reference)
        return self.get(f"custom-{number}")


def create_app(model, progress: Progress, *, model_name: str | None = None) -> FastAPI:
    """The app over `model` (a CodeGemma, or anything with `.chat`, `.stream_chat` and `.name`)."""
    app = FastAPI(title="codegemma learn", docs_url=None, redoc_url=None)
    app.state.catalog, app.state.progress, app.state.model = Catalog(progress), progress, model
    app.state.model_name = model_name or getattr(model, "name", "") or "model"
    app.state.lock = threading.Lock()

    @app.exception_handler(HTTPException)
    async def http_error(_, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    _pages(app)
    _exercise_routes(app)
    _model_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")  # after /static/pygments.css
    return app


def _pages(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/exercise/{exercise_id}", include_in_schema=False)
    def page(exercise_id: str) -> FileResponse:
        app.state.catalog.get(exercise_id)
        return FileResponse(STATIC / "exercise.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/info")
    def info() -> dict:
        return {"model": app.state.model_name, "languages": sorted(BY_NAME),
                "exercise_languages": [_language(lang) for lang in LANGUAGES]}

    @app.post("/api/highlight")
    def highlight(body: SourceIn) -> dict:
        return {"html": _highlight(body.code, body.language)}

    @app.get("/static/pygments.css", include_in_schema=False)
    def pygments_css() -> PlainTextResponse:
        from pygments.formatters import HtmlFormatter

        return PlainTextResponse(HtmlFormatter(style="default").get_style_defs(".hl"), media_type="text/css")


def _exercise_routes(app: FastAPI) -> None:
    catalog: Catalog = app.state.catalog
    progress: Progress = app.state.progress

    @app.get("/api/exercises")
    def exercises() -> dict:
        done = progress.summary()
        return {"exercises": [{**e.summary(), "languages": offered(e.id), "progress": done.get(e.id)}
                              for e in catalog.all()]}

    @app.post("/api/exercises", status_code=201)
    def add(body: ExerciseIn) -> dict:
        try:
            return catalog.add(body).public()
        except ExerciseError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.get("/api/exercises/{exercise_id}")
    def exercise(exercise_id: str, language: str = "python") -> dict:
        """The exercise, and in `language`: its starting code, its tests, the learner's progress and last code."""
        e = catalog.get(exercise_id)
        _offered(e, language)
        return {**e.public(), "languages": [_language(lang) for lang in offered(e.id)],
                "language": {**_language(language), "starter": starter(e, language),
                             "tests": [list(t) for t in calls(e, language)]},
                "progress": progress.summary(language).get(e.id), "overall": progress.summary().get(e.id),
                "last_code": progress.last_code(e.id, language)}

    @app.post("/api/exercises/{exercise_id}/run")
    def run(exercise_id: str, body: CodeIn) -> dict:
        e = catalog.get(exercise_id)
        _offered(e, body.language)
        try:
            report = grade_in(e, body.language, body.code)
        except CodeGemmaError as exc:  # a toolchain that is missing here
            raise HTTPException(409, str(exc)) from exc
        progress.record_attempt(e.id, body.code, report.passed, report.n_passed, len(report.tests), body.seconds,
                                body.language)
        return {**report.to_dict(), "progress": progress.summary(body.language).get(e.id)}

    @app.get("/api/progress")
    def summary() -> dict:
        return progress.summary()

    @app.get("/api/export")
    def export() -> StreamingResponse:
        return StreamingResponse(progress.export(), media_type="application/x-ndjson",
                                 headers={"Content-Disposition": "attachment; filename=progress.jsonl"})


def _model_routes(app: FastAPI) -> None:
    catalog: Catalog = app.state.catalog
    progress: Progress = app.state.progress

    @app.post("/api/exercises/{exercise_id}/hint")
    def get_hint(exercise_id: str, body: CodeIn) -> dict:
        e = catalog.get(exercise_id)
        _offered(e, body.language)
        try:
            with app.state.lock:
                h = hint(app.state.model, e, body.code, language=body.language)
        except CodeGemmaError as exc:  # a toolchain that is missing here
            raise HTTPException(409, str(exc)) from exc
        progress.record_hint(e.id, body.code, h.text, h.withheld, app.state.model_name, body.language)
        return {"hint": h.text, "withheld": h.withheld, "tries": h.tries, "spoilers": h.spoilers, "source": h.source,
                "model": app.state.model_name, "progress": progress.summary(body.language).get(e.id)}

    @app.post("/api/explain")
    def explain(body: SourceIn) -> StreamingResponse:
        if not body.code.strip():
            raise HTTPException(400, "nothing to explain: the code is empty")
        try:
            chunks = stream_explanation(app.state.model, body.code, body.language)
        except TooLong as exc:
            raise HTTPException(413, str(exc)) from exc
        return StreamingResponse(_locked(app.state.lock, chunks), media_type="text/plain; charset=utf-8")

    @app.post("/api/fix")
    def fix_code(body: SourceIn) -> dict:
        try:
            ext = next((ext for _, _, parser, ext in LANGUAGES.values() if parser == body.language), "txt")
            with app.state.lock:
                return fix(body.code, body.language, app.state.model, name=f"solution.{ext}").to_dict()
        except FixError as exc:
            raise HTTPException(400, str(exc)) from exc


def _language(language: str) -> dict:
    """How the page names, highlights and parses `language`, and whether it can run here."""
    name, lexer, parser, ext = LANGUAGES[language]
    install = missing_toolchain(language)
    return {"id": language, "name": name, "highlight": lexer, "parser": parser, "extension": ext,
            "available": install is None, "install": install}


def _offered(exercise: Exercise, language: str) -> None:
    try:
        question(exercise, language)
    except LanguageError as exc:
        raise HTTPException(400, str(exc)) from exc


def _locked(lock: threading.Lock, chunks: Iterator[str]) -> Iterator[str]:
    with lock:
        yield from chunks


def _highlight(code: str, language: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name({"c_sharp": "csharp"}.get(language, language), stripnl=False, ensurenl=False)
    except ClassNotFound as exc:
        raise HTTPException(400, f"no highlighter for {language!r}") from exc
    return highlight(code, lexer, HtmlFormatter(nowrap=True))
