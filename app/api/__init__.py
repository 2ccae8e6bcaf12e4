"""The HTTP edge: routers that parse, call a service function and return a schema."""
