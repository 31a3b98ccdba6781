"""Dunning (催收) rules: which messages a loan is owed on a day, and their wording
(docs/domain.md#dunning).

``notices`` reads a replayed ``LoanState``: a reminder before a due date, a notice on it, and once
grace has passed an overdue notice on the first, third and seventh day, then weekly. ``message``
words a notice for one borrower. Every template says who is writing (the registered signature and
the lender's name), to whom (a masked name), about what (the order, the amount and its breakdown,
the due date, the days overdue), how to pay (official channels only), whom to call (the official
hotline), and, when overdue, the contractual consequences as plain facts and an offer to talk about
hardship. None threatens, hurries, or names anyone but the borrower. The wording is data that a
test reads whole, so nothing forbidden can slip into a template unseen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from enum import StrEnum
from typing import NamedTuple

from fenqi.domain.collection import CLOSED
from fenqi.domain.loan import InstallmentState, InstallmentStatus, LoanState
from fenqi.domain.money import Money
from fenqi.domain.products import Product

OVERDUE_DAYS = (1, 3, 7)  # overdue notices on these days after grace, then every WEEK days
WEEK = 7


class Stage(StrEnum):
    REMINDER = "reminder"  # a few days before a due date
    DUE = "due"  # on the due date
    OVERDUE = "overdue"  # after grace, on the overdue days


class Notice(NamedTuple):
    """One message the batch owes a borrower on a day."""

    stage: Stage
    step: str  # "reminder", "due", "overdue-1", "overdue-3", "overdue-7", "overdue-14", …
    period: int  # the installment it is about (for overdue: the oldest overdue one)
    due_date: date
    days_overdue: int  # the loan's DPD on the day (0 for reminder and due)
    principal: Money  # the breakdown of the amount asked for
    interest: Money
    fee: Money  # includes late fees
    penalty: Money

    @property
    def amount(self) -> Money:
        return self.principal + self.interest + self.fee + self.penalty


def notices(state: LoanState, policy: Product, day: date) -> tuple[Notice, ...]:
    """The messages the loan is owed on ``day`` (``state`` is the loan as of ``day``): a reminder
    for each unpaid installment due ``policy.reminder_days`` later, a due-day notice for each
    unpaid one due that day (a product with ``reminder_days = 0`` sends only that), and at most
    one overdue notice. A loan that is settled, cancelled or written off is owed none."""
    if state.status in CLOSED:
        return ()
    stages = [(Stage.DUE, day)]
    if policy.reminder_days:
        stages.insert(0, (Stage.REMINDER, day + timedelta(days=policy.reminder_days)))
    found = [
        _installment_notice(stage, row)
        for stage, due in stages
        for row in state.installments
        if row.due_date == due and row.status is not InstallmentStatus.PAID
    ]
    overdue = _overdue_notice(state, policy, day)
    return tuple(found) if overdue is None else (*found, overdue)


def _installment_notice(stage: Stage, row: InstallmentState) -> Notice:
    """A reminder or due-day notice: what that one installment still asks for."""
    return Notice(stage, stage.value, row.period, row.due_date, 0, *_unpaid((row,)))


def _overdue_notice(state: LoanState, policy: Product, day: date) -> Notice | None:
    """The overdue notice on an overdue day of the oldest overdue installment (day 1 is the
    first day after grace), asking for everything fallen due and unpaid."""
    oldest = next((r for r in state.installments if r.status is InstallmentStatus.OVERDUE), None)
    if oldest is None:
        return None
    overdue_day = (day - oldest.due_date).days - policy.grace_days
    if not is_overdue_notice_day(overdue_day):
        return None
    fallen_due = (row for row in state.installments if row.billed)
    step = f"{Stage.OVERDUE.value}-{overdue_day}"
    return Notice(Stage.OVERDUE, step, oldest.period, oldest.due_date, state.dpd,
                  *_unpaid(fallen_due))  # fmt: skip


def is_overdue_notice_day(overdue_day: int) -> bool:
    """Overdue day 1, 3 and 7, then every week: 14, 21, 28, … (docs/domain.md#dunning)."""
    return overdue_day in OVERDUE_DAYS or (overdue_day >= WEEK and overdue_day % WEEK == 0)


def _unpaid(rows: Iterable[InstallmentState]) -> tuple[Money, Money, Money, Money]:
    """Unpaid principal, interest, fee (late fees included) and penalty over ``rows``."""
    principal = interest = fee = penalty = 0
    for row in rows:
        if row.status is InstallmentStatus.PAID:
            continue
        principal += row.principal - row.paid_principal
        interest += row.interest - row.paid_interest
        fee += row.fee + row.late_fee - row.paid_fee - row.waived_fee
        penalty += row.penalty - row.paid_penalty - row.waived_penalty
    return Money(principal), Money(interest), Money(fee), Money(penalty)


# ---------------------------------------------------------------------------------------------
# Wording.


class Lender(NamedTuple):
    """Who the messages come from, as registered: every message names these and nothing else."""

    name: str  # the lender's registered name
    signature: str  # the registered SMS sender signature, shown as 【signature】
    hotline: str  # the official customer-service hotline
    channels: str  # the official repayment channels, zh-CN
    channels_en: str  # the same in English


DEFAULT_LENDER = Lender(
    name="fenqi 分期",
    signature="fenqi分期",
    hotline="400-800-0000",
    channels="分期App「我的分期」或已绑定的银行卡自动扣款",
    channels_en='the fenqi app ("My installments") or automatic debit from your linked bank card',
)


class Recipient(NamedTuple):
    """The borrower a message is for."""

    name: str  # the full name; messages show it masked (张三 → 张*, Li Si → L***)
    order_id: str  # the order or plan reference
    card_tail: str | None  # last 4 digits of the card that will be debited, if any


class Wording(NamedTuple):
    """One language's templates, by stage. Their placeholders: {signature} {lender} {name}
    {order} {period} {due_date} {amount} {breakdown} {hotline}, {channels} (zh-CN) or
    {channels_en}; a reminder adds {debit} (the ``debit`` sentence when a card will be debited,
    else nothing), an overdue notice {days} and {as_of} (the day its figures are for)."""

    templates: Mapping[Stage, str]
    debit: str  # {card_tail}
    yuan: str  # {amount}
    part: str  # one part of a breakdown: {label} {amount}
    labels: tuple[str, str, str, str]  # principal, interest, fee, penalty
    separator: str  # between the parts of a breakdown
    day: str  # {days}, for one day
    days: str  # {days}, for several


_ZH = Wording(
    templates={
        Stage.REMINDER: (
            "【{signature}】{lender}提醒：尊敬的{name}，您的订单{order}第{period}期账单将于"
            "{due_date}到期，应还{amount}（{breakdown}）。{debit}请通过官方渠道还款：{channels}。"
            "如有疑问请致电官方客服热线{hotline}。"
        ),
        Stage.DUE: (
            "【{signature}】{lender}提醒：尊敬的{name}，您的订单{order}第{period}期账单于"
            "{due_date}到期，应还{amount}（{breakdown}）。请通过官方渠道还款：{channels}。"
            "如已还款请忽略本短信。如有疑问请致电官方客服热线{hotline}。"
        ),
        Stage.OVERDUE: (
            "【{signature}】{lender}提醒：尊敬的{name}，您的订单{order}第{period}期账单已于"
            "{due_date}到期，截至{as_of}已逾期{days}，当前应还{amount}（{breakdown}）。"
            "根据借款合同，逾期期间按约定计收罚息；逾期信息可能依规报送金融信用信息基础数据库。"
            "请通过官方渠道还款：{channels}。如还款有困难，可致电官方客服热线{hotline}协商还款"
            "安排。如已还款请忽略本短信。"
        ),
    },
    debit="到期日将从您尾号{card_tail}的银行卡自动扣款。",
    yuan="{amount}元",
    part="{label}{amount}",
    labels=("本金", "利息", "费用", "罚息"),
    separator="，",
    day="{days}天",
    days="{days}天",
)

_EN = Wording(
    templates={
        Stage.REMINDER: (
            "【{signature}】{lender}: Dear {name}, installment {period} of your order {order} is "
            "due on {due_date}: {amount} ({breakdown}). {debit}Please repay only through the "
            "official channels: {channels_en}. Questions: call our official hotline {hotline}."
        ),
        Stage.DUE: (
            "【{signature}】{lender}: Dear {name}, installment {period} of your order {order} "
            "falls due on {due_date}: {amount} ({breakdown}). Please repay only through the "
            "official channels: {channels_en}. If you have already paid, please disregard this "
            "message. Questions: call our official hotline {hotline}."
        ),
        Stage.OVERDUE: (
            "【{signature}】{lender}: Dear {name}, installment {period} of your order {order} fell "
            "due on {due_date} and as of {as_of} is {days} overdue. Amount now due: {amount} "
            "({breakdown}). Under your loan contract, penalty interest accrues on overdue "
            "amounts, and overdue records may be reported to the credit reference system as the "
            "rules require. Please repay only through the official channels: {channels_en}. If "
            "repaying is difficult for you, please call our official hotline {hotline} to "
            "discuss a repayment arrangement. If you have already paid, please disregard this "
            "message."
        ),
    },
    debit="It will be debited automatically from your card ending {card_tail}. ",
    yuan="{amount} yuan",
    part="{label} {amount}",
    labels=("principal", "interest", "fees", "penalty interest"),
    separator=", ",
    day="{days} day",
    days="{days} days",
)

WORDING: Mapping[str, Wording] = {"zh-CN": _ZH, "en": _EN}


def masked(name: str) -> str:
    """The name as a message may show it: its first character and a star for each other one
    (张三 → 张*, Li Si → L***), so that whoever else sees the phone is not told who owes."""
    letters = name.strip()
    return letters[:1] + "*" * sum(1 for char in letters[1:] if not char.isspace())


def message(
    notice: Notice, recipient: Recipient, lender: Lender = DEFAULT_LENDER, language: str = "zh-CN"
) -> str:
    """The text of ``notice`` for ``recipient``, in ``language`` ("zh-CN" or "en")."""
    wording = WORDING.get(language)
    if wording is None:
        raise ValueError(f"no wording in {language!r}; accepted: {', '.join(WORDING)}")
    parts = (notice.principal, notice.interest, notice.fee, notice.penalty)
    breakdown = wording.separator.join(
        wording.part.format(label=label, amount=wording.yuan.format(amount=part))
        for label, part in zip(wording.labels, parts, strict=True)
        if part
    )
    days = wording.day if notice.days_overdue == 1 else wording.days
    debit = wording.debit.format(card_tail=recipient.card_tail) if recipient.card_tail else ""
    return wording.templates[notice.stage].format(
        signature=lender.signature,
        lender=lender.name,
        name=masked(recipient.name),
        order=recipient.order_id,
        period=notice.period,
        due_date=notice.due_date.isoformat(),
        as_of=(notice.due_date + timedelta(days=notice.days_overdue)).isoformat(),
        days=days.format(days=notice.days_overdue),
        amount=wording.yuan.format(amount=notice.amount),
        breakdown=breakdown,
        debit=debit,
        channels=lender.channels,
        channels_en=lender.channels_en,
        hotline=lender.hotline,
    )
