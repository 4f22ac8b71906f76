"""The HTTP layer: routers and the typed dependencies they declare (deps)."""
