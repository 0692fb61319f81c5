"""Every console list costs the same number of statements whatever its page size: a page never
reads a row at a time (an N+1 would make a page of 50 cost 50 queries more than a page of 2)."""

from __future__ import annotations

from datetime import date

import pytest

from server.admin import console as pages
from server.extensions import db
from server.models import SubsidyApplication

LISTS = (
    "/admin/lists/claims",
    "/admin/lists/redemptions",
    "/admin/lists/residents",
    "/admin/merchants",
    "/admin/audit",
    "/admin/subsidies?status=",
    "/admin/settlement",
    "/admin/coupons",
    "/admin/",
)


@pytest.fixture
def rows(app, redemptions, make_till, make_resident):
    """More than two rows of every list: the redemptions' own, four more merchants, three subsidy
    applications, and sign-ins in the audit log."""
    for category in ("hotel", "fuel", "hotel", "fuel"):
        make_till(category)
    with app.app_context():
        for n in range(3):
            resident_id, _ = make_resident()
            db.session.add(
                SubsidyApplication(
                    campaign_id=1, resident_id=resident_id, vehicle_kind="fuel", vehicle_class="car",
                    invoice_no=f"2614000000001234000{n}", invoice_fen=15_000_000, vin=f"LGXC16DF9P000000{n}",
                    plate=f"晋E0000{n}", registered_on=date(2026, 6, 25), image=b"x", image_type="png",
                    subsidy_fen=300_000,
                )
            )  # fmt: skip
        db.session.commit()


@pytest.mark.parametrize("path", LISTS)
def test_a_console_page_costs_the_same_whatever_its_page_size(console, rows, count_queries, monkeypatch, path):
    client = console("admin")
    for role in ("auditor", "operator"):  # more rows in the audit log: the sign-ins
        console(role)
    assert client.get(path).status_code == 200  # connections and caches warm
    counts = {}
    for size in (2, 50):
        monkeypatch.setattr(pages, "PER_PAGE", size)
        with count_queries() as count:
            answer = client.get(path)
        assert answer.status_code == 200
        counts[size] = count()
    assert counts[2] == counts[50], counts
