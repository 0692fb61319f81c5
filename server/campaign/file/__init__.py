"""A campaign described in a file (JSON, or XLSX laid out like annex 1 of the Qian'an plan).

`read()` turns either format into one document; `check()` lists every inconsistency with its
place (a JSON path, or a sheet and cell); `create()` builds the campaign from a document that
checks clean. Messages are Chinese: the bureau reads them, in the console as on the command line.
"""

from .check import NO_DATABASE, Plan, Problem, check, existing_codes
from .create import create
from .read import CampaignFileError, Document, read

__all__ = [
    "NO_DATABASE",
    "CampaignFileError",
    "Document",
    "Plan",
    "Problem",
    "check",
    "create",
    "existing_codes",
    "read",
]
