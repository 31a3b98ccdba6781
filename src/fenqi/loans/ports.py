"""The ports the services get and save loans through (the repository and unit-of-work
patterns): ``Loans``, the loans' repository, and ``UnitOfWork``, one transaction with the loans
and what else a servicing operation reads and writes. The store implements them on a database;
the tests also on plain memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

from fenqi.domain.money import Money
from fenqi.domain.products import Product
from fenqi.domain.withholding import DebitRequest
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import Booking
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.receipts import Receipt
from fenqi.ports import PaymentChannel

T = TypeVar("T")
Document = dict[str, Any]


class StoredEvent(NamedTuple):
    seq: int
    kind: str
    effective: date
    booked_at: datetime
    payload: Mapping[str, Any]


class StoredEntry(NamedTuple):
    entry_no: int
    booked_date: date
    memo: str
    event_seq: int | None


class StoredLine(NamedTuple):
    entry_no: int
    account: str
    debit: int
    credit: int


class History(NamedTuple):
    """A loan's events and journal as stored, oldest first, and the chart of accounts."""

    events: list[StoredEvent]
    entries: list[StoredEntry]
    lines: list[StoredLine]
    account_names: dict[str, str]


class Stamp(NamedTuple):
    """Whose a loan is and the version it is at (every write to the loan moves it on): what
    tells a bill kept for the loan from a stale one."""

    borrower_id: int
    version: int


class Borrower(NamedTuple):
    """A borrower as the batch writes to her: her name and phone, and her default method."""

    id: int
    name: str
    phone: str
    default_method: PaymentMethod | None


class AuditEntry(NamedTuple):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    before: Document | None
    after: Document | None


class Loans(Protocol):
    """The loans' repository: a loan read whole, and saved one booking at a time."""

    def get(self, loan_id: int, *, for_update: bool = False, as_of: date | None = None) -> Loan:
        """The loan with its events (``NotFoundError`` if there is none). A unit of work that
        will write it asks ``for_update``: writers of one loan then take turns. One that only
        replays it to ``as_of`` or later days (a payment on ``as_of``) may get it from a
        checkpoint (``Loan.since``), with only the events after it, not its history."""
        ...

    def read(self, loan_id: int, as_of: date) -> Loan:
        """The loan for reading its state on ``as_of``, written with nothing: its events may be
        only those after a checkpoint it starts from (``Loan.since``), never its history."""
        ...

    def add(self, loan: Loan, opening: Booking, consent: Document) -> None:
        """Stores a new loan (giving it its id), its opening books, its order and what the
        borrower consented to."""
        ...

    def save(self, loan: Loan, booking: Booking) -> None:
        """Stores ``booking``; ``StaleError`` if the loan's version moved since it was read."""
        ...

    def ids(self) -> list[int]:
        """Every loan, oldest first."""
        ...

    def ids_of(self, borrower_id: int) -> list[int]:
        """A borrower's loans, oldest first (``NotFoundError`` if there is no such borrower)."""
        ...

    def borrower_of(self, loan_id: int) -> int:
        """Whose the loan is (``NotFoundError`` if there is none)."""
        ...

    def stamp(self, loan_id: int) -> Stamp:
        """Whose the loan is and its version, from its row alone (``NotFoundError`` if there
        is none)."""
        ...

    def for_order(self, order_id: str) -> int | None:
        """The loan an order was made into, if any."""
        ...

    def consent(self, loan_id: int) -> Document | None:
        """What the borrower was shown when she agreed to the loan."""
        ...

    def receipt(self, loan_id: int, seq: int) -> Receipt | None: ...

    def receipts(self, loan_id: int) -> list[Receipt]:
        """The loan's receipts, oldest payment first."""
        ...

    def history(self, loan_id: int) -> History: ...

    def books(self, loan_id: int) -> dict[str, int]:
        """What the loan's accounts hold in its journal (debit minus credit)."""
        ...


