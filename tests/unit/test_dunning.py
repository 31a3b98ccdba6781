"""Dunning rules (docs/domain.md#dunning): which notices a loan is owed on which day, with the
state's own amounts, and wording that carries everything a borrower must be told and nothing
she must not."""

import re
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fenqi.domain.dunning import (
    DEFAULT_LENDER,
    WORDING,
    Notice,
    Recipient,
    Stage,
    masked,
    message,
    notices,
)
from fenqi.domain.events import Channel, Payment, Prepayment, PrepayMode
from fenqi.domain.loan import InstallmentStatus, LoanState, replay
from fenqi.domain.money import Money
from fenqi.domain.products import parse_catalog
from tests.plans import plan

CASH = parse_catalog(
    '[[product]]\ncode = "cash"\nmethod = "equal-installment"\nperiods = [12]\n'
    'annual_rate = "12%"\ngrace_days = 3\n'
    'late_fee = { rate = "5%", floor = "10.00", cap = "100.00" }'
)["cash"]
LOAN = plan("equal-installment", "10000", 12, rate="12%")  # due on the 15th from 2026-02-15
FIRST_DUE = date(2026, 2, 15)

FORBIDDEN = (
    "起诉", "诉讼", "法院", "律师", "警察", "公安", "报警", "拘留", "坐牢", "刑事", "上门", "家访",
    "家人", "亲属", "朋友", "同事", "单位", "领导", "通讯录", "紧急联系人", "曝光", "后果自负",
    "lawsuit", "court", "police", "arrest", "jail", "criminal", "visit", "family", "friend",
    "employer", "colleague", "contacts", "expose",
)  # fmt: skip
LANGUAGES = ("zh-CN", "en")


def state_on(day: date, events: tuple[Payment | Prepayment, ...] = ()) -> LoanState:
    return replay(LOAN, CASH, events, day)


def steps_on(day: date, events: tuple[Payment | Prepayment, ...] = ()) -> list[str]:
    return [notice.step for notice in notices(state_on(day, events), CASH, day)]


# -- the stages ---------------------------------------------------------------------------------


def test_each_stage_falls_on_its_day_and_nothing_in_between() -> None:
    expected = {
        date(2026, 2, 12): ["reminder"],  # due − 3
        date(2026, 2, 15): ["due"],
        date(2026, 2, 19): ["overdue-1"],  # the first day after 3 days of grace
        date(2026, 2, 21): ["overdue-3"],
        date(2026, 2, 25): ["overdue-7"],
        date(2026, 3, 4): ["overdue-14"],
        date(2026, 3, 11): ["overdue-21"],
        date(2026, 3, 12): ["reminder"],  # the second installment's, while the first is overdue
        date(2026, 3, 15): ["due"],
    }
    days = (date(2026, 2, 1) + timedelta(days=n) for n in range(45))
    found = {day: steps for day in days if (steps := steps_on(day))}
    assert found == expected


@pytest.mark.parametrize("grace_day", [1, 2, 3])
def test_nothing_is_sent_inside_grace(grace_day: int) -> None:
    day = FIRST_DUE + timedelta(days=grace_day)
    assert state_on(day).installments[0].status is InstallmentStatus.DUE
    assert steps_on(day) == []


@pytest.mark.parametrize("overdue_day", [2, 4, 5, 6, 8, 13, 15, 20])
def test_no_overdue_notice_between_the_overdue_days(overdue_day: int) -> None:
    day = FIRST_DUE + timedelta(days=CASH.grace_days + overdue_day)
    assert all(not step.startswith("overdue") for step in steps_on(day))


def test_a_reminder_and_a_due_notice_ask_for_that_installment() -> None:
    reminder = notices(state_on(date(2026, 2, 12)), CASH, date(2026, 2, 12))[0]
    due = notices(state_on(FIRST_DUE), CASH, FIRST_DUE)[0]
    for notice in (reminder, due):
        assert (notice.period, notice.due_date, notice.days_overdue) == (1, FIRST_DUE, 0)
        assert (notice.principal, notice.interest) == (Money(78849), Money(10000))
        assert (notice.fee, notice.penalty, notice.amount) == (Money(0), Money(0), Money(88849))
    assert (reminder.stage, due.stage) == (Stage.REMINDER, Stage.DUE)


def test_the_overdue_notice_asks_for_everything_fallen_due_as_the_state_has_it() -> None:
    day = date(2026, 2, 19)
    state = state_on(day)
    (notice,) = notices(state, CASH, day)
    first = state.installments[0]
    assert notice.stage is Stage.OVERDUE
    assert (notice.period, notice.due_date, notice.days_overdue) == (1, FIRST_DUE, state.dpd)
    assert state.dpd == 4
    assert (notice.principal, notice.interest) == (Money(78849), Money(10000))
    assert notice.fee == first.late_fee == Money(4442)  # 5% of 888.49
    assert notice.penalty == first.penalty > 0  # 788.49 × 18% / 360 × 4 days
    assert notice.penalty == Money(158)
    assert notice.amount == state.amount_due


def test_a_later_overdue_notice_counts_from_the_oldest_and_sums_every_installment_due() -> None:
    day = date(2026, 3, 18)  # overdue day 28 of the first; the second is inside its grace
    state = state_on(day)
    (notice,) = notices(state, CASH, day)
    assert (notice.step, notice.period, notice.days_overdue) == ("overdue-28", 1, 31)
    assert notice.principal == state.installments[0].principal + state.installments[1].principal
    assert notice.interest == Money(10000 + 9212)
    assert notice.amount == state.amount_due


