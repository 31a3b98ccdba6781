"""Whatever happens to a loan, in whatever order: the books balance, nothing is paid beyond what
is owed, money is neither made nor lost, and the parts still sum to the principal."""

import dataclasses
import json
from datetime import date, timedelta
from fractions import Fraction

from hypothesis import assume, example, given, note, settings
from hypothesis import strategies as st

from fenqi.domain.events import (
    Channel,
    CreditRefund,
    Event,
    Payment,
    Prepayment,
    PrepayMode,
    Refund,
    Reversal,
    Waiver,
    WaiverKind,
    WriteOff,
)
from fenqi.domain.ledger import RECEIVABLES, balances
from fenqi.domain.loan import (
    Checkpoint,
    InstallmentStatus,
    LoanState,
    LoanStatus,
    Payer,
    paying_back,
    payoff_on,
    replay,
    replay_to_checkpoint,
    resumable,
)
from fenqi.domain.money import Money
from fenqi.domain.products import (
    LateFee,
    Penalty,
    PenaltyMode,
    PrepaymentInterest,
    Product,
    UnbilledFees,
)
from fenqi.domain.schedule import Method, Terms
from fenqi.wire import loan_installment
from tests.plans import any_terms
from tests.plans import plan as plan_terms


@st.composite
def policies(draw: st.DrawFn, terms: Terms) -> Product:
    return Product(
        code="p",
        name="any",
        method=terms.method,
        periods=(terms.periods,),
        grace_days=draw(st.integers(0, 5)),
        penalty=Penalty(
            mode=draw(st.sampled_from(PenaltyMode)),
            daily_rate=Fraction(draw(st.integers(0, 10)), 10_000),
        ),
        prepayment_interest=draw(st.sampled_from(PrepaymentInterest)),
        prepayment_fee_rate=Fraction(draw(st.integers(0, 300)), 10_000),
        unbilled_fees_on_payoff=draw(st.sampled_from(UnbilledFees)),
        late_fee=draw(
            st.one_of(
                st.none(),
                st.builds(
                    LateFee,
                    rate=st.integers(0, 1000).map(lambda bp: Fraction(bp, 10_000)),
                    floor=st.integers(0, 1000).map(Money),
                    cap=st.one_of(st.none(), st.integers(1000, 100_000).map(Money)),
                ),
            )
        ),
        write_off_dpd=draw(st.sampled_from([30, 90, 180])),
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[Terms, Product, list[Event]]:
    terms = draw(any_terms().filter(lambda t: t.periods <= 24 and t.principal >= 100))
    policy = draw(policies(terms))
    horizon = 31 * (terms.periods + 3)
    events: list[Event] = []
    refunded = 0
    for seq in range(1, draw(st.integers(0, 14)) + 1):
        on = terms.start + timedelta(days=draw(st.integers(0, horizon)))
        kinds = ["pay", "pay", "pay", "prepay", "reverse", "refund", "waive", "credit", "write-off"]
        kind = draw(st.sampled_from(kinds))
        amount = Money(draw(st.integers(1, int(terms.principal) // 2 + 1)))
        channel = draw(st.sampled_from(Channel))
        if kind == "pay":
            events.append(Payment(seq, on, amount, channel))
        elif kind == "prepay":
            mode = draw(st.sampled_from(PrepayMode))
            events.append(Prepayment(seq, on, amount, channel, mode, draw(st.booleans())))
        elif kind == "reverse" and events:
            target = draw(
                st.sampled_from(
                    [e.seq for e in events if isinstance(e, Payment | Prepayment)] or [0]
                )
            )
            events.append(Reversal(seq, on, target, "mistake"))
        elif kind == "refund" and refunded < terms.principal:
            refund = Money(min(int(amount), int(terms.principal) - refunded))
            refunded += refund
            events.append(Refund(seq, on, refund, channel))
        elif kind == "credit":
            events.append(CreditRefund(seq, on, amount, channel))
        elif kind == "waive":
            events.append(Waiver(seq, on, draw(st.sampled_from(WaiverKind)), amount, "goodwill"))
        elif kind == "write-off":
            events.append(WriteOff(seq, on, "written off by the batch"))
    return terms, policy, events


def check(terms: Terms, state: LoanState) -> None:
    books = balances(terms, state)
    assert sum(books.values()) == 0, books
    assert all(books.get(account, 0) >= 0 for account in RECEIVABLES), books
    assert state.credit_balance >= 0
    for row in state.installments:
        assert 0 <= row.paid_principal <= row.principal
        assert 0 <= row.paid_interest <= row.interest
        assert 0 <= row.paid_fee + row.waived_fee <= row.fee + row.late_fee
        assert 0 <= row.paid_penalty + row.waived_penalty <= row.penalty
    received = sum(state.cash_in.values()) - sum(state.cash_out.values())
    assert received == sum(row.paid for row in state.installments) + state.credit_balance
    assert (
        sum(row.principal for row in state.installments) == terms.principal - state.merchant_refunds
    )


@settings(max_examples=300, deadline=None)
@given(histories(), st.lists(st.integers(0, 900), min_size=1, max_size=4))
def test_any_history_keeps_the_books_and_the_money_whole(
    history: tuple[Terms, Product, list[Event]], offsets: list[int]
) -> None:
    terms, policy, events = history
    for offset in offsets:
        as_of = terms.start + timedelta(days=offset)
        check(terms, replay(terms, policy, events, as_of, cap=Fraction(24, 100)))


@given(histories())
def test_replay_is_deterministic_and_order_of_recording_does_not_matter(
    history: tuple[Terms, Product, list[Event]],
) -> None:
    terms, policy, events = history
    as_of = terms.start + timedelta(days=400)
    assert replay(terms, policy, events, as_of) == replay(
        terms, policy, list(reversed(events)), as_of
    )


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 1500))
def test_a_replay_writes_a_loan_off_only_where_a_write_off_is_recorded(
    history: tuple[Terms, Product, list[Event]], offset: int
) -> None:
    """However far past due a loan is, a replay never invents a write-off
    (docs/domain.md#write-off: it is an act of the batch on the day it runs, recorded as an
    event); a recorded one it applies."""
    terms, policy, events = history
    as_of = terms.start + timedelta(days=offset)
    state = replay(terms, policy, events, as_of)
    recorded = {e.effective for e in events if isinstance(e, WriteOff) and e.effective <= as_of}
    assert state.write_off is None or state.write_off.day in recorded
    assert (state.status is LoanStatus.WRITTEN_OFF) <= (state.write_off is not None)
    unrecorded = replay(terms, policy, [e for e in events if not isinstance(e, WriteOff)], as_of)
    assert unrecorded.write_off is None
    assert unrecorded.status is not LoanStatus.WRITTEN_OFF


def test_a_bullet_loan_prepaid_in_part_still_balances() -> None:
    terms = Terms(principal=Money(1_000_000), periods=6, method=Method.BULLET, start=date(2026, 1, 1),
                  annual_rate=Fraction(12, 100))  # fmt: skip
    policy = Product(code="b", name="b", method=Method.BULLET, periods=(6,))
    events: list[Event] = [Prepayment(1, date(2026, 3, 1), Money(400_000), Channel.MANUAL,
                                      PrepayMode.REDUCE_INSTALLMENT, False)]  # fmt: skip
    state = replay(terms, policy, events, date(2026, 3, 2))
    check(terms, state)
    assert state.outstanding_principal < terms.principal


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 900), st.integers(0, 15), st.integers(0, 400))
def test_a_replay_resumed_at_a_checkpoint_ends_where_a_replay_from_the_start_does(
    history: tuple[Terms, Product, list[Event]], split: int, last_seq: int, later_days: int
) -> None:
    """The batch keeps each loan's fold as it stood when it last closed the loan's day, and the
    next night starts there with only the events recorded since."""
    terms, policy, events = history
    cap = Fraction(24, 100)
    day = terms.start + timedelta(days=split)
    earlier = [event for event in events if (event.effective, event.seq) <= (day, last_seq)]
    later = [event for event in events if event not in earlier]
    reversed_later = {event.payment_seq for event in earlier if isinstance(event, Reversal)}
    assume(not reversed_later & {event.seq for event in later})
    state, kept = replay_to_checkpoint(terms, policy, earlier, day, cap)
    assert state == replay(terms, policy, earlier, day, cap)
    if kept is None:
        assert state.write_off is not None
        return
    since = Checkpoint.from_document(json.loads(json.dumps(kept.document())))
    assert since == kept
    as_of = day + timedelta(days=later_days)
    if not resumable(since, later, as_of):
        assert any(isinstance(event, Reversal) for event in later) or as_of < since.day
        return
    resumed, again = replay_to_checkpoint(terms, policy, later, as_of, cap, since=since)
    whole = replay(terms, policy, events, as_of, cap)
    assert resumed == only_history_of(whole, {event.seq for event in later})
    assert again is None or again.seq == max((event.seq for event in events), default=0)


