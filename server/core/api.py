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


def optional_bearer(view):
    """The view takes a bearer token when one is sent and works without one: its OpenAPI entry
    says so (complete_spec)."""
    view.optional_bearer = True
    return view


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def complete_spec(app: APIFlask, spec: dict) -> dict:
    """What the generated OpenAPI document leaves out: a JSON body an operation validates is
    required (a request without one is refused with 400, not taken as empty), a row id in a path
    is an integer the database can hold (RowId), an operation behind a bearer token answers a
    token of the other kind with 403, and one that takes a token optionally says so."""
    ids = {name for rule in app.url_map.iter_rules() for name in re.findall(r"<id:(\w+)>", rule.rule)}
    optional = {
        (method.lower(), _openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if getattr(app.view_functions.get(rule.endpoint), "optional_bearer", False)
        for method in rule.methods
    }
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            if operation.get("security"):
                operation.setdefault("responses", {}).setdefault(
                    "403", {"description": "A token of the other kind (resident or staff), or not allowed"}
                )
                if (method, path) in optional and {} not in operation["security"]:
                    operation["security"].append({})
            if operation.get("requestBody") is not None:
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") in ids:
                    parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    return spec