def test_paid_installments_and_closed_loans_are_owed_nothing() -> None:
    paid_ahead = (Payment(1, date(2026, 2, 1), Money(88849), Channel.MANUAL),)
    assert steps_on(date(2026, 2, 12), paid_ahead) == []
    assert steps_on(FIRST_DUE, paid_ahead) == []
    payoff = (Prepayment(1, date(2026, 2, 1), Money(10**8), Channel.MANUAL,
                         PrepayMode.REDUCE_INSTALLMENT, True),)  # fmt: skip
    assert steps_on(date(2026, 3, 12), payoff) == []


def test_a_product_without_reminders_sends_only_the_due_notice_on_the_due_date() -> None:
    quiet = replace(CASH, reminder_days=0)
    assert [n.step for n in notices(state_on(FIRST_DUE), quiet, FIRST_DUE)] == ["due"]


def test_paid_inside_grace_is_never_overdue() -> None:
    on_time = (Payment(1, date(2026, 2, 17), Money(88849), Channel.MANUAL),)
    assert steps_on(date(2026, 2, 19), on_time) == []


# -- the wording --------------------------------------------------------------------------------


def test_names_are_masked() -> None:
    assert masked("张三") == "张*"
    assert masked("欧阳娜娜") == "欧***"
    assert masked("Li Si") == "L***"
    assert masked(" 王 ") == "王"


def template_texts() -> list[str]:
    texts = [*DEFAULT_LENDER]
    for wording in WORDING.values():
        texts += [*wording.templates.values(), wording.debit, wording.yuan, wording.part]
        texts += [*wording.labels, wording.separator, wording.day, wording.days]
    return texts


@pytest.mark.parametrize("text", template_texts())
def test_no_template_says_anything_forbidden(text: str) -> None:
    assert [word for word in FORBIDDEN if word in text.lower()] == []


def test_every_stage_has_a_template_in_every_language() -> None:
    assert set(WORDING) == set(LANGUAGES)
    for wording in WORDING.values():
        assert set(wording.templates) == set(Stage)


_SURNAMES = "赵钱孙周吴郑冯陈褚卫蒋沈韩杨朱秦尤许何吕施孔曹严魏陶姜"
_GIVEN = "伟芳娜敏静丽强磊洋艳勇杰娟涛明超秀霞平刚桂"
_LATIN = "qxzjkvw"

chinese_names = st.builds(
    "".join,
    st.tuples(st.sampled_from(_SURNAMES), st.text(alphabet=_GIVEN, min_size=1, max_size=3)),
)
latin_words = st.builds(
    lambda head, tail: head.upper() + tail,
    st.sampled_from(_LATIN),
    st.text(alphabet=_LATIN, min_size=1, max_size=6),
)
latin_names = st.builds(lambda first, last: f"{first} {last}", latin_words, latin_words)
fen = st.integers(min_value=0, max_value=10**8).map(Money)


@st.composite
def notices_any(draw: st.DrawFn) -> Notice:
    stage = draw(st.sampled_from(Stage))
    days = draw(st.integers(min_value=1, max_value=400)) if stage is Stage.OVERDUE else 0
    parts = draw(st.tuples(fen, fen, fen, fen).filter(any))
    period = draw(st.integers(min_value=1, max_value=36))
    due = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 12, 31)))
    step = f"overdue-{days}" if stage is Stage.OVERDUE else stage.value
    return Notice(stage, step, period, due, days, *parts)


recipients = st.builds(
    Recipient,
    name=st.one_of(chinese_names, latin_names),
    order_id=st.from_regex(r"[A-Z]{2}-[0-9]{4,12}", fullmatch=True),
    card_tail=st.one_of(st.none(), st.from_regex(r"[0-9]{4}", fullmatch=True)),
)


@given(notices_any(), recipients, st.sampled_from(LANGUAGES))
def test_a_message_carries_what_the_borrower_must_be_told(
    notice: Notice, recipient: Recipient, language: str
) -> None:
    text = message(notice, recipient, language=language)
    assert f"【{DEFAULT_LENDER.signature}】" in text
    assert DEFAULT_LENDER.name in text
    assert DEFAULT_LENDER.hotline in text
    assert recipient.order_id in text
    assert masked(recipient.name) in text
    assert recipient.name not in text
    assert notice.due_date.isoformat() in text
    channels = DEFAULT_LENDER.channels_en if language == "en" else DEFAULT_LENDER.channels
    assert channels in text
    for part in (notice.amount, notice.principal, notice.interest, notice.fee, notice.penalty):
        assert part == 0 or str(part) in text
    if notice.stage is Stage.OVERDUE:
        days = notice.days_overdue
        english = f"{days} day{'' if days == 1 else 's'} overdue"
        assert (english if language == "en" else f"已逾期{days}天") in text
    if notice.stage is Stage.REMINDER and recipient.card_tail:
        assert recipient.card_tail in text
    assert [word for word in FORBIDDEN if word in text.lower()] == []


@given(notices_any(), recipients, st.sampled_from(LANGUAGES))
def test_every_amount_in_a_message_is_one_of_the_notices(
    notice: Notice, recipient: Recipient, language: str
) -> None:
    text = message(notice, recipient, language=language)
    parts = (notice.principal, notice.interest, notice.fee, notice.penalty)
    expected = {str(notice.amount)} | {str(part) for part in parts if part}
    assert set(re.findall(r"\d+\.\d{2}", text)) == expected


def test_an_unknown_language_is_refused() -> None:
    notice = notices(state_on(FIRST_DUE), CASH, FIRST_DUE)[0]
    with pytest.raises(ValueError, match="zh-CN, en"):
        message(notice, Recipient("张三", "JD-0001", None), language="fr")
