"""The floor of any draw: a minimal Flask endpoint doing one raw-SQL stock decrement and insert.

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

    return app
