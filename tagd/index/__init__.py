"""The local tag index: SQLite storage (db), the query language (query), similar photos (similar),
and the `search`/`show`/`similar`/`stats` commands (commands). Importing it does not import numpy."""

from tagd.index.db import Index, IndexedTag, PhotoRecord
from tagd.index.search import SearchHit
from tagd.index.errors import QueryError

__all__ = ["Index", "IndexedTag", "PhotoRecord", "SearchHit", "QueryError"]
