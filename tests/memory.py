"""The loans' ports kept in plain memory: the services run on them as on a database, in a
fraction of the time, for tests of what a service decides (not of how a store keeps it).

A unit of work changes the world only if it returns: what it did is thrown away when it
raises, as a rolled-back transaction's would be. Debits and payouts change balances held here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from fenqi.catalog import shipped_catalog_text
from fenqi.channels.gateways import DEBITED
from fenqi.domain.ledger import Line
from fenqi.domain.money import Money
from fenqi.domain.products import Product, catalog_definitions, parse_definition
from fenqi.domain.withholding import SETTLED, DebitRequest, Kind, Outcome, Status
from fenqi.loans.aggregate import Loan
from fenqi.loans.booking import Booking, saved
from fenqi.loans.methods import PaymentMethod
from fenqi.loans.ports import (
    ApiKey,
    AuditEntry,
    BorrowerAccount,
    History,
    KeyHolder,
    QueuedSms,
    SentSms,
    SessionHolder,
    Stamp,
    StoredEntry,
    StoredEvent,
    StoredLine,
    UnitOfWork,
    User,
)
from fenqi.loans.receipts import Receipt, parse_stored, stored
from fenqi.ports import Debit, GatewayAnswer, Gateways
from fenqi.services.context import Context
from fenqi.services.errors import NotFoundError
from fenqi.services.policy import operator
from fenqi.store.borrowers import is_phone_suffix
from fenqi.store.documents import event_document
from fenqi.store.errors import StaleError

T = TypeVar("T")
Document = dict[str, Any]


class _Booked(NamedTuple):
    """A journal entry as kept: the day it was booked on, and the entry."""

    day: date
    lines: tuple[Line, ...]
    memo: str
    event_seq: int | None


@dataclass
class World:
    """Everything the ports keep: what a database would hold."""

    loans: dict[int, Loan] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    consents: dict[int, Document] = field(default_factory=dict)
    receipts: dict[tuple[int, int], Document] = field(default_factory=dict)
    journal: dict[int, list[tuple[int, _Booked]]] = field(default_factory=dict)  # numbered
    booked_at: dict[tuple[int, int], datetime] = field(default_factory=dict)
    limits: dict[int, Money] = field(default_factory=dict)  # credit limit by borrower
    methods: dict[int, PaymentMethod] = field(default_factory=dict)
    balances: dict[str, Money] = field(default_factory=dict)  # by token_ref
    audit: list[Document] = field(default_factory=list)
    keys: dict[tuple[str, str], tuple[str, Document]] = field(default_factory=dict)
    requests: dict[str, DebitRequest] = field(default_factory=dict)  # by order id
    gateway_orders: dict[str, GatewayAnswer] = field(default_factory=dict)  # the gateway's own
    windows: dict[str, tuple[int, datetime]] = field(default_factory=dict)  # throttles: by key
    outbox: dict[tuple[date, int, str], QueuedSms] = field(default_factory=dict)  # in its order
    sent: list[SentSms] = field(default_factory=list)  # the contact log, oldest first
    people: dict[int, BorrowerAccount] = field(default_factory=dict)  # borrowers by id
    users: dict[str, tuple[User, str]] = field(default_factory=dict)  # with the password hash
    api_keys: dict[str, tuple[ApiKey, str]] = field(default_factory=dict)  # with the secret hash
    sessions: dict[str, tuple[str, str, str, datetime]] = field(default_factory=dict)  # by hash
    codes: dict[str, tuple[str, int, datetime]] = field(default_factory=dict)  # by phone

    def books(self, loan_id: int) -> dict[str, int]:
        """What the loan's accounts hold in its journal (debit minus credit)."""
        held: dict[str, int] = {}
        for _, entry in self.journal.get(loan_id, []):
            for line in entry.lines:
                held[line.account] = held.get(line.account, 0) + line.debit - line.credit
        return {account: total for account, total in held.items() if total}


