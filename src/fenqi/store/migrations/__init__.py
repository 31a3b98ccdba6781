"""Alembic's environment and revisions for the fenqi schema (run by ``fenqi db init``)."""
