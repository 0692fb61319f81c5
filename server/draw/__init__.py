"""The resident API: binding, the campaign, the wheel, my coupons."""

from apiflask import APIBlueprint

bp = APIBlueprint("draw", __name__, url_prefix="/api/v1", tag="Resident")

from . import views  # noqa: E402,F401  (routes register on bp)
