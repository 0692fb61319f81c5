"""The plumbing every surface shares: blueprints whose views commit once, row ids in URLs, and
what the generated OpenAPI document leaves out."""

from __future__ import annotations

import re

from apiflask import APIBlueprint, APIFlask
from flask import Blueprint
from werkzeug.routing import IntegerConverter

from .commit import commits

BEARER = [{"BearerAuth": []}]


def error_responses(*statuses: int) -> dict:
    """The refusals a view may answer, for its OpenAPI entry."""
    return {status: "See the error envelope: `{error: {code, message}}`" for status in statuses}


class _Committing:
    """Every view of the blueprint runs inside the commit point (core.commit.commits)."""

    def add_url_rule(self, rule, endpoint=None, view_func=None, provide_automatic_options=None, **options):
        if view_func is not None and not isinstance(view_func, type):
            view_func = commits(view_func)
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options=provide_automatic_options, **options)


class ApiBlueprint(_Committing, APIBlueprint):
    """An API blueprint whose views commit once, or roll back."""


class PageBlueprint(_Committing, Blueprint):
    """A blueprint of pages whose views commit once, or roll back."""


class RowId(IntegerConverter):
    """A row's id in a URL: a positive integer the database can hold (a bigger one is a 404,
    not an overflow)."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=2**63 - 1)


def complete_spec(app: APIFlask, spec: dict) -> dict:
    """What the generated OpenAPI document leaves out: a JSON body an operation validates is
    required (a request without one is refused with 400, not taken as empty), and a row id in a
    path is an integer the database can hold (RowId)."""
    ids = {name for rule in app.url_map.iter_rules() for name in re.findall(r"<id:(\w+)>", rule.rule)}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if operation.get("requestBody") is not None:
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in ids:
                    parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    return spec