class Counters(Protocol):
    """The throttles' counters of tries, each in a fixed window (``services/throttles.py``),
    shared by every server process: each one is moved by one atomic statement, so tries that
    arrive together are all counted."""

    def hit(self, key: str, at: datetime, seconds: int) -> tuple[int, datetime]:
        """One more try under ``key``: a new window starting ``at`` if the last one started
        ``seconds`` or more before it, else one more in the current window. Returns the count
        and when its window started."""
        ...

    def give_back(self, key: str) -> None:
        """One try fewer under ``key`` (never below none)."""
        ...

    def prune(self, before: datetime) -> None:
        """Forgets the windows that started before ``before``."""
        ...


class BorrowerAccount(NamedTuple):
    """A borrower as her account keeps her: her name, her phone and her credit limit."""

    id: int
    name: str
    phone: str
    credit_limit: Money


class Borrowers(Protocol):
    """The borrowers' repository, with their bound payment methods."""

    def get(self, borrower_id: int) -> BorrowerAccount | None: ...

    def with_phone(self, phone: str) -> int | None:
        """The borrower whose phone it is, if any."""
        ...

    def add(self, name: str, phone: str, credit_limit: Money) -> BorrowerAccount:
        """A new borrower, given her id."""
        ...

    def find(self, text: str, limit: int) -> list[BorrowerAccount]:
        """The borrowers whose phone it is, whose name holds it, or with a loan whose order id
        or loan id it is; by id."""
        ...

    def methods(self, borrower_id: int) -> list[PaymentMethod]:
        """Her active methods, oldest first."""
        ...

    def add_method(self, borrower_id: int, kind: str, masked_account: str, token_ref: str, *,
                   is_default: bool) -> PaymentMethod:  # fmt: skip
        """A method bound now, active, given its id."""
        ...

    def save_method(self, method: PaymentMethod) -> None:
        """Stores whether a method is the default, and its status."""
        ...


class QueuedSms(NamedTuple):
    """A message in the outbox: what the batch queued for a loan on a day at a dunning stage,
    and where it is (``status``: pending, sending, sent, unknown or expired; ``sent_at`` when it
    was handed to the gateway; the gateway's ``reference`` for it; ``reason``: why the last
    try did not send it, or why its outcome is not known)."""

    loan_id: int
    day: date
    stage: str
    borrower_id: int
    phone: str
    text: str
    status: str
    sent_at: datetime | None
    reference: str | None = None
    reason: str | None = None


class SentSms(NamedTuple):
    """A text handed to the SMS gateway, as the contact log keeps it (``loan_id`` 0: a sign-in
    code, which names no loan)."""

    loan_id: int
    borrower_id: int
    phone: str
    text: str
    sent_at: datetime


class Outbox(Protocol):
    """The SMS outbox the batch fills and the dispatcher empties, and the contact log of every
    text handed to the gateway."""

    def take_turn(self) -> datetime | None:
        """Waits for this unit of work's turn among dispatchers (it keeps it until it ends), and
        says when messages were last sent."""
        ...

    def expire(self, before: date) -> int:
        """Marks expired the pending messages of days before ``before``; how many."""
        ...

    def due(self, through: date, after: tuple[date, int, str] | None,
            limit: int) -> list[QueuedSms]:  # fmt: skip
        """Up to ``limit`` pending messages of ``through`` and the days before, after the
        (day, loan, stage) ``after``, oldest day first; held for this unit of work."""
        ...

    def sent_between(self, borrowers: set[int], start: datetime, end: datetime) -> dict[int, int]:
        """How many texts naming a loan (no sign-in codes) each borrower was sent from
        ``start`` to before ``end``."""
        ...

    def claim(self, message: QueuedSms, at: datetime) -> None:
        """Marks a pending message sending from ``at`` and records it in the contact log: it
        is about to be handed to the gateway, outside this unit of work, and counts against its
        borrower's cap from now."""
        ...

    def settle(self, message: QueuedSms, status: str, reference: str | None,
               reason: str | None) -> bool:  # fmt: skip
        """Records what came of handing a sending message over: ``sent`` (with the gateway's
        ``reference``) or ``unknown`` (no answer: it may have gone, and stays in the contact
        log); ``pending`` (the gateway refused it, ``reason``) takes it out of the contact log
        and puts it back for a later dispatch. False, and nothing done, if it is not sending."""
        ...

    def stale(self, claimed_before: datetime) -> list[QueuedSms]:
        """The messages still sending that were claimed before ``claimed_before``: a dispatcher
        stopped between handing them over and recording the outcome."""
        ...

    def pending(self, through: date) -> tuple[int, int]:
        """The pending messages: those of ``through`` and before, and all of them."""
        ...

    def messages(self, status: str | None, limit: int) -> list[QueuedSms]:
        """Up to ``limit`` messages (only those of ``status``) in the order they are sent."""
        ...

    def delivered(self, phone: str | None, limit: int) -> list[SentSms]:
        """The latest texts handed to the gateway (only those to ``phone``), newest first."""
        ...

    def of_borrower(self, borrower_id: int, through: date, limit: int) -> list[QueuedSms]:
        """Up to ``limit`` of the messages the batch wrote to a borrower for days up to
        ``through``, whatever became of their texts, the latest day first."""
        ...

    def log_sign_in_code(self, borrower_id: int, phone: str, text: str, sent_at: datetime) -> None:
        """Records in the contact log a sign-in code texted at once (it names no loan, so the
        dunning daily cap does not count it)."""
        ...


