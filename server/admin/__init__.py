"""The bureau's console: sign-in, dashboard, merchants, audit log (HTML, Simplified Chinese)."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")

from . import views  # noqa: E402,F401  (routes register on bp)
