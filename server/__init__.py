"""Huigou (惠购): a government consumer-coupon campaign, end to end.

The house, from the ground up (imports only go down this list):

    core/       the database, the commit point, refusals, time, money, signing
    pool/       coupons and their guarantees, the ledger, rounds, hourly figures, chain, jobs
    campaign/   a plan: its rules, snapshot, files, enrolment, advisor, survey, results
    adapters/   outside services: SMS, WeChat
    auth/       what signs and what limits: tokens, pay codes, screen passes, limits, accounts
    draw/ merchant/ admin/ public/   the surfaces: resident API, till API, console, public pages
    cli/        operator commands
"""

from __future__ import annotations

import functools
from pathlib import Path

from apiflask import APIFlask
from dotenv import load_dotenv


def create_app(config: dict | None = None) -> APIFlask:
    """Build the app: settings, extensions, blueprints, error handlers, commands."""
    load_dotenv()
    app = APIFlask(
        __name__,
        title="Huigou API",
        version="1.0",
        spec_path="/api/v1/openapi.json",
        docs_path=None,  # served from static/vendor/ by server/public/pages.py, not from a CDN
        instance_relative_config=True,
        static_folder=str(Path(__file__).resolve().parent.parent / "static"),
    )
    configure(app, config)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    start_jobs(app)
    return app


def configure(app: APIFlask, config: dict | None) -> None:
    from . import config as settings
    from .core.api import RowId, complete_spec
    from .core.signing import SessionInterface

    settings.apply(app, config)
    app.session_interface = SessionInterface()
    app.url_map.converters["id"] = RowId
    app.json.ensure_ascii = False  # Chinese as UTF-8, not \u escapes
    app.json.sort_keys = False
    app.spec_processor(functools.partial(complete_spec, app))
    if app.config.get("PROXY_HOPS"):
        # Behind a load balancer: the client's address (rate limits, the audit log) is the one it
        # forwards, trusting exactly that many proxies.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


def register_extensions(app: APIFlask) -> None:
    from .adapters import sms, wechat
    from .admin import access
    from .auth import headers, limits
    from .core import db as database
    from .core import metrics, requestlog
    from .extensions import csrf, db, migrate

    requestlog.init_app(app)  # first: its hook starts the clock and names the request
    metrics.init_app(app)
    db.init_app(app)
    csrf.init_app(app)
    access.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    database.init_app(app)
    sms.init_app(app)
    limits.init_app(app)
    headers.init_app(app)
    wechat.init_app(app)


def register_blueprints(app: APIFlask) -> None:
    from .admin import api as admin_api
    from .admin import bp as admin_bp
    from .draw import bp as draw_bp
    from .extensions import csrf
    from .merchant import bp as merchant_bp
    from .public import bp as public_bp
    from .public import dev

    # The API authenticates with bearer tokens, not cookies: nothing there for CSRF to forge.
    for api in (draw_bp, merchant_bp, dev.bp):
        csrf.exempt(api)
    app.register_blueprint(draw_bp)
    app.register_blueprint(merchant_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(admin_api)
    app.register_blueprint(public_bp)
    if app.config["SMS_BACKEND"] == "outbox":
        app.register_blueprint(dev.bp)


def register_errorhandlers(app: APIFlask) -> None:
    from .core.errors import register_errorhandlers as register

    register(app)


def register_commands(app: APIFlask) -> None:
    from .cli import register

    register(app)


def start_jobs(app: APIFlask) -> None:
    """With SCHEDULER_IN_WEB, every worker runs the jobs too (one leads, behind the lock); a
    `flask ...` command (a backup's verify, a migration) is no web worker and starts none."""
    import click

    in_command = click.get_current_context(silent=True) is not None
    if app.config.get("SCHEDULER_IN_WEB") and not app.config.get("TESTING") and not in_command:
        from .pool.jobs import start_in_web

        start_in_web(app)
