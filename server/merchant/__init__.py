"""The merchant API: enrolment now; staff, redemption and settlement build on it."""

from apiflask import APIBlueprint

bp = APIBlueprint("merchant", __name__, url_prefix="/api/v1/merchant", tag="Merchant")

from . import views  # noqa: E402,F401  (routes register on bp)
