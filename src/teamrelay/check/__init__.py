"""`teamrelay check`: the seed's live success gates against a running deployment."""

from teamrelay.check.command import check

__all__ = ["check"]
