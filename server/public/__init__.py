"""The pages that need no sign-in: the H5 pages' shells (pages.py) and each campaign's public page
(campaign.py), on one blueprint; and the development adapters' API routes (dev.py)."""

from ..core.api import PageBlueprint
from ..core.errors import page_errors

# Templates live in this package's folder (public/templates/public/).
bp = PageBlueprint("public", __name__, template_folder="templates")

from . import campaign, operations, pages  # noqa: E402,F401  (routes register on bp)  # isort: skip

page_errors("/public", campaign.missing)
page_errors("/h5", campaign.missing)
