"""The bureau's console: sign-in, dashboard, merchants, audit log (HTML, Simplified Chinese)."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")
# The console's JSON, signed in with the console's session (not part of the mini-program's API).
api = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")

from . import views  # noqa: E402,F401  (routes register on bp)

from . import advisor_views  # noqa: E402,F401  # isort: skip
from . import screen_views  # noqa: E402,F401  # isort: skip
from . import subsidy_views  # noqa: E402,F401  # isort: skip
