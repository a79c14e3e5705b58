"""A demo world's rows copied out and back in: fixtures/world.py (the benchmarks use it too)."""

from fixtures.world import WORLD_TABLES, tables_clear, tables_dump, tables_restore

__all__ = ["WORLD_TABLES", "tables_clear", "tables_dump", "tables_restore"]