class MemoryChannel:
    """Debits take from a balance (declined beyond it); tests set it, as the simulator's are
    set."""

    def __init__(self, world: World) -> None:
        self.world = world

    def debit(self, token_ref: str, amount: Money, idempotency_key: str) -> Debit:
        held = self.world.balances.get(token_ref, Money(0))
        if held < amount:
            return Debit(f"mem:{idempotency_key}", declined=f"insufficient funds: {held}")
        self.world.balances[token_ref] = Money(held - amount)
        return Debit(f"mem:{idempotency_key}")

    def set_balance(self, token_ref: str, balance: Money) -> None:
        self.world.balances[token_ref] = balance

    def balance(self, token_ref: str) -> Money:
        return self.world.balances.get(token_ref, Money(0))


class MemoryGateway:
    """A withholding gateway over the balances held here, answering at once; it keeps its
    orders, so an order sent twice takes the money once."""

    def __init__(self, units: MemoryUnits) -> None:
        self.units = units

    def request_debit(self, order_id: str, token_ref: str, amount: Money,
                      notify_url: str) -> GatewayAnswer:  # fmt: skip
        world = self.units.world
        if order_id not in world.gateway_orders:
            debit = MemoryChannel(world).debit(token_ref, amount, order_id)
            outcome = Outcome.FAILED if debit.declined else Outcome.SUCCEEDED
            world.gateway_orders[order_id] = GatewayAnswer(order_id, outcome, debit.reference,
                                                           debit.declined)  # fmt: skip
        return world.gateway_orders[order_id]

    def query(self, order_id: str) -> GatewayAnswer:
        return self.units.world.gateway_orders.get(order_id,
                                                   GatewayAnswer(order_id, Outcome.NOT_FOUND))  # fmt: skip

    def refund(self, refund_id: str, order_id: str, amount: Money) -> GatewayAnswer:
        """Puts ``amount`` back on the balance the debit ``order_id`` took it from, once."""
        world = self.units.world
        if refund_id not in world.gateway_orders:
            debit, taken = world.gateway_orders.get(order_id), world.requests.get(order_id)
            if debit is None or taken is None or debit.outcome is not Outcome.SUCCEEDED:
                answer = GatewayAnswer(refund_id, Outcome.FAILED, reason="no such debit")
            else:
                held = world.balances.get(taken.token_ref, Money(0))
                world.balances[taken.token_ref] = Money(held + amount)
                answer = GatewayAnswer(refund_id, Outcome.SUCCEEDED, f"mem:{refund_id}")
            world.gateway_orders[refund_id] = answer
        return world.gateway_orders[refund_id]

    def query_refund(self, refund_id: str) -> GatewayAnswer:
        return self.query(refund_id)

    def read_notification(self, headers: Mapping[str, str], body: bytes) -> GatewayAnswer:
        raise AssertionError("it sends no notifications")


class MemoryCounters:
    """The throttles' windows: one unit of work at a time, so each hit is atomic here."""

    def __init__(self, world: World) -> None:
        self.world = world

    def hit(self, key: str, at: datetime, seconds: int) -> tuple[int, datetime]:
        hits, started = self.world.windows.get(key, (0, at))
        if started <= at - timedelta(seconds=seconds):
            hits, started = 0, at
        self.world.windows[key] = (hits + 1, started)
        return self.world.windows[key]

    def give_back(self, key: str) -> None:
        if key in self.world.windows and self.world.windows[key][0] > 0:
            hits, started = self.world.windows[key]
            self.world.windows[key] = (hits - 1, started)

    def prune(self, before: datetime) -> None:
        self.world.windows = {key: (hits, started) for key, (hits, started)
                              in self.world.windows.items() if started >= before}  # fmt: skip


