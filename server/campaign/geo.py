"""Is a reported location inside a campaign's geofence (circle or polygon)?"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine), good to metres at county scale."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def _in_polygon(lat: float, lng: float, points: list[list[float]]) -> bool:
    """Even-odd ray casting on [lat, lng] vertices; a county is small enough to treat as flat."""
    inside = False
    j = len(points) - 1
    for i in range(len(points)):
        yi, xi = points[i]
        yj, xj = points[j]
        if (yi > lat) != (yj > lat) and lng < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def contains(fence: dict, lat: float, lng: float) -> bool:
    if fence["kind"] == "circle":
        return distance_m(fence["lat"], fence["lng"], lat, lng) <= fence["radius_m"]
    return _in_polygon(lat, lng, fence["points"])
