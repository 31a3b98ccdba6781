"""Reading the audit log: who did what, when, to what, why, and what it was before and after."""

from __future__ import annotations

from fenqi.loans.ports import AuditEntry
from fenqi.services.context import Context, transact
from fenqi.services.errors import plain_text


def audit_log(context: Context, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
    """The latest entries, newest first; only those about ``target`` (``loan:12``) if given."""
    if target is not None:
        plain_text("the target", target)
    return transact(context, lambda unit: unit.audit_entries(target, limit))