class MemoryOutbox:
    """The outbox by (day, loan, stage), the order messages are sent in, and the contact log."""

    def __init__(self, world: World) -> None:
        self.world = world

    def take_turn(self) -> datetime | None:
        sent = [m.sent_at for m in self.world.outbox.values() if m.sent_at is not None]
        return max(sent, default=None)

    def expire(self, before: date) -> int:
        gone = [key for key, m in self.world.outbox.items()
                if m.status == "pending" and m.day < before]  # fmt: skip
        for key in gone:
            self.world.outbox[key] = self.world.outbox[key]._replace(status="expired")
        return len(gone)

    def due(self, through: date, after: tuple[date, int, str] | None,
            limit: int) -> list[QueuedSms]:  # fmt: skip
        return [self.world.outbox[key] for key in sorted(self.world.outbox)
                if self.world.outbox[key].status == "pending" and key[0] <= through
                and (after is None or key > after)][:limit]  # fmt: skip

    def sent_between(self, borrowers: set[int], start: datetime, end: datetime) -> dict[int, int]:
        counts: dict[int, int] = {}
        for text in self.world.sent:
            if text.borrower_id in borrowers and text.loan_id and start <= text.sent_at < end:
                counts[text.borrower_id] = counts.get(text.borrower_id, 0) + 1
        return counts

    def claim(self, message: QueuedSms, at: datetime) -> None:
        key = (message.day, message.loan_id, message.stage)
        self.world.outbox[key] = message._replace(status="sending", sent_at=at, reason=None)
        self.world.sent.append(SentSms(message.loan_id, message.borrower_id, message.phone,
                                       message.text, at))  # fmt: skip

    def settle(self, message: QueuedSms, status: str, reference: str | None,
               reason: str | None) -> bool:  # fmt: skip
        key = (message.day, message.loan_id, message.stage)
        known = self.world.outbox[key]
        if known.status != "sending":
            return False
        settled = known._replace(status=status, reference=reference, reason=reason)
        if status == "pending":
            assert known.sent_at is not None, "a message sending was claimed at a time"
            self.world.sent.remove(
                SentSms(known.loan_id, known.borrower_id, known.phone, known.text, known.sent_at)
            )
            settled = settled._replace(sent_at=None)
        self.world.outbox[key] = settled
        return True

    def stale(self, claimed_before: datetime) -> list[QueuedSms]:
        return [self.world.outbox[key] for key in sorted(self.world.outbox)
                if self.world.outbox[key].status == "sending"
                and (self.world.outbox[key].sent_at or claimed_before) < claimed_before]  # fmt: skip

    def pending(self, through: date) -> tuple[int, int]:
        pending = [m for m in self.world.outbox.values() if m.status == "pending"]
        return sum(1 for m in pending if m.day <= through), len(pending)

    def messages(self, status: str | None, limit: int) -> list[QueuedSms]:
        return [self.world.outbox[key] for key in sorted(self.world.outbox)
                if status is None or self.world.outbox[key].status == status][:limit]  # fmt: skip

    def of_borrower(self, borrower_id: int, through: date, limit: int) -> list[QueuedSms]:
        hers = [message for message in self.world.outbox.values()
                if message.borrower_id == borrower_id and message.day <= through]  # fmt: skip
        return sorted(hers, key=lambda message: (-message.day.toordinal(), message.loan_id,
                                                 message.stage))[:limit]  # fmt: skip

    def delivered(self, phone: str | None, limit: int) -> list[SentSms]:
        return [text for text in reversed(self.world.sent)
                if phone is None or text.phone == phone][:limit]  # fmt: skip

    def log_sign_in_code(self, borrower_id: int, phone: str, text: str, sent_at: datetime) -> None:
        self.world.sent.append(SentSms(0, borrower_id, phone, text, sent_at))


