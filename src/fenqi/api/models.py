"""Request bodies. Money is a decimal string in yuan (``"888.49"``), rates are ``"12%"`` or
``"0.12"``, dates ISO 8601, a yes or no a JSON ``true`` or ``false`` (``StrictBool``: pydantic
would also take ``"yes"``, ``"on"`` or ``1`` for a confirmation no one meant to give); the
services parse and check the meaning, these check the shape."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
)

from fenqi.domain.money import AMOUNT_AT_MOST
from fenqi.domain.reference import CATALOG_CHARS_AT_MOST
from fenqi.http.fields import Day, Id, Password, Phone, SignInCode, UserName

# Digits are written [0-9]: a pattern's \d also takes every other script's digits ("١٨").
_YUAN_DIGITS = len(str(AMOUNT_AT_MOST // 100))  # 12: the same cap as the command line's
Yuan = Annotated[
    str, Field(pattern=rf"^[0-9]{{1,{_YUAN_DIGITS}}}(\.[0-9]{{1,2}})?$", examples=["888.49"])
]
RateText = Annotated[str, Field(pattern=r"^[0-9]{1,3}(\.[0-9]{1,6})?%?$", examples=["12%"])]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BorrowerIn(Body):
    name: Text
    phone: Phone
    credit_limit: Yuan


class MethodIn(Body):
    kind: Literal["bank_card", "alipay", "wechat"]
    account: Annotated[str, Field(min_length=1, max_length=64, examples=["6222020000001234567"])]
    default: StrictBool = False
    sim_balance: Yuan | None = None


class FundIn(Body):
    sim_balance: Yuan


class QuoteIn(Body):
    principal: Yuan
    start: Day | None = None
    periods: Annotated[int, Field(ge=1, le=360)] | None = None
    method: Literal["equal-installment", "equal-principal", "interest-only", "bullet",
                    "flat-fee"] | None = None  # fmt: skip
    annual_rate: RateText | None = None
    fee_rate: RateText | None = None
    fee_total_rate: RateText | None = None
    upfront_fee: Yuan | None = None
    day_count: Literal["30/360", "act/360", "act/365"] | None = None
    repayment_day: Annotated[int, Field(ge=1, le=31)] | None = None
    first_period: Literal["short", "long"] | None = None
    cap: Annotated[str, Field(max_length=12, examples=["24%", "4xLPR"])] | None = None
    product: Annotated[str, Field(max_length=40, examples=["mall-12"])] | None = None


class CheckoutIn(Body):
    borrower_id: Id
    order_id: Text
    merchant: Text
    amount: Yuan
    product: Annotated[str, Field(min_length=1, max_length=40, examples=["mall-12"])]
    periods: Annotated[int, Field(ge=1, le=360)] | None = None
    date: Day | None = None
    item: Annotated[str, Field(max_length=200, examples=["华为 Mate 70"])] | None = None


class PaymentIn(Body):
    amount: Yuan
    method_id: Id | None = None
    channel: Literal["manual"] | None = None
    date: Day | None = None
    allow_overpayment: StrictBool = Field(
        False, description="More than the payoff amount that day (admins only; the excess "
                           "becomes a credit balance)."
    )  # fmt: skip


class PrepaymentIn(Body):
    amount: Yuan | None = None
    full: StrictBool = False
    mode: Literal["reduce-installment", "shorten-term"] = "reduce-installment"
    method_id: Id | None = None
    channel: Literal["manual"] | None = None
    date: Day | None = None
    allow_overpayment: StrictBool = Field(False, description="As for payments (admins only).")


class RefundIn(Body):
    amount: Yuan
    date: Day | None = None


class CreditRefundIn(Body):
    amount: Yuan | None = None
    date: Day | None = None


class ReversalIn(Body):
    reason: Text
    date: Day | None = None
    confirm: StrictBool = Field(
        default=False,
        description="Reverse even though it reopens a settled plan or makes a current one "
        "overdue; without it such a reversal is a 409 confirmation-needed problem that says "
        "what it would do.",
    )


class WaiverIn(Body):
    what: Literal["penalty", "fee"]
    amount: Yuan
    reason: Text
    date: Day | None = None


class CobIn(Body):
    date: Day


class CatalogIn(Body):
    toml: Annotated[str, Field(min_length=1, max_length=CATALOG_CHARS_AT_MOST)]


class CodeIn(Body):
    phone: Phone


class SignInIn(Body):
    phone: Phone
    code: SignInCode


class LoginIn(Body):
    username: UserName
    password: Password