def only_history_of(state: LoanState, seqs: set[int]) -> LoanState:
    """``state`` with the allocations and payoff breakdowns of the events ``seqs`` only."""
    write_off = state.write_off
    if write_off is not None:
        write_off = write_off._replace(state=only_history_of(write_off.state, seqs))
    return dataclasses.replace(
        state,
        allocations={seq: part for seq, part in state.allocations.items() if seq in seqs},
        payoffs={seq: part for seq, part in state.payoffs.items() if seq in seqs},
        write_off=write_off,
    )


# -- a borrower who is never late ---------------------------------------------------------------

CAP = Fraction(24, 100)


class Punctual:
    """A borrower's life written as it happens: she pays every installment in full on or before
    its due date, and prepays any amount, or everything, on any day (due dates included, before
    or after paying that day's installment), reducing the installment or shortening the term."""

    def __init__(self, draw: st.DrawFn, terms: Terms, policy: Product) -> None:
        self.draw, self.terms, self.policy = draw, terms, policy
        self.events: list[Event] = []

    def state(self, on: date) -> LoanState:
        return replay(self.terms, self.policy, self.events, on, CAP)

    def prepay(self, on: date) -> None:
        now = self.state(on)
        if now.status is LoanStatus.SETTLED:
            return
        seq, mode = len(self.events) + 1, self.draw(st.sampled_from(PrepayMode))
        if self.draw(st.integers(0, 3)) == 0:  # everything, at the payoff quote
            quote = payoff_on(self.terms, self.policy, self.events, on, CAP)
            if quote.amount == 0:  # what she has paid ahead covers it: nothing to pay
                return
            self.events.append(Prepayment(seq, on, quote.amount, Channel.MANUAL, mode, True))
            settled = self.state(on)
            assert settled.status is LoanStatus.SETTLED, settled  # the quote pays it all off
            assert settled.credit_balance == 0  # to the fen
            assert settled.payoffs[seq] == quote
            return
        most = max(int(now.outstanding_principal), 1)
        amount = Money(self.draw(st.integers(1, most)))
        self.events.append(Prepayment(seq, on, amount, Channel.MANUAL, mode, False))

    def pay(self, on: date, due: date) -> None:
        """Pays what the installments due by ``due`` still ask, as the plan stands on ``on``."""
        now = self.state(on)
        rows = [row for row in now.installments if row.due_date <= due]
        owed = sum(row.outstanding for row in rows) - now.credit_balance
        if owed > 0:
            self.events.append(Payment(len(self.events) + 1, on, Money(owed), Channel.MANUAL))

    def live(self) -> date:
        """Lives the plan out, period by period; returns its last due date."""
        since, last = self.terms.start, self.terms.start
        while (now := self.state(since)).status is not LoanStatus.SETTLED:
            due = min(row.due_date for row in now.installments
                      if row.status is not InstallmentStatus.PAID)  # fmt: skip
            assert due >= since, now  # what fell due before was paid
            paid_on = since + timedelta(days=self.draw(st.integers(0, (due - since).days)))
            for offset in sorted(self.draw(st.lists(st.integers(0, (paid_on - since).days),
                                                    max_size=2))):  # fmt: skip
                self.prepay(since + timedelta(days=offset))
            self.pay(paid_on, due)
            if self.draw(st.booleans()):
                self.prepay(due)  # on the due date, after its installment is paid
            since = last = due
            since += timedelta(days=1)
        return last