class MemoryCredentials:
    """Operators and keys kept with their hashes, sessions (kind, subject, CSRF token, expiry)
    by their token's hash, and codes (hash, tries, expiry) by phone: one unit of work at a time,
    so each try is atomic here."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.checked: dict[str, object] = {}

    def user(self, username: str, *, for_update: bool = False) -> User | None:
        kept = self.world.users.get(username)
        return None if kept is None else kept[0]

    def users(self) -> list[User]:
        return [user for _, (user, _) in sorted(self.world.users.items())]

    def password_hash(self, username: str) -> str | None:
        kept = self.world.users.get(username)
        return kept[1] if kept is not None and kept[0].disabled_at is None else None

    def add_user(self, username: str, password_hash: str, role: str, at: datetime) -> None:
        self.world.users[username] = (User(username, role, at, None), password_hash)

    def disable_user(self, username: str, at: datetime) -> int:
        user, password_hash = self.world.users[username]
        self.world.users[username] = (replace(user, disabled_at=at), password_hash)
        ended = [token for token, (kind, subject, _, _) in self.world.sessions.items()
                 if (kind, subject) == ("operator", username)]  # fmt: skip
        for token in ended:
            del self.world.sessions[token]
        return len(ended)

    def add_key(self, key_id: str, secret_hash: str, username: str, at: datetime) -> None:
        self.world.api_keys[key_id] = (ApiKey(key_id, username, False, at, None, None),
                                       secret_hash)  # fmt: skip

    def key(self, key_id: str, *, for_update: bool = False) -> ApiKey | None:
        kept = self.world.api_keys.get(key_id)
        return None if kept is None else kept[0]

    def keys(self, username: str | None) -> list[ApiKey]:
        listed = [key for key, _ in self.world.api_keys.values()
                  if username is None or key.username == username]  # fmt: skip
        return sorted(listed, key=lambda key: (key.created_at, key.key_id))

    def revoke_key(self, key_id: str, at: datetime) -> ApiKey:
        key, secret_hash = self.world.api_keys[key_id]
        self.world.api_keys[key_id] = (replace(key, revoked=True, revoked_at=at), secret_hash)
        return self.world.api_keys[key_id][0]

    def key_holder(self, key_id: str, loan_id: int | None) -> KeyHolder | None:
        if key_id not in self.world.api_keys:
            return None
        key, secret_hash = self.world.api_keys[key_id]
        user = self.world.users[key.username][0]
        return KeyHolder(secret_hash, key.revoked, key.last_used_at, user.username, user.role,
                         user.disabled_at, self._stamp(loan_id))  # fmt: skip

    def note_key_use(self, key_id: str, at: datetime, noted_before: datetime) -> None:
        key, secret_hash = self.world.api_keys[key_id]
        if key.last_used_at is None or key.last_used_at <= noted_before:
            self.world.api_keys[key_id] = (replace(key, last_used_at=at), secret_hash)

    def add_session(self, token_hash: str, kind: str, subject: str, csrf: str,
                    expires_at: datetime) -> None:  # fmt: skip
        self.world.sessions[token_hash] = (kind, subject, csrf, expires_at)

    def session_holder(self, token_hash: str, loan_id: int | None) -> SessionHolder | None:
        if token_hash not in self.world.sessions:
            return None
        kind, subject, csrf, expires_at = self.world.sessions[token_hash]
        kept = self.world.users.get(subject) if kind == "operator" else None
        user = None if kept is None else kept[0]
        return SessionHolder(kind, subject, csrf, expires_at,
                             None if user is None else user.username,
                             None if user is None else user.role,
                             None if user is None else user.disabled_at,
                             self._stamp(loan_id))  # fmt: skip

    def end_session(self, token_hash: str) -> None:
        self.world.sessions.pop(token_hash, None)

    def keep_code(self, phone: str, code_hash: str, expires_at: datetime) -> None:
        self.world.codes[phone] = (code_hash, 0, expires_at)

    def try_code(self, phone: str, at: datetime, attempts: int) -> str | None:
        if phone not in self.world.codes:
            return None
        code_hash, tried, expires_at = self.world.codes[phone]
        if tried >= attempts or expires_at <= at:
            return None
        self.world.codes[phone] = (code_hash, tried + 1, expires_at)
        return code_hash

    def code_expires(self, phone: str) -> datetime | None:
        kept = self.world.codes.get(phone)
        return None if kept is None else kept[2]

    def use_code(self, phone: str, code_hash: str) -> bool:
        if phone not in self.world.codes or self.world.codes[phone][0] != code_hash:
            return False
        del self.world.codes[phone]
        return True

    def prune_codes(self, at: datetime) -> None:
        self.world.codes = {phone: kept for phone, kept in self.world.codes.items()
                            if kept[2] >= at}  # fmt: skip

    def _stamp(self, loan_id: int | None) -> Stamp | None:
        loan = None if loan_id is None else self.world.loans.get(loan_id)
        return None if loan is None else Stamp(loan.borrower_id, loan.version)


class MemoryBorrowers:
    """Borrowers' accounts (a borrower given only a limit, ``MemoryUnits.borrower``, has a name
    and phone of her id) and the methods kept by id."""

    def __init__(self, world: World) -> None:
        self.world = world

    def get(self, borrower_id: int) -> BorrowerAccount | None:
        if borrower_id not in self.world.limits:
            return None
        return self.world.people.get(borrower_id, BorrowerAccount(
            borrower_id, f"borrower {borrower_id}", f"1{borrower_id:010d}",
            self.world.limits[borrower_id]))  # fmt: skip

    def _all(self) -> list[BorrowerAccount]:
        return [account for borrower in sorted(self.world.limits)
                if (account := self.get(borrower)) is not None]  # fmt: skip

    def with_phone(self, phone: str) -> int | None:
        return next((account.id for account in self._all() if account.phone == phone), None)

    def add(self, name: str, phone: str, credit_limit: Money) -> BorrowerAccount:
        account = BorrowerAccount(max(self.world.limits, default=0) + 1, name, phone, credit_limit)
        self.world.limits[account.id] = credit_limit
        self.world.people[account.id] = account
        return account

    def find(self, text: str, limit: int) -> list[BorrowerAccount]:
        loans = {loan.borrower_id for loan in self.world.loans.values()
                 if text in (loan.order_id, str(loan.id))}  # fmt: skip
        suffix = is_phone_suffix(text)
        return [account for account in self._all() if account.phone == text
                or (suffix and account.phone.endswith(text))
                or text in account.name or account.id in loans][:limit]  # fmt: skip

    def methods(self, borrower_id: int) -> list[PaymentMethod]:
        return [method for _, method in sorted(self.world.methods.items())
                if method.borrower_id == borrower_id and method.status == "active"]  # fmt: skip

    def add_method(self, borrower_id: int, kind: str, masked_account: str, token_ref: str, *,
                   is_default: bool) -> PaymentMethod:  # fmt: skip
        method = PaymentMethod(max(self.world.methods, default=0) + 1, borrower_id, kind,
                               masked_account, token_ref, is_default, "active")  # fmt: skip
        self.world.methods[method.id] = method
        return method

    def save_method(self, method: PaymentMethod) -> None:
        self.world.methods[method.id] = method


class MemorySms:
    """A gateway that keeps what it was handed, by phone, in the order it came, outside any unit
    of work (a unit undone does not take back what went): ``failing`` says, by phone, what it
    does instead of sending (raises that exception)."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, str]] = []
        self.failing: dict[str, BaseException] = {}

    def send(self, phone: str, text: str) -> str:
        if phone in self.failing:
            raise self.failing[phone]
        self.handed.append((phone, text))
        return f"mem-sms:{len(self.handed)}"


