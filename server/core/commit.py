"""The one commit point.

A request (an API view or a console page), a CLI command or a job commits once, when its work
returns, and rolls back on any exception (`commits`); services change and flush, never commit.
A refusal marked `keep_changes` is the exception that proves the rule: what it wrote is its own
record (a wrong SMS code counted, a refused redemption logged) and is committed with it.
"""

from __future__ import annotations

import functools

from ..extensions import db
from .db import rollback_quietly
from .errors import Refusal


def commits(work):
    """Commit once when `work` returns; roll back on any exception, keeping what a refusal marked
    `keep_changes` records about itself. For API views, console pages, commands and jobs."""

    @functools.wraps(work)
    def run(*args, **kwargs):
        try:
            result = work(*args, **kwargs)
        except Refusal as refused:
            if refused.keep_changes:
                db.session.commit()
            else:
                db.session.rollback()
            raise
        except BaseException:
            rollback_quietly()
            raise
        db.session.commit()
        return result

    return run
