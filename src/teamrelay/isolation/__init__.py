"""Per-key isolation of files and other objects: ownership records, checks, filtered lists."""

from teamrelay.isolation.guard import Isolation, not_found
from teamrelay.isolation.owned import ID_PREFIXES, OwnedOperations, Scope, is_owned_id
from teamrelay.isolation.owners import Owners
from teamrelay.isolation.references import referenced_ids

__all__ = [
    "ID_PREFIXES",
    "Isolation",
    "OwnedOperations",
    "Owners",
    "Scope",
    "is_owned_id",
    "not_found",
    "referenced_ids",
]