class MemoryLoans:
    def __init__(self, world: World) -> None:
        self.world = world

    def get(self, loan_id: int, *, for_update: bool = False, as_of: date | None = None) -> Loan:
        if loan_id not in self.world.loans:
            raise NotFoundError(f"no loan {loan_id}")
        return copy.deepcopy(self.world.loans[loan_id])

    def read(self, loan_id: int, as_of: date) -> Loan:
        return self.get(loan_id)  # kept whole in memory: nothing to start from but the first event

    def add(self, loan: Loan, opening: Booking, consent: Document) -> None:
        loan.id = max(self.world.loans, default=0) + 1
        self.world.orders[loan.order_id] = loan.id
        self.world.consents[loan.id] = consent
        self._keep(loan, opening)

    def save(self, loan: Loan, booking: Booking) -> None:
        if self.world.loans[loan.id].version != booking.version:
            raise StaleError(f"loan {loan.id} changed while this request was being worked out")
        self._keep(loan, booking)

    def _keep(self, loan: Loan, booking: Booking) -> None:
        numbered = enumerate((_Booked(booking.day, *entry) for entry in booking.entries),
                             start=2 * booking.version)  # fmt: skip
        self.world.journal.setdefault(loan.id, []).extend(numbered)
        for event in booking.events:
            self.world.booked_at[loan.id, event.seq] = datetime.now(UTC)
        for receipt in booking.receipts:
            self.world.receipts[loan.id, receipt.seq] = stored(receipt)
        self.world.audit.extend({"actor": entry.actor, "action": entry.action,
                                 "target": entry.target, "reason": entry.reason, "before": None,
                                 "after": dict(entry.after)} for entry in booking.audited)  # fmt: skip
        saved(loan, booking)
        self.world.loans[loan.id] = copy.deepcopy(loan)

    def ids(self) -> list[int]:
        return sorted(self.world.loans)

    def books(self, loan_id: int) -> dict[str, int]:
        return self.world.books(loan_id)

    def ids_of(self, borrower_id: int) -> list[int]:
        if borrower_id not in self.world.limits:
            raise NotFoundError(f"no borrower {borrower_id}")
        return sorted(i for i, loan in self.world.loans.items() if loan.borrower_id == borrower_id)

    def borrower_of(self, loan_id: int) -> int:
        return self.get(loan_id).borrower_id

    def stamp(self, loan_id: int) -> Stamp:
        if loan_id not in self.world.loans:
            raise NotFoundError(f"no loan {loan_id}")
        loan = self.world.loans[loan_id]
        return Stamp(loan.borrower_id, loan.version)

    def for_order(self, order_id: str) -> int | None:
        return self.world.orders.get(order_id)

    def consent(self, loan_id: int) -> Document | None:
        return self.world.consents.get(loan_id)

    def receipt(self, loan_id: int, seq: int) -> Receipt | None:
        kept = self.world.receipts.get((loan_id, seq))
        return None if kept is None else parse_stored(kept)

    def receipts(self, loan_id: int) -> list[Receipt]:
        return [parse_stored(kept) for (loan, _), kept in sorted(self.world.receipts.items())
                if loan == loan_id]  # fmt: skip

    def history(self, loan_id: int) -> History:
        """Its events and journal; the chart of accounts is the database's, so lines name
        their accounts by code."""
        events = []
        for event in self.get(loan_id).events:
            kind, payload = event_document(event)
            at = self.world.booked_at[loan_id, event.seq]
            events.append(StoredEvent(event.seq, kind, event.effective, at, payload))
        journal = self.world.journal.get(loan_id, [])
        entries = [StoredEntry(number, entry.day, entry.memo, entry.event_seq)
                   for number, entry in journal]  # fmt: skip
        lines = [StoredLine(number, line.account, int(line.debit), int(line.credit))
                 for number, entry in journal for line in entry.lines]  # fmt: skip
        return History(events, entries, lines, {})