@dataclass(frozen=True)
class User:
    """An operator as the console lists her (never her password's hash)."""

    username: str
    role: str
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class ApiKey:
    """An API key as it is listed: its id and dates, never its secret nor the secret's hash."""

    key_id: str
    username: str
    revoked: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class KeyHolder:
    """An API key as a request is checked against it: its secret's hash, its operator, and the
    stamp of the plan asked about with it (None: none asked about, or no such plan)."""

    secret_hash: str
    revoked: bool
    last_used_at: datetime | None
    username: str
    role: str
    disabled_at: datetime | None
    stamp: Stamp | None


@dataclass(frozen=True)
class SessionHolder:
    """A session as a request is checked against it: whose it is (``kind`` operator or
    borrower, ``subject`` her user name or borrower id), its CSRF token and expiry, the
    operator's row when it is an operator's (None: no such operator), and the stamp of the plan
    asked about with it (None: none asked about, or no such plan)."""

    kind: str
    subject: str
    csrf: str
    expires_at: datetime
    username: str | None
    role: str | None
    disabled_at: datetime | None
    stamp: Stamp | None


class UnansweredError(Exception):
    """A quick read had no answer (the database down or slow, or not reachable from the event
    loop asking): the caller asks again in a unit of work, where a failure is said as always."""


class QuickReads(Protocol):
    """What every API request asks first, read on the server's event loop with no thread and
    no transaction: the credential's holder, with the stamp of the plan a bill view asks about
    (the statements of ``Credentials.key_holder`` and ``session_holder``). A view whose bill the
    process keeps for that stamp is then answered at once; a write knows its caller before it
    goes to the thread pool. Raises ``UnansweredError`` rather than wait past the limits or
    fail."""

    async def key_holder(self, key_id: str, loan_id: int | None) -> KeyHolder | None:
        """``Credentials.key_holder``, asked about plan ``loan_id`` (None: about none)."""
        ...

    async def session_holder(self, token_hash: str, loan_id: int | None) -> SessionHolder | None:
        """``Credentials.session_holder``, asked about plan ``loan_id`` (None: about none)."""
        ...


