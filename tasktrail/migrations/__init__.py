"""The Alembic history of the schema, shipped inside the package so `serve` can migrate."""