@st.composite
def punctual_lives(draw: st.DrawFn) -> tuple[Terms, Product, list[Event], date]:
    terms = draw(any_terms().filter(lambda t: t.principal >= 100))
    terms = dataclasses.replace(terms, periods=draw(st.integers(1, 12)))
    policy = draw(policies(terms))
    borrower = Punctual(draw, terms, policy)
    last = borrower.live()
    return terms, policy, borrower.events, last + timedelta(days=policy.grace_days + 40)


@settings(max_examples=150, deadline=None)
@given(punctual_lives())
def test_a_borrower_who_pays_every_installment_by_its_due_date_is_never_overdue(
    life: tuple[Terms, Product, list[Event], date],
) -> None:
    """Whatever she prepays and whenever, due dates included
    (docs/domain.md#which-period-a-day-belongs-to): never a day past due, no penalty interest,
    no late fee, and settled at last."""
    terms, policy, events, end = life
    note(f"{terms}\n{policy}\n" + "\n".join(map(repr, events)))
    on = terms.start
    while on <= end:
        state = replay(terms, policy, events, on, CAP)
        assert state.dpd == 0, (on, state)
        assert state.status in (LoanStatus.ACTIVE, LoanStatus.SETTLED), (on, state)
        assert all(row.penalty == 0 and row.late_fee == 0 for row in state.installments), on
        on += timedelta(days=1)
    assert state.status is LoanStatus.SETTLED