class Credentials(Protocol):
    """Operators, their API keys, sessions and borrowers' one-time sign-in codes, as hashes
    (``services/credentials.py`` hashes; a secret is never kept). The writes that guard against
    guessing are single atomic statements, so that requests arriving together are all counted."""

    @property
    def checked(self) -> dict[str, object]:
        """Who each credential checked in this unit of work belongs to, by its token: a
        service may ask again at no cost."""
        ...

    def user(self, username: str, *, for_update: bool = False) -> User | None:
        """An operator (``for_update``: her row held for the rest of the unit of work)."""
        ...

    def users(self) -> list[User]:
        """Every operator, by name."""
        ...

    def password_hash(self, username: str) -> str | None:
        """An operator's password hash, unless there is no such operator or she is disabled."""
        ...

    def add_user(self, username: str, password_hash: str, role: str, at: datetime) -> None: ...

    def disable_user(self, username: str, at: datetime) -> int:
        """Marks an operator disabled ``at`` and ends her sessions; how many it ended."""
        ...

    def add_key(self, key_id: str, secret_hash: str, username: str, at: datetime) -> None: ...

    def key(self, key_id: str, *, for_update: bool = False) -> ApiKey | None: ...

    def keys(self, username: str | None) -> list[ApiKey]:
        """The keys (all, or one operator's), oldest first."""
        ...

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey:
        """Marks a key (read in this unit of work) revoked ``at``; the key as it now is."""
        ...

    def key_holder(self, key_id: str, loan_id: int | None) -> KeyHolder | None:
        """A key with its operator, and the stamp of plan ``loan_id`` if one is asked about:
        one statement (a bill view's one round trip)."""
        ...

    def note_key_use(self, key_id: str, at: datetime, noted_before: datetime) -> None:
        """Writes the key's last use ``at``, unless it was last noted after ``noted_before``
        (by a request at the same time): one conditional statement."""
        ...

    def add_session(self, token_hash: str, kind: str, subject: str, csrf: str,
                    expires_at: datetime) -> None: ...  # fmt: skip

    def session_holder(self, token_hash: str, loan_id: int | None) -> SessionHolder | None:
        """A session with its operator if it is an operator's, and the stamp of plan
        ``loan_id`` if one is asked about: one statement, as ``key_holder``."""
        ...

    def end_session(self, token_hash: str) -> None: ...

    def keep_code(self, phone: str, code_hash: str, expires_at: datetime) -> None:
        """The phone's new code, replacing the last one, with no tries made against it."""
        ...

    def try_code(self, phone: str, at: datetime, attempts: int) -> str | None:
        """Takes one try at the phone's code, if it is live at ``at`` and fewer than
        ``attempts`` were made: one atomic statement, so that however many tries arrive at
        once, at most ``attempts`` get one. The code's hash, to the try that got one."""
        ...

    def code_expires(self, phone: str) -> datetime | None:
        """When the phone's code expires, if it has one."""
        ...

    def use_code(self, phone: str, code_hash: str) -> bool:
        """Forgets the phone's code if it is still ``code_hash``; whether it was (a twin
        request may have used it a moment ago)."""
        ...

    def prune_codes(self, at: datetime) -> None:
        """Forgets the codes expired at ``at`` (rows another request holds are left for later,
        not waited for)."""
        ...


@dataclass(frozen=True)
class RunRecord:
    """A run as stored."""

    id: int
    business_date: date
    status: str  # running | done | failed
    started_at: datetime
    finished_at: datetime | None
    counts: Document
    error: str | None
    caught_up_from: date | None


@dataclass(frozen=True)
class JobRecord:
    """A chunk of a run as stored."""

    run_id: int
    chunk_no: int
    business_date: date
    first_loan_id: int
    last_loan_id: int
    status: str  # queued | done | failed
    worker: str | None
    finished_at: datetime | None
    counts: Document | None
    attempts: int
    error: str | None


ChunkFigures = dict[str, int]
# What a run whose chunks are all settled comes to: its status, its error and its counts.
RunOutcome = Callable[[list[JobRecord], ChunkFigures], tuple[str, str | None, Document]]


