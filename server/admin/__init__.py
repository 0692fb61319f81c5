"""The bureau's console: HTML pages in Simplified Chinese, one module per resource.

Every page loads its arguments (404), checks the role (403), calls an operation that flushes, and
the blueprint commits once (core.api.PageBlueprint). A refusal becomes a flash on the page the
action came from (console.py).
"""

from ..core.api import PageBlueprint

bp = PageBlueprint("admin", __name__, url_prefix="/admin", template_folder="templates")
# The console's JSON, signed in with the console's session (not part of the mini-program's API).
api = PageBlueprint("admin_api", __name__, url_prefix="/api/v1/admin")

from . import (  # noqa: E402,F401  (routes register on bp)  # isort: skip
    console,
    signin,
    dashboard,
    reports,
    coupons,
    lists,
    settlement,
    batches,
    merchants,
    campaigns,
    rounds,
    subsidies,
    screen,
    risk,
    survey,
    audit,
    accounts,
)
