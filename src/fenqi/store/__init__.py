"""The storage adapter: SQLAlchemy 2 models and Alembic migrations, SQLite by default and
PostgreSQL in production (docs/design.md#growing-past-one-machine).

Servicing tables carry ``loan_id`` in their primary key so one loan's rows live together on one
shard; the ledger's balance rule is checked in the domain and enforced again by PostgreSQL.
"""