# -- the payoff quote and the plan agree --------------------------------------------------------


def _repriced_onto_a_paid_installment() -> tuple[Terms, Product, list[Event]]:
    """Found by a random run: a merchant refund of 0.01 re-prices 1.20 in 20 equal-principal
    installments to 1.19, whose rounding remainder (0.19, first) lands on installment 1, paid
    in full already; it owes again, and a payoff that passed it by left the plan open."""
    terms = dataclasses.replace(plan_terms("equal-principal", "1.20", 20, start=date(2000, 1, 1)),
                                remainder_first=True)  # fmt: skip
    policy = Product(code="p", name="any", method=terms.method, periods=(20,),
                     penalty=Penalty(mode=PenaltyMode.RATE_MULTIPLIER),
                     prepayment_interest=PrepaymentInterest.ACCRUED)  # fmt: skip
    card = Channel.BANK_CARD
    events: list[Event] = [Payment(1, date(2000, 2, 1), Money(1), card)]
    events += [Payment(seq, date(2000, 1, 1), Money(1), card) for seq in range(2, 12)]
    events.append(Refund(12, date(2000, 1, 1), Money(1), card, to_credit=False))
    return terms, policy, events


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 60), st.integers(1, 400))
@example(_repriced_onto_a_paid_installment(), 0, 1)
def test_paying_the_payoff_quote_settles_the_plan_whatever_came_before(
    history: tuple[Terms, Product, list[Event]], after: int, later: int
) -> None:
    """Whatever was paid before (ahead, backdated, prepaid in part), a full prepayment of what
    the payoff quote says on a day settles the plan with nothing owed, then and on every later
    day: 0.00 included, when what was paid ahead covers the payoff. So the quote never says 0.00
    for a plan that still owes something unless paying 0.00 settles it."""
    terms, policy, events = history
    day = max((event.effective for event in events), default=terms.start) + timedelta(days=after)
    assume(replay(terms, policy, events, day, CAP).status not in CLOSED)
    quote = payoff_on(terms, policy, events, day, CAP)
    seq = max((event.seq for event in events), default=0) + 1
    payoff = Prepayment(seq, day, quote.amount, Channel.MANUAL, PrepayMode.REDUCE_INSTALLMENT, True)
    for on in (day, day + timedelta(days=later)):
        state = replay(terms, policy, [*events, payoff], on, CAP)
        note(f"{on}: {state}")
        assert state.status is LoanStatus.SETTLED
        assert (state.amount_due, state.outstanding_principal, state.dpd) == (0, 0, 0)
        assert all(row.outstanding == 0 for row in state.installments)
        check(terms, state)
    settled = replay(terms, policy, [*events, payoff], day, CAP)
    assert settled.payoffs[seq] == quote
    receipt = settled.allocations[seq]  # what was paid ahead and taken back counts too
    assert sum(part.amount for part in receipt.applied) + receipt.to_credit == quote.amount


