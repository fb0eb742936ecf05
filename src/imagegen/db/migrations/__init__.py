"""Alembic migrations of imagegen's database, shipped in the package (``imagegen.db.migrate``)."""
