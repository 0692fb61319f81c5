"""The pages that need no sign-in: the H5 pages' shells (pages.py), each campaign's public page
(campaign.py), and the development adapters' routes (dev.py)."""

from ..core.errors import page_errors
from .campaign import bp, missing

__all__ = ["bp"]

page_errors("/public", missing)
page_errors("/h5", missing)
