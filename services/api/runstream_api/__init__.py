"""The HTTP API: a Litestar app over runstream's client and read models."""
