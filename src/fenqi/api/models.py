"""Request bodies. Money is a decimal string in yuan (``"888.49"``), rates are ``"12%"`` or
``"0.12"``, dates ISO 8601; the services parse and check the meaning, these check the shape."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Yuan = Annotated[str, Field(pattern=r"^\d{1,12}(\.\d{1,2})?$", examples=["888.49"])]
RateText = Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,6})?%?$", examples=["12%"])]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BorrowerIn(Body):
    name: Text
    phone: Annotated[str, Field(pattern=r"^\+?\d{6,15}$", examples=["13800138000"])]
    credit_limit: Yuan


class MethodIn(Body):
    kind: Literal["bank_card", "alipay", "wechat"]
    account: Annotated[str, Field(min_length=1, max_length=64, examples=["6222020000001234567"])]
    default: bool = False
    sim_balance: Yuan | None = None


class FundIn(Body):
    sim_balance: Yuan


class QuoteIn(Body):
    principal: Yuan
    start: dt.date | None = None
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
    date: dt.date | None = None
    item: Annotated[str, Field(max_length=200, examples=["华为 Mate 70"])] | None = None


class PaymentIn(Body):
    amount: Yuan
    method_id: Id | None = None
    channel: Literal["manual"] | None = None
    date: dt.date | None = None


class PrepaymentIn(Body):
    amount: Yuan | None = None
    full: bool = False
    mode: Literal["reduce-installment", "shorten-term"] = "reduce-installment"
    method_id: Id | None = None
    channel: Literal["manual"] | None = None
    date: dt.date | None = None


class RefundIn(Body):
    amount: Yuan
    date: dt.date | None = None


class CreditRefundIn(Body):
    amount: Yuan | None = None
    date: dt.date | None = None


class ReversalIn(Body):
    reason: Text
    date: dt.date | None = None
    confirm: bool = Field(
        default=False,
        description="Reverse even though it reopens a settled plan or makes a current one "
        "overdue; without it such a reversal is a 409 confirmation-needed problem that says "
        "what it would do.",
    )


class WaiverIn(Body):
    what: Literal["penalty", "fee"]
    amount: Yuan
    reason: Text
    date: dt.date | None = None


class CobIn(Body):
    date: dt.date


class CatalogIn(Body):
    toml: Annotated[str, Field(min_length=1, max_length=200_000)]


class CodeIn(Body):
    phone: Annotated[str, Field(pattern=r"^\+?\d{6,15}$")]


class SignInIn(Body):
    phone: Annotated[str, Field(pattern=r"^\+?\d{6,15}$")]
    code: Annotated[str, Field(pattern=r"^\d{6}$")]


class LoginIn(Body):
    username: Text
    password: Annotated[str, Field(min_length=1, max_length=200)]
