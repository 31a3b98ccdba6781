"""Reading the audit log: who did what, when, to what, why, and what it was before and after."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fenqi import wire
from fenqi.services.context import Context, Document, run
from fenqi.services.errors import plain_text
from fenqi.store.schema import AuditLogRow


def audit_log(context: Context, target: str | None = None, limit: int = 100) -> list[Document]:
    """The latest entries, newest first; only those about ``target`` (``loan:12``) if given."""
    if target is not None:
        plain_text("the target", target)

    def read(session: Session) -> list[Document]:
        query = select(AuditLogRow).order_by(AuditLogRow.id.desc()).limit(limit)
        if target is not None:
            query = query.where(AuditLogRow.target == target)
        return [wire.audit_entry(row) for row in session.scalars(query)]

    return run(context, read)
