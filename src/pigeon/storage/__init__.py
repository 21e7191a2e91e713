"""SQL storage (SQLAlchemy Core): the only package that contains queries."""
