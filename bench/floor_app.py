"""The floors of a draw and a redemption: minimal Flask endpoints doing one raw-SQL update and insert.

Served by the same gunicorn settings as Huigou in bench/draw_burst.py, so the two are compared
on one machine in one run. It checks nothing and returns almost nothing; no real draw can be
faster. Stock is spread over 16 rows, as in SPEC section 7.
"""

from __future__ import annotations

import os
import random
import threading

import psycopg
from flask import Flask, jsonify, request

SETUP = """
DROP TABLE IF EXISTS floor_claims;
DROP TABLE IF EXISTS floor_stock;
CREATE TABLE floor_stock (id int PRIMARY KEY, remaining int NOT NULL CHECK (remaining >= 0));
CREATE TABLE floor_claims (id bigserial PRIMARY KEY, stock_id int NOT NULL, resident text NOT NULL,
                           created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO floor_stock SELECT g, 1000000 FROM generate_series(1, 16) g;
DROP TABLE IF EXISTS floor_redemptions;
DROP TABLE IF EXISTS floor_coupons;
CREATE TABLE floor_coupons (id int PRIMARY KEY, state text NOT NULL, threshold_fen int NOT NULL);
CREATE TABLE floor_redemptions (id bigserial PRIMARY KEY, coupon_id int NOT NULL UNIQUE, spend_fen int NOT NULL,
                                created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO floor_coupons SELECT g, 'claimed', 30000 FROM generate_series(1, 200000) g;
"""


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)


def create_app() -> Flask:
    app = Flask(__name__)
    dsn = os.environ["FLOOR_DSN"]
    local = threading.local()

    def connection() -> psycopg.Connection:
        if getattr(local, "conn", None) is None or local.conn.closed:
            local.conn = psycopg.connect(dsn)
        return local.conn

    @app.post("/floor")
    def floor():
        resident = (request.get_json(silent=True) or {}).get("category", "")
        conn = connection()
        with conn.transaction():
            row = conn.execute(
                "UPDATE floor_stock SET remaining = remaining - 1 WHERE id = %s AND remaining > 0 RETURNING id",
                (random.randint(1, 16),),
            ).fetchone()
            if row is None:
                return jsonify(error="SOLD_OUT"), 409
            conn.execute("INSERT INTO floor_claims (stock_id, resident) VALUES (%s, %s)", (row[0], resident))
        return jsonify(ok=True)

    @app.post("/floor-redeem")
    def floor_redeem():
        """The floor of any redemption: spend one claimed coupon and record it, nothing checked."""
        body = request.get_json(silent=True) or {}
        conn = connection()
        with conn.transaction():
            row = conn.execute(
                "UPDATE floor_coupons SET state = 'used' WHERE id = %s AND state = 'claimed' RETURNING threshold_fen",
                (int(body.get("paycode", 0)),),
            ).fetchone()
            if row is None:
                return jsonify(error="COUPON_USED"), 409
            conn.execute(
                "INSERT INTO floor_redemptions (coupon_id, spend_fen) VALUES (%s, %s)",
                (int(body["paycode"]), int(body.get("spend_fen", 0))),
            )
        return jsonify(ok=True)

    return app
