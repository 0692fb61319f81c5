"""The merchant API: enrolment, staff binding, the till (scan, redeem, revoke, refund), the
merchant's own redemptions and settlement."""

from ..core.api import ApiBlueprint

bp = ApiBlueprint("merchant", __name__, url_prefix="/api/v1/merchant", tag="Merchant")

from . import views  # noqa: E402,F401  (routes register on bp)
