"""The satisfaction survey's answers (问卷调查), counted per option, without names."""

from __future__ import annotations

from flask import render_template

from ..campaign import survey
from . import bp
from .access import READ, role_required


@bp.get("/survey")
@role_required(*READ)
def survey_page():
    """The satisfaction survey's answers, counted per option (no names)."""
    total, tallies = survey.summary()
    return render_template("admin/survey.html", total=total, tallies=tallies)
