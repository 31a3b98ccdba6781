"""The batch's write-off decision: on the day it runs, once the loan's DPD has reached the
product's write-off DPD, dated that day however far past it the DPD is (after a correction that
reached back), and never for a loan that is closed."""

from datetime import date

from fenqi.domain.collection import write_off_due
from fenqi.domain.events import Channel, Payment, WriteOff
from fenqi.domain.loan import replay
from fenqi.domain.money import Money
from fenqi.domain.products import parse_catalog
from tests.unit.test_loan import CASH, LOAN  # 10,000.00 at 12%, first due 2026-02-15

SOONER = parse_catalog('[[product]]\ncode = "s"\nperiods = [12]\nwrite_off_dpd = 90')["s"]


def test_the_batch_writes_off_on_the_day_the_dpd_reaches_the_write_off_dpd() -> None:
    assert write_off_due(replay(LOAN, CASH, [], date(2026, 8, 13)), CASH, 1) is None  # 179
    due = write_off_due(replay(LOAN, CASH, [], date(2026, 8, 14)), CASH, 1)
    assert due == WriteOff(1, date(2026, 8, 14), "180 days past due (write-off at 180)")
    assert write_off_due(replay(LOAN, SOONER, [], date(2026, 5, 16)), SOONER, 7) is not None


def test_a_batch_that_finds_the_loan_past_it_writes_off_that_day_not_in_the_past() -> None:
    late = write_off_due(replay(LOAN, CASH, [], date(2026, 12, 1)), CASH, 3)
    assert late == WriteOff(3, date(2026, 12, 1), "289 days past due (write-off at 180)")


def test_a_closed_loan_is_never_written_off() -> None:
    written = replay(LOAN, CASH, [WriteOff(1, date(2026, 8, 14), "")], date(2026, 12, 1))
    assert write_off_due(written, CASH, 2) is None  # once only
    paid_off = Payment(1, date(2026, 2, 15), Money.parse("20000"), Channel.MANUAL)
    assert write_off_due(replay(LOAN, CASH, [paid_off], date(2027, 6, 1)), CASH, 2) is None