class MemoryUnitOfWork:
    def __init__(self, world: World, products: dict[str, tuple[Product, Document]]) -> None:
        self.world = world
        self.loans = MemoryLoans(world)
        self.credentials = MemoryCredentials(world)  # one, for the credentials it checked
        self.products_kept = products

    def channel(self) -> MemoryChannel:
        return MemoryChannel(self.world)

    def trial_balance(self) -> list[tuple[str, int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for journal in self.world.journal.values():
            for _, entry in journal:
                for line in entry.lines:
                    debit, credit = totals.get(line.account, (0, 0))
                    totals[line.account] = (debit + line.debit, credit + line.credit)
        return [(account, *totals[account]) for account in sorted(totals)]

    def account_names(self) -> dict[str, str]:
        return {}  # the chart of accounts is the database's: accounts go by their codes

    def method(self, method_id: int) -> PaymentMethod | None:
        return self.world.methods.get(method_id)

    def default_method(self, borrower_id: int) -> PaymentMethod | None:
        return next((m for m in self.world.methods.values() if m.borrower_id == borrower_id
                     and m.is_default and m.status == "active"), None)  # fmt: skip

    def available_limit(self, borrower_id: int, *, lock: bool = False) -> Money:
        if borrower_id not in self.world.limits:
            raise NotFoundError(f"no borrower {borrower_id}")
        held = sum(loan.outstanding_principal for loan in self.world.loans.values()
                   if loan.borrower_id == borrower_id)  # fmt: skip
        return Money(max(self.world.limits[borrower_id] - held, 0))

    def product(self, code: str) -> tuple[Product, Document]:
        if code not in self.products_kept:
            raise NotFoundError(f'unknown product "{code}"')
        return self.products_kept[code]

    def products(self) -> dict[str, Document]:
        return {code: table for code, (_, table) in sorted(self.products_kept.items())}

    def keep_product(self, code: str, name: str, table: Document) -> Document | None:
        before = self.products_kept.get(code)
        self.products_kept[code] = (parse_definition(table, code), table)
        return None if before is None else before[1]

    def audit_entries(self, target: str | None, limit: int) -> list[AuditEntry]:
        entries = [AuditEntry(number, datetime.now(UTC), **entry)
                   for number, entry in enumerate(self.world.audit, start=1)
                   if target is None or (entry["target"] == target if target[-1:].isdigit()
                                         else entry["target"].startswith(target))]  # fmt: skip
        return entries[::-1][:limit]

    def audit(self, actor: str, action: str, target: str, reason: str, *,
              before: Document | None = None, after: Document | None = None) -> None:  # fmt: skip
        self.world.audit.append({"actor": actor, "action": action, "target": target,
                                 "reason": reason, "before": before, "after": after})  # fmt: skip

    def hold(self, scope: str, key: str) -> tuple[bool, tuple[str, Document] | None]:
        return True, self.recall(scope, key)  # one unit of work at a time

    def recall(self, scope: str, key: str) -> tuple[str, Document] | None:
        return self.world.keys.get((scope, key))

    def remember(self, scope: str, key: str, fingerprint: str, result: Document) -> None:
        self.world.keys[scope, key] = (fingerprint, copy.deepcopy(result))

    def debit_request(self, loan_id: int, order_id: str, *,
                      for_update: bool = False) -> DebitRequest | None:  # fmt: skip
        return self.world.requests.get(order_id)

    def add_debit_request(self, request: DebitRequest) -> DebitRequest:
        return self.world.requests.setdefault(request.order_id, request)

    def save_debit_request(self, request: DebitRequest) -> None:
        self.world.requests[request.order_id] = request

    def debit_requests(self, loan_id: int) -> list[DebitRequest]:
        return sorted((request for request in self.world.requests.values()
                       if request.loan_id == loan_id), key=lambda request: request.order_id)  # fmt: skip

    def open_debit_requests(self, untouched_since: datetime, limit: int) -> list[DebitRequest]:
        """Every open request: kept without when it was last touched, each is stale here."""
        return [request for request in self.world.requests.values()
                if request.status in (Status.PENDING, Status.UNKNOWN)][:limit]  # fmt: skip

    def unpaid_refunds(self, limit: int) -> list[DebitRequest]:
        refunds = [request for request in self.world.requests.values()
                   if request.kind is Kind.REFUND]  # fmt: skip
        unpaid = list(dict.fromkeys(request.loan_id for request in refunds
                                    if request.status is not Status.SUCCEEDED))[:limit]  # fmt: skip
        return [request for request in refunds if request.loan_id in unpaid]

    @property
    def batch(self) -> Any:
        raise AssertionError("the batch runs on the database only")

    def in_flight(self, loan_id: int) -> Money:
        return Money(sum(request.amount for request in self.world.requests.values()
                         if request.loan_id == loan_id and request.kind in (Kind.PAY,
                                                                            Kind.PREPAY)
                         and (request.status not in SETTLED or request.to_book())))  # fmt: skip

    @property
    def counters(self) -> MemoryCounters:
        return MemoryCounters(self.world)

    @property
    def borrowers(self) -> MemoryBorrowers:
        return MemoryBorrowers(self.world)

    @property
    def outbox(self) -> MemoryOutbox:
        return MemoryOutbox(self.world)


class MemoryUnits:
    """Runs units of work one at a time on ``world``, undoing one that raises."""

    def __init__(self) -> None:
        self.world = World()
        self.products = dict(catalog_definitions(shipped_catalog_text()))
        self.sms = MemorySms()

    def __call__(self, work: Callable[[UnitOfWork], T], *, reading: bool = False) -> T:
        before = copy.deepcopy(self.world)
        try:
            return work(MemoryUnitOfWork(self.world, self.products))
        except BaseException:
            self.world = before
            raise

    def context(self, actor: str = "test") -> Context:
        """A context whose units of work run here (it has no database), acting as the operator
        ``actor``."""
        gateways = Gateways(dict.fromkeys(DEBITED, MemoryGateway(self)), "memory:")
        return Context(None, _no_session, operator(actor), sms=self.sms,  # type: ignore[arg-type]
                       gateways=gateways, units=self)  # fmt: skip

    def borrower(self, borrower_id: int, limit: str, *, card: str | None = None) -> int | None:
        """A borrower with a credit ``limit``; with a funded default card holding ``card``."""
        self.world.limits[borrower_id] = Money.parse(limit)
        if card is None:
            return None
        method_id = len(self.world.methods) + 1
        token = f"tok_{method_id}"
        self.world.methods[method_id] = PaymentMethod(
            method_id, borrower_id, "bank_card", f"6222 **** {method_id:04d}", token, True, "active"
        )
        self.world.balances[token] = Money.parse(card)
        return method_id


def _no_session(_session: object) -> Any:
    raise AssertionError("an in-memory unit of work has no database session")
