"""The resident API: login and binding, the campaign, the wheel and grabs, my coupons, pay codes,
the wallet, purchase subsidies and the survey."""

from ..core.api import ApiBlueprint

bp = ApiBlueprint("draw", __name__, url_prefix="/api/v1", tag="Resident")

from . import views  # noqa: E402,F401  (routes register on bp)