class Batch(Protocol):
    """What the nightly batch reads and writes (``services/close_of_business.py``): its runs
    and their chunks (the job queue, shared by every worker), and a chunk of loans read and
    written whole, a statement per table. The batch runs on the database only."""

    def first_behind(self, day: date) -> date | None:
        """The first day before ``day`` on which a loan has work not closed yet, if any."""
        ...

    def first_opened_if_idle(self, day: date) -> date | None:
        """When nothing is due on ``day``, the day the first loan was opened."""
        ...

    def chunk(self, day: date, first: int, last: int) -> list[Loan]:
        """The loans from ``first`` to ``last`` with work on ``day``, from their checkpoints."""
        ...

    def add_requests(self, requests: list[DebitRequest]) -> list[DebitRequest]:
        """The chunk's debit requests, recorded pending (those recorded already, as they
        stand)."""
        ...

    def requests(self, day: date, first: int, last: int) -> list[DebitRequest]:
        """The chunk's debit requests of ``day``, held for this unit of work."""
        ...

    def save_requests(self, requests: Sequence[DebitRequest]) -> None: ...

    def borrowers(self, borrower_ids: set[int]) -> dict[int, Borrower]: ...

    def save(self, booked: Sequence[tuple[Loan, Booking]], outbox: Sequence[Document],
             moves: Sequence[Document]) -> int:  # fmt: skip
        """A chunk's bookings, notices and bucket moves; the rows written."""
        ...

    def aging(self, day: date) -> tuple[list[tuple[int, int, str]], int]:
        """Each loan opened by ``day`` that the batch has not closed past it: its DPD,
        outstanding principal and status as its row holds them; and how many loans still await
        the batch for ``day``."""
        ...

    def loans_closed_past(self, day: date) -> list[Loan]:
        """The loans opened by ``day`` that the batch has closed past it, with every event
        (to replay to ``day``)."""
        ...

    def take_up(self, day: date, caught_up_from: date | None) -> int | None:
        """The run of ``day`` that is not done, if any, running once more."""
        ...

    def new_run(self, day: date, chunk_size: int, caught_up_from: date | None) -> int | None:
        """A run for ``day`` with its chunks queued; None, and no run, when nothing is due."""
        ...

    def business_date(self, run_id: int) -> date | None: ...

    def take_job(self, run_id: int | None, today: date, worker: str,
                 lease: timedelta) -> JobRecord | None:  # fmt: skip
        """The next queued chunk (of ``run_id``, or of any run) of a day up to ``today``,
        leased to ``worker`` for ``lease``."""
        ...

    def release(self, job: JobRecord) -> None:
        """Ends the chunk's lease: its gateway calls are over."""
        ...

    def hold(self, job: JobRecord) -> bool:
        """Whether the chunk is still to do and this unit of work holds it."""
        ...

    def job_done(self, job: JobRecord, counts: Document, worker: str) -> None: ...

    def job_failed(self, run_id: int, chunk_no: int, said: str, worker: str,
                   max_attempts: int) -> str | None:  # fmt: skip
        """Records a chunk's failed try, queueing it again or failing it for good at the
        ``max_attempts``th; the chunk's status (None: it was not queued)."""
        ...

    def settle_run(self, run_id: int, outcome: RunOutcome) -> RunRecord:
        """Once no chunk of the run is queued, records what ``outcome`` makes of its chunks."""
        ...

    def chunk_figures(self, run_ids: Sequence[int]) -> dict[int, ChunkFigures]:
        """Each run's chunks, done, failed and queued, as they stand."""
        ...

    def runs(self, limit: int) -> list[RunRecord]: ...

    def run(self, run_id: int) -> RunRecord | None: ...

    def jobs(self, run_id: int) -> list[JobRecord]: ...


