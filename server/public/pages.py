"""The H5 pages, served from static/h5/: the resident's (/h5/) and the shop assistant's
(/h5/staff). Plain HTML and modules on the same API as the mini-program, no build step. And the
host's own front door: a landing page at / that says where each of them is, and the icon."""

from __future__ import annotations

from flask import current_app, render_template, send_from_directory

from ..campaign.snapshot import active_campaigns
from . import bp


def _page(name: str, folder: str = "h5"):
    response = send_from_directory(current_app.static_folder + "/" + folder, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"  # a new release reaches phones on their next visit
    return response


@bp.get("/")
def home():
    """Where everything is: the residents' and the assistants' pages, the console, each active
    campaign's public page, the API's documentation."""
    return render_template("public/home.html", campaigns=active_campaigns())


@bp.get("/favicon.ico")
def favicon():
    return send_from_directory(current_app.static_folder, "favicon.ico", max_age=86400)


@bp.get("/h5/")
def resident_page():
    return _page("index.html")


@bp.get("/h5/staff")
def staff_page():
    return _page("staff.html")


@bp.get("/api/v1/docs")
def api_docs():
    """The API's interactive documentation: Swagger UI from static/vendor/ (no CDN: it works
    offline and in China), under the pages' content security policy."""
    return _page("index.html", "api-docs")