CLOSED = (LoanStatus.SETTLED, LoanStatus.CANCELLED)


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 900))
def test_a_receipt_accounts_for_every_fen_of_its_payment(
    history: tuple[Terms, Product, list[Event]], offset: int
) -> None:
    """What a payment or prepayment was applied to, and what it left as credit, add up to its
    amount, also when a payoff takes back what was paid ahead on installments it removes."""
    terms, policy, events = history
    state = replay(terms, policy, events, terms.start + timedelta(days=offset), CAP)
    paid = {event.seq: event.amount for event in events if isinstance(event, Payment | Prepayment)}
    for seq, allocation in state.allocations.items():
        applied = sum(part.amount for part in allocation.applied)
        assert applied + allocation.to_credit == paid[seq], allocation


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 900), st.data())
def test_the_whole_credit_balance_can_go_back_and_only_to_payers_that_still_stand(
    history: tuple[Terms, Product, list[Event]], offset: int, data: st.DataObject
) -> None:
    """Whoever paid each payment and whoever each credit refund went to, and whatever was
    reversed since: the whole credit balance can go back, never more, each payer getting no
    more than what it paid in and still stands less what the fold has credit refunds already
    pay back to it; a payer whose payments were all reversed gets nothing."""
    terms, policy, written = history
    payers: st.SearchStrategy[Payer] = st.sampled_from([None, 1, 2])
    events = [
        dataclasses.replace(e, method_id=data.draw(payers)) if isinstance(e, CreditRefund) else e
        for e in written
    ]
    paid_with = {e.seq: data.draw(payers) for e in events if isinstance(e, Payment | Prepayment)}
    state = replay(terms, policy, events, terms.start + timedelta(days=offset), CAP)
    credit = int(state.credit_balance)
    shares, short = paying_back(events, state, paid_with, credit + 1)
    assert (sum(shares.values()), short) == (credit, 1)

    known = [e for e in events if e.effective <= state.as_of]
    reversed_ = {e.payment_seq for e in known if isinstance(e, Reversal)}
    standing: dict[Payer, int] = {}
    for e in known:
        if isinstance(e, Payment | Prepayment) and e.seq not in reversed_:
            standing[paid_with[e.seq]] = standing.get(paid_with[e.seq], 0) + int(e.amount)
    for e in known:
        if isinstance(e, CreditRefund) and (e.method_id is not None or e.channel is Channel.MANUAL):
            back = int(state.credit_refunds.get(e.seq, 0))
            standing[e.method_id] = standing.get(e.method_id, 0) - back
    for payer, share in shares.items():
        assert 0 < share <= standing.get(payer, 0), (payer, share, standing)


OWED_PARTS = ("principal", "interest", "fee", "penalty")


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 900))
def test_a_plans_rows_add_up_to_its_summary_and_its_payoff_whatever_came_before(
    history: tuple[Terms, Product, list[Event]], offset: int
) -> None:
    """What a page shows of a plan (its document: the rows and the summary) adds up, whatever
    happened to it: each row's parts make what it still owes and what was paid of it; the
    summary's parts are the sums of the rows fallen due (principal: of every row); what is due
    now is what those rows owe less the credit balance; and the payoff quote's penalty is the
    summary's, its principal the summary's with what was paid ahead taken back."""
    terms, policy, events = history
    state = replay(terms, policy, events, terms.start + timedelta(days=offset), CAP)
    rows = [loan_installment(row) for row in state.installments]

    def owed(row: dict[str, object], part: str) -> Money:
        return Money.parse(str(row[f"outstanding_{part}"]))

    for row in rows:
        assert all(owed(row, part) >= 0 for part in OWED_PARTS), row
        assert sum(owed(row, part) for part in OWED_PARTS) == Money.parse(str(row["outstanding"]))
        paid = ("paid_principal", "paid_interest", "paid_fee", "paid_penalty")
        assert sum(Money.parse(str(row[key])) for key in paid) == Money.parse(str(row["paid"]))
    due = [row for row, kept in zip(rows, state.installments, strict=True) if kept.billed]
    assert sum(owed(row, "principal") for row in rows) == state.outstanding_principal
    for part in ("interest", "fee", "penalty"):
        assert sum(owed(row, part) for row in due) == getattr(state, f"outstanding_{part}"), part
    assert sum(owed(row, "penalty") for row in rows) == state.outstanding_penalty  # none ahead
    owed_now = sum(Money.parse(str(row["outstanding"])) for row in due)
    assert state.amount_due == max(owed_now - state.credit_balance, 0)
    if state.status in CLOSED or state.write_off is not None:
        return
    quote = payoff_on(terms, policy, events, state.as_of, CAP)
    assert quote.penalty == state.outstanding_penalty
    # What was paid ahead of a future installment is taken back into the payoff as a credit
    # (``credit_applied``), so the quote's principal may count it again.
    assert quote.principal - quote.credit_applied <= state.outstanding_principal
    assert state.outstanding_principal <= quote.principal