class UnitOfWork(Protocol):
    """One transaction: what it changes is kept when the work returns, and none of it when the
    work raises."""

    @property
    def loans(self) -> Loans: ...

    def channel(self) -> PaymentChannel:
        """The payment channel, within this transaction: it moves no money (the simulator's
        keeps simulation mode's balances)."""
        ...

    def trial_balance(self) -> list[tuple[str, int, int]]:
        """Each account's debits and credits over every posting, by account code."""
        ...

    def account_names(self) -> dict[str, str]:
        """Each account's name in the chart of accounts, by its code."""
        ...

    def method(self, method_id: int) -> PaymentMethod | None: ...

    def default_method(self, borrower_id: int) -> PaymentMethod | None:
        """The borrower's active default method, if she has one."""
        ...

    def available_limit(self, borrower_id: int, *, lock: bool = False) -> Money:
        """The borrower's credit limit less the principal her plans still hold (``lock``: her
        row held for the rest of the unit of work); ``NotFoundError`` for no borrower."""
        ...

    def product(self, code: str) -> tuple[Product, Document]:
        """A product and its defining table, or ``NotFoundError`` that lists what there is."""
        ...

    def products(self) -> dict[str, Document]:
        """Every product's defining table, by code, in the order of their codes."""
        ...

    def keep_product(self, code: str, name: str, table: Document) -> Document | None:
        """Adds a product, or replaces the one of that code; returns the table it replaced."""
        ...

    def audit_entries(self, target: str | None, limit: int) -> list[AuditEntry]:
        """The latest entries of the audit log, newest first; only those about ``target`` if
        given: ``loan:12`` exactly (not ``loan:120``), a beginning (``loan:``, ``user:wa``) as
        every target that begins so."""
        ...

    def audit(self, actor: str, action: str, target: str, reason: str, *,
              before: Document | None = None,
              after: Document | None = None) -> None:  # fmt: skip
        """Records who did what to which thing, why, and what it was before and after. The
        reason is a person's own words ("" when the action needs none: the action says it)."""
        ...

    def hold(self, scope: str, key: str) -> tuple[bool, tuple[str, Document] | None]:
        """Holds an idempotency key for this unit of work (False when another unit of work
        holds it now), and gives the fingerprint and result stored with it, if any. A result
        stored by a unit that let go of the key just as this one took it may be missed; the
        key's row, written once, then refuses this unit as a conflict, to run again."""
        ...

    def recall(self, scope: str, key: str) -> tuple[str, Document] | None:
        """The fingerprint and result stored with an idempotency key, if any."""
        ...

    def remember(self, scope: str, key: str, fingerprint: str, result: Document) -> None: ...

    def debit_request(self, loan_id: int, order_id: str, *,
                      for_update: bool = False) -> DebitRequest | None:  # fmt: skip
        """A withholding request by its order id (``for_update``: its row held, so answers
        arriving together are applied one after the other)."""
        ...

    def add_debit_request(self, request: DebitRequest) -> DebitRequest:
        """Records ``request`` pending, or gives the one recorded under its order id already."""
        ...

    def save_debit_request(self, request: DebitRequest) -> None:
        """Stores a request as an answer or a booking left it."""
        ...

    def debit_requests(self, loan_id: int) -> list[DebitRequest]:
        """Every request of the loan: its debits and its refunds."""
        ...

    def open_debit_requests(self, untouched_since: datetime, limit: int) -> list[DebitRequest]:
        """Requests still pending or unknown that no answer has touched since
        ``untouched_since``, oldest first: what the reconciler asks the gateways about."""
        ...

    def unpaid_refunds(self, limit: int) -> list[DebitRequest]:
        """The refund requests of every loan that has a refund not paid (pending, unknown or
        failed), up to ``limit`` such loans, oldest first."""
        ...

    def in_flight(self, loan_id: int) -> Money:
        """What the loan's payments still in the gateways' hands come to: requested, and not
        failed nor booked yet."""
        ...

    @property
    def counters(self) -> Counters:
        """The throttles' counters, in this transaction."""
        ...

    @property
    def borrowers(self) -> Borrowers:
        """The borrowers and their methods, in this transaction."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The SMS outbox and the contact log, in this transaction."""
        ...

    @property
    def credentials(self) -> Credentials:
        """Operators, API keys, sessions and sign-in codes, in this transaction."""
        ...

    @property
    def batch(self) -> Batch:
        """The nightly batch's runs, chunks and bulk reads and writes, in this transaction."""
        ...


class Units(Protocol):
    """Where units of work run: ``work`` in one, again on fresh state when another writer got
    there first (as far as the store can tell), its result returned. ``reading``: work that
    writes nothing of its own, which a database may run without a transaction around it."""

    def __call__(self, work: Callable[[UnitOfWork], T], *, reading: bool = False) -> T: ...
