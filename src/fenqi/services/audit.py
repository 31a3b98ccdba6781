"""Reading the audit log: who did what, when, to what, why, and what it was before and after."""

from __future__ import annotations

from fenqi.loans.ports import AuditEntry, UnitOfWork
from fenqi.services.context import Context, caller, transact
from fenqi.services.errors import plain_text
from fenqi.services.policy import Permission, require


def audit_log(context: Context, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The latest entries, newest first; only those about ``target`` if given (``loan:12``
    exactly, or a beginning: ``loan:``, ``user:wa``): to admins."""
    if target is not None:
        plain_text("the target", target)

    def read(unit: UnitOfWork) -> list[AuditEntry]:
        require(caller(context, unit), Permission.ADMINISTER)
        return unit.audit_entries(target, limit)

    return transact(context, read)
