"""Token scopes: the one list that the token store, the API's auth-off principal and the CLI agree on.

A module of its own, importing nothing, so that `hotpath token create --scope` can offer the choices
without loading the database layer that `server.auth` needs.
"""

from __future__ import annotations

SCOPES = ("ingest", "read", "admin")
