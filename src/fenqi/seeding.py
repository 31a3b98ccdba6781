"""A synthetic portfolio with a realistic past, made fast: what ``fenqi seed`` and the benchmarks
run on.

Each borrower gets a behaviour (always on time, pays by hand, a few days late, chronically late,
defaults) and each of her loans the history that behaviour implies, as the dated events the
services and the nightly batch would have stored: payments, and the auto-debits that failed. The
domain works out every number: what is due on a payment day is the loan replayed to that day,
and whether the batch tried a debit on a day is ``debit_due`` of the loan as it stood then. A
loan's books are one opening entry equal to its state replayed to the seeding day, and its row
holds that state with the batch's watermark at that day, so ``fenqi ledger check`` agrees and
``fenqi cob`` carries on from the next day. Each payment has its receipt, as the services would
have issued it: what it paid of each part, and the principal left after it.

Rows are built here and written in bulk (``COPY`` on PostgreSQL), a thousand loans per
transaction; ids are allocated here, so events and postings need no round trip. A run stopped
midway keeps the transactions it committed: seed a database no one else is writing to.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import partial
from random import Random
from typing import TypeVar

from fenqi import wire
from fenqi.catalog import read_lpr_table
from fenqi.domain.caps import LprTable
from fenqi.domain.collection import debit_due, write_off_due
from fenqi.domain.events import Channel, DebitFailed, Event, Payment, WriteOff
from fenqi.domain.loan import (
    Checkpoint,
    LoanState,
    LoanStatus,
    replay,
    replay_to_checkpoint,
)
from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.quote import Quote, quote
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import book
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.receipts import Receipt, receipt_of
from fenqi.services.borrowers import mask
from fenqi.services.context import Context, Document, transact
from fenqi.services.errors import RefusedError
from fenqi.services.products import seed_products
from fenqi.store.bulk import insert_tables
from fenqi.store.loans import NewLoan, new_loan_rows
from fenqi.store.seeding import move_sequences, next_ids, phones_taken
from fenqi.store.units import session_of

LOANS_PER_TRANSACTION = 1_000
HISTORY_DAYS = 730  # loans start over the two years before the seeding day
MEMO = "opening balance (seeded)"
LIMIT_STEP = 10_000_00  # credit limits are whole 10,000s of yuan
_DAY = timedelta(days=1)
_DAYTIME = time(2, tzinfo=UTC)  # 10:00 in Beijing: a payment made by hand
_NIGHT = time(14, tzinfo=UTC)  # 22:00 in Beijing: the nightly batch


class Behaviour(StrEnum):
    """How a borrower pays."""

    ON_TIME = "on_time"  # a funded bank card: every auto-debit succeeds
    BY_HAND = "by_hand"  # nothing bound: pays at a counter on each due date
    LATE = "late"  # pays by hand 2-10 days late; her card is empty, so debits fail
    CHRONIC = "chronically_late"  # 15-60 days late, often only part; an empty card
    DEFAULTS = "defaults"  # paid on time until one day, then never again; nothing bound


WEIGHTS = {Behaviour.ON_TIME: 60, Behaviour.BY_HAND: 10, Behaviour.LATE: 15,
           Behaviour.CHRONIC: 10, Behaviour.DEFAULTS: 5}  # fmt: skip
_CARDED = (Behaviour.ON_TIME, Behaviour.LATE, Behaviour.CHRONIC)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐韩冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN_NAMES = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳",
               "杰", "娟", "涛", "明", "超", "秀兰", "霞", "平", "刚", "桂英", "子轩", "浩然",
               "欣怡", "梓涵", "雨桐", "宇航", "思远", "佳怡", "俊杰")  # fmt: skip
_MOBILE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152",
                    "155", "157", "158", "159", "166", "177", "180", "186", "187", "188", "189",
                    "199")  # fmt: skip
_CARD_BINS = ("622202", "622848", "621700", "622588", "621661")  # ICBC, ABC, CCB, CMB, BOC
_BASE_LIMITS = (10_000_00, 20_000_00, 30_000_00, 50_000_00)

_PHONES = range(1_099, 10_000, 100)  # yuan: a phone costs 1,099 … 9,999 on a mall plan
_CASH = range(1_000, 30_001, 100)  # yuan: a cash loan lends 1,000 … 30,000
# (product, periods, weight, principal in yuan): the shipped catalog, phones on mall plans.
_MIX = (("mall-3", 3, 10, _PHONES), ("mall-6", 6, 15, _PHONES), ("mall-12", 12, 22, _PHONES),
        ("mall-24", 24, 13, _PHONES), ("cash", 3, 6, _CASH), ("cash", 6, 10, _CASH),
        ("cash", 12, 14, _CASH), ("cash", 24, 10, _CASH))  # fmt: skip
_MALLS = (("JD", "京东"), ("TM", "天猫"), ("HW", "华为商城"), ("MI", "小米商城"),
          ("SN", "苏宁易购"), ("PDD", "拼多多"))  # fmt: skip
_CASH_PAYEE = ("CL", "现金分期 放款至本人银行卡")
# Phones from the cheapest to the dearest: a mall plan's price picks its band.
_PHONE_MODELS = ("Redmi 14C", "荣耀 X60", "OPPO A5 Pro", "vivo Y300", "Redmi K80", "小米 15",
                 "华为 nova 13", "iPhone 16", "华为 Mate 70", "iPhone 16 Pro Max")  # fmt: skip
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Person:
    """A borrower to seed and how she pays."""

    id: int
    name: str
    phone: str
    behaviour: Behaviour
    base_limit: int  # fen; raised to cover what her loans lend
    stopped_on: date | None  # DEFAULTS: the day she stopped paying
    method_id: int | None  # her bound card's id (only a behaviour with a card has one)

    @property
    def token_ref(self) -> str | None:
        """Her bound card in the payment simulator."""
        return None if self.method_id is None else f"tok_seed_{self.id}"

    @property
    def card(self) -> PaymentMethod | None:
        """Her bound card, her default method."""
        if self.method_id is None or self.token_ref is None:
            return None
        number = f"{_CARD_BINS[self.id % len(_CARD_BINS)]}{self.id:013d}"
        masked = mask(Channel.BANK_CARD, number)
        kind = Channel.BANK_CARD.value
        return PaymentMethod(self.method_id, self.id, kind, masked, self.token_ref, True, "active")


@dataclass(frozen=True, slots=True)
class Plan:
    """A loan to seed: whose, which product and term, how much, from when."""

    loan_id: int
    ordinal: int  # its place in the portfolio, which seeds its own history
    person: Person
    product: str
    periods: int
    principal: Money
    start: date
    merchant: str
    order_id: str

    @property
    def item(self) -> str | None:
        """The phone a mall plan bought, by its price; a cash loan buys nothing."""
        if self.merchant == _CASH_PAYEE[1]:
            return None
        band = (int(self.principal) // 100 - _PHONES.start) * len(_PHONE_MODELS)
        return _PHONE_MODELS[band // (_PHONES.stop - _PHONES.start)]


@dataclass(frozen=True)
class Shop:
    """What seeding reads from the database first: the products, the LPR table and the next
    free ids."""

    products: dict[str, tuple[Product, Document]]
    lpr: LprTable
    first_borrower: int
    first_loan: int
    first_method: int


@dataclass(frozen=True)
class Contract:
    """A seeded loan as checkout would have made it: the product as stored, and the quote the
    borrower consented to (its terms, schedule and cap)."""

    plan: Plan
    policy: Product
    definition: Document
    offer: Quote

    def state_on(self, day: date, events: Sequence[Event]) -> LoanState:
        return replay(self.offer.terms, self.policy, events, day, self.offer.cap)

    def closed_on(self, day: date, events: Sequence[Event]) -> tuple[LoanState, Checkpoint | None]:
        """The loan on ``day``, and the checkpoint the batch would have left that night."""
        return replay_to_checkpoint(self.offer.terms, self.policy, events, day, self.offer.cap)


def seed(context: Context, loans: int, borrowers: int, start: date, rng_seed: int, *,
         processes: int | None = None,
         progress: Callable[[int], None] | None = None) -> Document:  # fmt: skip
    """Adds ``borrowers`` borrowers and ``loans`` loans, spread over them, whose histories run
    through ``start``; the same ``rng_seed`` on the same database makes the same portfolio.

    ``processes`` work out the loans' histories (default: one per CPU), a few transactions
    ahead of this one, which writes them; ``progress`` hears how many loans are written."""
    if loans < 1 or borrowers < 1:
        raise RefusedError(f"seed at least 1 loan and 1 borrower, not {loans} and {borrowers}")
    seed_products(context)  # a database without products gets the shipped ones, as at db init
    shop = _shop(context)
    taken = _in_rows(context, phones_taken)
    rng = Random(rng_seed)
    people = _people(rng, borrowers, (shop.first_borrower, shop.first_method), taken, start)
    plans = _plans(rng, loans, people, shop.first_loan, start)
    _in_rows(context, partial(insert_tables, rows=_people_rows(people, plans, start)))
    batches = [plans[first : first + LOANS_PER_TRANSACTION]
               for first in range(0, loans, LOANS_PER_TRANSACTION)]  # fmt: skip
    build = partial(_loan_batch, shop=shop, day=start, rng_seed=rng_seed)
    tally: Counter[str] = Counter()
    for rows, counts in _ahead(build, batches, processes or os.cpu_count() or 1):
        _in_rows(context, partial(insert_tables, rows=rows))
        tally.update(counts)
        if progress is not None:
            progress(tally["loans"])
    _in_rows(context, move_sequences)
    return _summary(start, rng_seed, people, plans, tally)


def _in_rows(context: Context, work: Callable[..., T]) -> T:
    """``work`` on the store's rows, given the session of one unit of work: the seeder writes
    its rows in bulk, on the database only."""
    return transact(context, lambda unit: work(session_of(unit)))


def _ahead(work: Callable[[T], R], items: Sequence[T], processes: int) -> Iterator[R]:
    """``work`` of each item, in order, done by ``processes`` worker processes a few items
    ahead of the caller (who writes meanwhile); here, in this process, when one is enough.

    Workers are forked where the system can (they start at once, and re-run no script):
    they only compute, so the database connections they inherit are never touched."""
    if processes <= 1 or len(items) <= 1:
        yield from map(work, items)
        return
    methods = multiprocessing.get_all_start_methods()
    starter = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(min(processes, len(items)), mp_context=starter) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > 2 * processes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _summary(day: date, rng_seed: int, people: list[Person], plans: list[Plan],
             tally: Counter[str]) -> Document:  # fmt: skip
    kinds = Counter(person.behaviour for person in people)
    return {
        "as_of": day.isoformat(),
        "seed": rng_seed,
        "borrowers": len(people),
        "behaviours": {behaviour.value: kinds[behaviour] for behaviour in Behaviour},
        "loans": len(plans),
        "first_loan_id": plans[0].loan_id,
        "last_loan_id": plans[-1].loan_id,
        "loans_by_status": {status.value: tally[status.value] for status in LoanStatus},
        "principal": wire.money(Money(sum(plan.principal for plan in plans))),
        "outstanding_principal": wire.money(Money(tally["outstanding_principal"])),
        "events": tally["events"],
        "payments": tally["payments"],
        "failed_debits": tally["failed_debits"],
        "write_offs": tally["write_offs"],
        "journal_entries": tally["journal_entries"],
        "postings": tally["postings"],
    }


# -- what to seed ---------------------------------------------------------------------------------


def _shop(context: Context) -> Shop:
    products = transact(context, lambda unit: {code: unit.product(code) for code, *_ in _MIX})
    for code, periods, *_ in _MIX:
        offered = products[code][0].periods
        if periods not in offered:
            raise RefusedError(
                f"seeding needs product {code} with {periods} periods; it offers {offered} "
                "(the shipped catalog has it: fenqi product load)"
            )
    return Shop(products, read_lpr_table(), *_in_rows(context, next_ids))


def _people(rng: Random, count: int, first_ids: tuple[int, int], taken: set[str],
            day: date) -> list[Person]:  # fmt: skip
    """``count`` borrowers with a behaviour each, phone numbers no one has yet, and a card
    for those whose behaviour has one (``first_ids``: the first free borrower and method ids)."""
    people = []
    first_id, methods = first_ids[0], iter(range(first_ids[1], first_ids[1] + count))
    for number, behaviour in enumerate(_behaviours(rng, count)):
        name = rng.choice(SURNAMES) + rng.choice(GIVEN_NAMES)
        phone = _phone(rng, taken)
        stopped = day - timedelta(days=rng.randint(20, 540))
        people.append(Person(first_id + number, name, phone, behaviour,
                             rng.choice(_BASE_LIMITS),
                             stopped if behaviour is Behaviour.DEFAULTS else None,
                             next(methods) if behaviour in _CARDED else None))  # fmt: skip
    return people


def _behaviours(rng: Random, count: int) -> list[Behaviour]:
    """Each behaviour's share of ``count`` borrowers by its weight (largest remainders first),
    at least one of each once there are as many borrowers as behaviours, in random order: a
    small portfolio still shows every kind, and a large one has them in proportion."""
    total = sum(WEIGHTS.values())
    shares = {kind: count * weight // total for kind, weight in WEIGHTS.items()}
    by_remainder = sorted(WEIGHTS, key=lambda kind: -(count * WEIGHTS[kind] % total))
    for kind in by_remainder[: count - sum(shares.values())]:
        shares[kind] += 1
    if count >= len(WEIGHTS):
        for kind in [kind for kind, share in shares.items() if share == 0]:
            shares[kind], shares[Behaviour.ON_TIME] = 1, shares[Behaviour.ON_TIME] - 1
    kinds = [kind for kind, share in shares.items() for _ in range(share)]
    rng.shuffle(kinds)
    return kinds


def _phone(rng: Random, taken: set[str]) -> str:
    while (phone := rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}") in taken:
        pass
    taken.add(phone)
    return phone


def _plans(rng: Random, count: int, people: list[Person], first_id: int, day: date) -> list[Plan]:
    """``count`` loans, one for each borrower first and the rest to borrowers at random, from
    the product mix, starting on days spread evenly over the two years before ``day``; ids rise
    with the start date, as checkouts would have made them."""
    weights = [weight for _, _, weight, _ in _MIX]
    drafts = []
    for number in range(count):
        person = people[number] if number < len(people) else rng.choice(people)
        product, periods, _, prices = rng.choices(_MIX, weights)[0]
        start = day - timedelta(days=rng.randint(1, HISTORY_DAYS))
        merchant = _CASH_PAYEE if product == "cash" else rng.choice(_MALLS)
        principal = Money(rng.choice(prices) * 100)
        drafts.append((start, number, person, product, periods, principal, merchant))
    drafts.sort(key=lambda draft: (draft[0], draft[1]))
    return [
        Plan(first_id + ordinal, ordinal, person, product, periods, principal, start, merchant,
             f"{prefix}-S{first_id + ordinal:09d}")
        for ordinal, (start, _, person, product, periods, principal, (prefix, merchant))
        in enumerate(drafts)
    ]  # fmt: skip


# -- borrowers ------------------------------------------------------------------------------------


def _people_rows(people: list[Person], plans: list[Plan], day: date) -> dict[str, list[Document]]:
    """Borrowers with limits that cover what their loans lend, the cards bound by those who
    have one, and each card's balance in the payment simulator: enough for everything for an
    on-time payer, nothing for a late one."""
    lent: Counter[int] = Counter()
    first: dict[int, date] = {}
    for plan in plans:
        lent[plan.person.id] += plan.principal
        first[plan.person.id] = min(first.get(plan.person.id, plan.start), plan.start)
    borrowers, methods, accounts = [], [], []
    for person in people:
        joined = datetime.combine(first.get(person.id, day) - 3 * _DAY, _DAYTIME)
        limit = max(person.base_limit, -(-lent[person.id] // LIMIT_STEP) * LIMIT_STEP)
        borrowers.append({"id": person.id, "name": person.name, "phone": person.phone,
                          "credit_limit": limit, "created_at": joined})  # fmt: skip
        card = person.card
        if card is None:
            continue
        methods.append({"id": card.id, "borrower_id": person.id, "kind": card.kind,
                        "masked_account": card.masked_account, "token_ref": card.token_ref,
                        "is_default": True, "status": "active", "created_at": joined})  # fmt: skip
        funded = person.behaviour is Behaviour.ON_TIME
        balance = 2 * lent[person.id] if funded else 0
        accounts.append({"token_ref": person.token_ref, "balance": balance})
    return {"borrowers": borrowers, "payment_methods": methods, "sim_accounts": accounts}


# -- loans and their past -------------------------------------------------------------------------


def _loan_batch(plans: list[Plan], shop: Shop, day: date,
                rng_seed: int) -> tuple[dict[str, list[Document]], Counter[str]]:  # fmt: skip
    """The rows of a batch of loans, and what they hold. Each loan's history has a random
    stream of its own, so a batch comes out the same in whichever process makes it."""
    new: list[NewLoan] = []
    tally: Counter[str] = Counter(loans=len(plans))
    for plan in plans:
        contract = _contract(plan, shop)
        events = _history(contract, day, Random(f"{rng_seed}:{plan.ordinal}"))
        new.append(_new_loan(contract, events, day))
        state = new[-1].opening.state
        tally[state.status.value] += 1
        tally["outstanding_principal"] += state.outstanding_principal
        tally["payments"] += sum(isinstance(event, Payment) for event in events)
        tally["write_offs"] += sum(isinstance(event, WriteOff) for event in events)
    rows = new_loan_rows(new)
    tally.update(events=len(rows["loan_events"]), journal_entries=len(rows["journal_entries"]),
                 postings=len(rows["postings"]))  # fmt: skip
    tally["failed_debits"] = tally["events"] - tally["payments"] - tally["write_offs"]
    return rows, tally


def _contract(plan: Plan, shop: Shop) -> Contract:
    product, definition = shop.products[plan.product]
    terms = product.terms(plan.principal, plan.start, plan.periods)
    offer = quote(terms, product.apr_cap.on(plan.start, shop.lpr), product.code)
    return Contract(plan, product, definition, offer)


def _history(contract: Contract, day: date, rng: Random) -> list[Event]:
    """The loan's events through ``day`` as its borrower's behaviour makes them: her payments,
    the auto-debits the nightly batch tried and saw fail, and the batch's write-off if her loan
    went that far, numbered in the order they happened (on a day, money paid by hand comes
    before the batch)."""
    paid = _payments(contract, day, rng)
    written_off = None if paid.write_off is None else paid.write_off.effective
    failed = _failed_debits(contract, paid.payments, paid.cleared, day, written_off)
    happened: list[Event] = [*paid.payments, *failed]
    if paid.write_off is not None:  # after the day's payments, and no debit is tried that day
        happened.append(replace(paid.write_off, seq=len(happened) + 1))
    happened.sort(key=lambda event: (event.effective, event.seq))
    return [replace(event, seq=seq) for seq, event in enumerate(happened, start=1)]


@dataclass(frozen=True)
class _Paid:
    """Her payments, the days on which one paid everything then due, and the write-off the
    batch recorded when her DPD reached the product's write-off DPD, if it did."""

    payments: list[Payment]
    cleared: set[date]
    write_off: WriteOff | None


