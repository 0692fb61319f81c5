"""Huigou (惠购): a government consumer-coupon campaign, end to end."""

from __future__ import annotations

import functools
import os
import re
import secrets
from pathlib import Path

from apiflask import APIFlask
from dotenv import load_dotenv
from werkzeug.routing import IntegerConverter


class RowId(IntegerConverter):
    """A row's id in a URL: a positive integer the database can hold (a bigger one is a 404,
    not an overflow)."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=2**63 - 1)


def create_app(config: dict | None = None) -> APIFlask:
    """Build the app: settings, extensions, blueprints, error handlers, commands."""
    load_dotenv()
    app = APIFlask(
        __name__,
        title="Huigou API",
        version="1.0",
        spec_path="/api/v1/openapi.json",
        docs_path="/api/v1/docs",
        instance_relative_config=True,
        static_folder=str(Path(__file__).resolve().parent.parent / "static"),
    )
    configure(app, config)
    app.url_map.converters["id"] = RowId
    app.json.ensure_ascii = False  # Chinese as UTF-8, not \u escapes
    app.json.sort_keys = False
    if app.config.get("PROXY_HOPS"):
        # Behind a load balancer: the client's address (rate limits, the audit log) is the one it
        # forwards, trusting exactly that many proxies.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    app.spec_processor(functools.partial(_complete_spec, app))
    if app.config.get("SCHEDULER_IN_WEB") and not app.config.get("TESTING"):
        from .scheduler import start_in_web

        start_in_web(app)
    return app


def configure(app: APIFlask, config: dict | None) -> None:
    from . import config as settings
    from .schemas import ErrorOut

    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(settings.DEFAULTS)
    app.config.update(settings.from_environment(app.instance_path))
    app.config["HTTP_ERROR_SCHEMA"] = ErrorOut
    app.config["VALIDATION_ERROR_SCHEMA"] = ErrorOut
    if config:
        app.config.update(config)
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path))
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("postgresql://"):
        # psycopg 3 is the driver; accept the plain URL people write.
        app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + uri.removeprefix("postgresql://")


def _complete_spec(app: APIFlask, spec: dict) -> dict:
    """What the generated OpenAPI document leaves out: a JSON body an operation validates is
    required (a request without one is refused with 400, not taken as empty), and a row id in a
    path is an integer the database can hold (RowId)."""
    ids = {name for rule in app.url_map.iter_rules() for name in re.findall(r"<id:(\w+)>", rule.rule)}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if operation.get("requestBody") is not None:
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in ids:
                    parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    return spec


def _instance_secret(instance: Path) -> str:
    """A random key kept in instance/ when SECRET_KEY is not set (development)."""
    path = instance / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def register_extensions(app: APIFlask) -> None:
    from . import database, limits, security, sms, wechat
    from .admin import access
    from .extensions import csrf, db, migrate

    db.init_app(app)
    csrf.init_app(app)
    access.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    database.init_app(app)
    sms.init_app(app)
    limits.init_app(app)
    security.init_app(app)
    wechat.init_app(app)


def register_blueprints(app: APIFlask) -> None:
    from . import devtools
    from .admin import api as admin_api
    from .admin import bp as admin_bp
    from .draw import bp as draw_bp
    from .extensions import csrf
    from .merchant import bp as merchant_bp
    from .pages import bp as pages_bp
    from .publication import bp as public_bp

    # The API authenticates with bearer tokens, not cookies: nothing there for CSRF to forge.
    for api in (draw_bp, merchant_bp, devtools.bp):
        csrf.exempt(api)
    app.register_blueprint(draw_bp)
    app.register_blueprint(merchant_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(admin_api)
    app.register_blueprint(pages_bp)
    app.register_blueprint(public_bp)
    if app.config["SMS_BACKEND"] == "outbox":
        app.register_blueprint(devtools.bp)


def register_errorhandlers(app: APIFlask) -> None:
    from .errors import register_errorhandlers as register

    register(app)


def register_commands(app: APIFlask) -> None:
    from .cli import register

    register(app)
