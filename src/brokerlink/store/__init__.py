"""Layer 2: SQLAlchemy 2 async models, repositories and Alembic migrations (SQLite default, PostgreSQL by URL)."""
