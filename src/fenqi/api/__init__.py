"""The HTTP service (FastAPI): JSON API, borrower page, operator console."""
