"""A fault put into the database for tests of a batch that fails: a trigger that refuses to close
one loan, so the chunk holding it raises in whatever process does it (this one, a ``fenqi cob``
child, or a ``fenqi worker`` on PostgreSQL), until the fault is taken away."""

from datetime import date

from sqlalchemy import Engine, text

from fenqi.domain.money import Money
from fenqi.services import borrowers, servicing
from fenqi.services.close_of_business import MAX_ATTEMPTS
from fenqi.services.context import Context
from fenqi.wire import present

OPENED = date(2026, 1, 15)
REMINDED = date(2026, 2, 12)  # the first day the batch has work on them: the reminder
MESSAGE = "injected fault: the batch may not close this loan"

_SQLITE = """
CREATE TRIGGER refuse_to_close BEFORE UPDATE OF closed_through ON loans
WHEN NEW.id = {loan} BEGIN SELECT RAISE(ABORT, '{message}'); END
"""
_POSTGRESQL = (
    """
CREATE FUNCTION refuse_to_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep({seconds}); RAISE EXCEPTION '{message}'; END $$
""",
    """
CREATE TRIGGER refuse_to_close BEFORE UPDATE OF closed_through ON loans
FOR EACH ROW WHEN (NEW.id = {loan}) EXECUTE FUNCTION refuse_to_close()
""",
)


def tries(engine: Engine) -> int:
    """How often the batch tries the chunk the fault holds up: on SQLite a trigger's refusal is
    a broken constraint (an invariant, failed at once); on PostgreSQL the fault is a plain error
    raised by a function, tried as often as any other failure."""
    return 1 if engine.dialect.name == "sqlite" else MAX_ATTEMPTS


def failed_for_good(engine: Engine) -> str:
    """How a worker says the chunk the fault holds up failed for good."""
    return "once, an invariant broken" if tries(engine) == 1 else f"{MAX_ATTEMPTS} times"


def refuse_to_close(engine: Engine, loan: int, *, after_seconds: float = 0) -> None:
    """From now on, any transaction that closes a day for ``loan`` fails — on PostgreSQL after
    ``after_seconds``, as a statement that takes a while before it fails would."""
    statements = (_SQLITE,) if engine.dialect.name == "sqlite" else _POSTGRESQL
    assert not after_seconds or engine.dialect.name == "postgresql", "PostgreSQL sleeps only"
    with engine.begin() as connection:
        for statement in statements:
            said = statement.format(loan=int(loan), message=MESSAGE, seconds=float(after_seconds))
            connection.execute(text(said))


def allow_closing(engine: Engine) -> None:
    """The cause fixed: the trigger is gone."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER refuse_to_close"))
        else:
            connection.execute(text("DROP TRIGGER refuse_to_close ON loans"))
            connection.execute(text("DROP FUNCTION refuse_to_close()"))


def loans_with_work(shop: Context, count: int) -> list[int]:
    """``count`` cash loans of 6,000 opened on ``OPENED``, each borrower's own, on funded cards:
    the batch's first work on them is on ``REMINDED``."""
    loans = []
    for number in range(count):
        who = borrowers.create_borrower(shop, f"客户{number}", f"1350013{number:04d}",
                                        Money.parse("50000"))  # fmt: skip
        borrowers.bind_method(shop, who.id, "bank_card", f"62220200000{number:08d}",
                              sim_balance=Money.parse("20000"))  # fmt: skip
        order = servicing.Order(who.id, f"F-{number}", "京东", Money.parse("6000"), "cash", 12,
                                OPENED)  # fmt: skip
        loans.append(int(present(servicing.checkout(shop, order))["id"]))
    return loans