def _payments(contract: Contract, day: date, rng: Random) -> _Paid:
    """Her payments through ``day``, and what they led to.

    Each is what was due on its day (the loan replayed to it), or the part of it a chronically
    late payer managed. While every installment so far was paid in full on its due date, what
    is due on the next due date is that installment's payment, with no replay needed. A payment
    after the write-off is worked out on the written-off loan, as the services would."""
    person = contract.plan.person
    channel = Channel.BANK_CARD if person.behaviour is Behaviour.ON_TIME else Channel.MANUAL
    payments: list[Payment] = []
    cleared: set[date] = set()
    written_off: WriteOff | None = None
    last = looked = contract.offer.terms.start  # the batch's nights looked at so far
    on_schedule = True
    for row in contract.offer.schedule.installments:
        if row.due_date > day:
            break
        when = _payment_day(person, row.due_date, rng)
        if when is None:  # she has stopped paying
            on_schedule = False
            continue
        paid_on, percent = max(when[0], last + _DAY), when[1]
        on_schedule = on_schedule and paid_on == row.due_date and percent == 100
        if paid_on > day:
            continue
        if written_off is None:  # the nights before she pays: did the batch write it off?
            written_off = _write_off(contract, payments, cleared, looked, paid_on - _DAY)
            looked = paid_on - _DAY
        if on_schedule:
            due = row.payment
        else:
            known: list[Event] = [*payments] if written_off is None else [*payments, written_off]
            due = contract.state_on(paid_on, known).amount_due
        amount = due if percent == 100 else Money(int(due) * percent // 100_00 * 100)
        if amount > 0:
            payments.append(Payment(len(payments) + 1, paid_on, amount, channel))
            last = paid_on
            if percent == 100:
                cleared.add(paid_on)
    if written_off is None:
        written_off = _write_off(contract, payments, cleared, looked, day)
    return _Paid(payments, cleared, written_off)


def _write_off(contract: Contract, payments: list[Payment], cleared: set[date], after: date,
               through: date) -> WriteOff | None:  # fmt: skip
    """The write-off the batch, closing every night after ``after`` through ``through``, would
    have recorded given ``payments``: on the first night the loan's DPD had reached the
    product's write-off DPD. Only payments move DPD here, and one never reopens what was paid,
    so that night is one on which some installment, still owed, is that many days past due (or,
    for a DPD within the grace days, first overdue): only those nights are looked at, and not
    for an installment that a payment of everything then due had cleared by then."""
    policy = contract.policy
    reach = timedelta(days=max(policy.write_off_dpd, policy.grace_days + 1))
    for row in contract.offer.schedule.installments:
        night = row.due_date + reach
        if night > through:
            break
        if night <= after or any(row.due_date <= paid <= night for paid in cleared):
            continue
        written_off = write_off_due(contract.state_on(night, payments), policy, 0)
        if written_off is not None:
            return written_off  # numbered with the rest of the history
    return None


def _payment_day(person: Person, due: date, rng: Random) -> tuple[date, int] | None:
    """When she pays what fell due on ``due``, and what percent of it; None: never."""
    if person.behaviour is Behaviour.LATE:
        return due + timedelta(days=rng.randint(2, 10)), 100
    if person.behaviour is Behaviour.CHRONIC:
        late = due + timedelta(days=rng.randint(15, 60))
        return late, 100 if rng.random() < 0.6 else rng.randint(30, 70)
    if person.stopped_on is not None and due >= person.stopped_on:
        return None
    return due, 100


def _failed_debits(contract: Contract, payments: list[Payment], cleared: set[date],
                   day: date, written_off: date | None) -> list[DebitFailed]:  # fmt: skip
    """The auto-debits the batch tried on each due date and retry day through ``day`` and that
    failed (an empty card, or nothing bound), until a payment cleared what was due or the batch
    wrote the loan off (``written_off``: from that night on it tries none). A funded card's
    debits are the on-time payments themselves."""
    policy = contract.policy
    failed: list[DebitFailed] = []
    for row in contract.offer.schedule.installments:
        state: LoanState | None = None
        for offset in (0, *policy.debit_retry_days):
            on = row.due_date + timedelta(days=offset)
            if on > day or any(row.due_date <= paid <= on for paid in cleared):
                break
            if written_off is not None and on >= written_off:
                return failed
            state = _state_for_debit(contract, payments, failed, state, on)
            plan = debit_due(state, policy, on)
            if plan is not None:
                seq = len(payments) + len(failed) + 1  # after the day's payments
                reason = _declined(contract.plan.person)
                failed.append(DebitFailed(seq, on, plan.due_date, plan.attempt, reason))
    return failed


def _state_for_debit(contract: Contract, payments: list[Payment], failed: list[DebitFailed],
                     known: LoanState | None, on: date) -> LoanState:  # fmt: skip
    """The loan as the batch sees it on ``on`` to decide a debit: ``known`` (from an earlier
    day of the same retries) with the attempts made since, when only time has passed; else a
    replay."""
    if known is None or not _only_time_passed(known, payments, on):
        return contract.state_on(on, [*payments, *failed])
    attempts = dict(known.failed_debits)
    for attempt in failed:
        attempts[attempt.due_date] = max(attempts.get(attempt.due_date, 0), attempt.attempt)
    return replace(known, failed_debits=attempts)


def _only_time_passed(known: LoanState, payments: list[Payment], on: date) -> bool:
    """Whether, from ``known`` to ``on``, nothing happened that a debit decision reads: no
    money moved, nothing fell due. Time alone only adds penalty and late fees to what is
    already unpaid, which changes no decision (and never writes a loan off: the batch does,
    and no debit is tried from that night on)."""
    rows = known.installments
    moments = [paid.effective for paid in payments] + [row.due_date for row in rows]
    return not any(known.as_of < moment <= on for moment in moments)


def _declined(person: Person) -> str:
    """Why the channel refused, as the batch records it."""
    if person.token_ref is None:
        return "no repayment method bound"
    return f"insufficient funds: the method holds {Money(0)}"


def _new_loan(contract: Contract, events: list[Event], day: date) -> NewLoan:
    """The loan as checkout, the services and the batch through ``day`` would have left it:
    closed through ``day`` (its checkpoint kept), its books in one opening entry (numbered as
    checkout's: the write from version 0) equal to its state on ``day``."""
    plan, offer = contract.plan, contract.offer
    opened = datetime.combine(plan.start, _DAYTIME)
    loan = Loan(
        id=plan.loan_id, borrower_id=plan.person.id, order_id=plan.order_id,
        merchant=plan.merchant, item=plan.item, product_code=plan.product, terms=offer.terms,
        policy=contract.policy, definition=contract.definition, cap=offer.cap, events=events,
        status=LoanStatus.ACTIVE, outstanding_principal=int(plan.principal), dpd=0, version=0,
        opened=plan.start, booked_through=plan.start, closed_through=None,
        next_action_date=None, journal={},  # nothing booked yet: the opening entry books it all
    )  # fmt: skip
    opening = book(loan, [], day, memo=MEMO, accrual=MEMO, issued=opened, closing=True)
    booked_at = tuple(_booked_at(event) for event in events)
    receipts = _receipts(loan, opening.state, plan.person.card, booked_at)
    return NewLoan(loan, replace(opening, receipts=receipts), wire.quote(offer), opened, booked_at)


def _receipts(loan: Loan, state: LoanState, card: PaymentMethod | None,
              booked_at: tuple[datetime, ...]) -> tuple[Receipt, ...]:  # fmt: skip
    """Each payment's receipt as the services would have issued it: applied as the loan now
    stands, the principal left after it being what the payments up to it had not repaid (a
    seeded loan has no refund)."""
    receipts, left = [], loan.terms.principal
    for event, issued in zip(loan.events, booked_at, strict=True):
        if not isinstance(event, Payment):
            continue
        paid_with = None if event.channel is Channel.MANUAL else card
        receipt = receipt_of(loan, state, event, paid_with, issued)
        left = Money(left - receipt.principal)
        receipts.append(replace(receipt, outstanding_principal=left))
    return tuple(receipts)


def _booked_at(event: Event) -> datetime:
    by_hand = isinstance(event, Payment) and event.channel is Channel.MANUAL
    return datetime.combine(event.effective, _DAYTIME if by_hand else _NIGHT)
