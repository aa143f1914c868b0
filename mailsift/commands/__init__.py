"""CLI command modules: one per area, each with register(app)."""
