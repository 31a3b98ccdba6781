"""A withholding request's rules, and the signatures between fenqi and its gateway."""

import time
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fenqi.channels.signing import NONCE, SIGNATURE, TIMESTAMP, BadSignatureError, Signer
from fenqi.domain.events import Channel
from fenqi.domain.money import Money
from fenqi.domain.withholding import DebitRequest, Kind, Outcome, Status, after
from fenqi.services.withholding import order_id

S, OUT = Status, Outcome


@pytest.mark.parametrize(("status", "outcome", "becomes"), [
    (S.PENDING, OUT.SUCCEEDED, S.SUCCEEDED),
    (S.PENDING, OUT.FAILED, S.FAILED),
    (S.PENDING, OUT.PROCESSING, S.PENDING),
    (S.PENDING, OUT.NO_ANSWER, S.UNKNOWN),
    (S.PENDING, OUT.NOT_FOUND, S.FAILED),  # a crash before the gateway was asked
    (S.UNKNOWN, OUT.SUCCEEDED, S.SUCCEEDED),  # the success after a timeout is the payment
    (S.UNKNOWN, OUT.PROCESSING, S.UNKNOWN),
    (S.UNKNOWN, OUT.NOT_FOUND, S.FAILED),
    (S.SUCCEEDED, OUT.SUCCEEDED, S.SUCCEEDED),  # a duplicate notification
    (S.SUCCEEDED, OUT.FAILED, S.SUCCEEDED),  # a failure never undoes money taken
    (S.SUCCEEDED, OUT.PROCESSING, S.SUCCEEDED),  # a stale notification, out of order
    (S.SUCCEEDED, OUT.NOT_FOUND, S.SUCCEEDED),
    (S.FAILED, OUT.FAILED, S.FAILED),
    (S.FAILED, OUT.PROCESSING, S.FAILED),
    (S.FAILED, OUT.NO_ANSWER, S.FAILED),
    (S.FAILED, OUT.SUCCEEDED, S.SUCCEEDED),  # a late success: the money is in, so it is booked
])  # fmt: skip
def test_each_answer_moves_a_request_as_a_lender_books_money(status, outcome, becomes):
    assert after(status, outcome) is becomes


@given(st.lists(st.sampled_from(list(Outcome)), max_size=12))
def test_answers_in_any_order_and_number_leave_a_success_if_any_was_a_success(outcomes):
    status = Status.PENDING
    for outcome in outcomes:
        status = after(status, outcome)
        assert after(status, outcome) is status  # the same answer again changes nothing
    if Outcome.SUCCEEDED in outcomes:
        assert status is Status.SUCCEEDED


def _request(**changes) -> DebitRequest:
    fields = {"loan_id": 12, "order_id": order_id(12, "pay:12:k"), "kind": Kind.PAY,
              "amount": Money(50000), "channel": Channel.BANK_CARD, "method_id": 3,
              "token_ref": "tok", "idempotency_key": "pay:12:k", "day": date(2026, 3, 1)}  # fmt: skip
    return DebitRequest(**{**fields, **changes})


def test_an_answer_that_settles_a_request_gives_it_the_gateways_reference_and_reason():
    declined = _request().answered(Outcome.FAILED, "SIM1", "insufficient funds")
    assert (declined.status, declined.reference, declined.reason, declined.attempts) == (
        Status.FAILED,
        "SIM1",
        "insufficient funds",
        1,
    )
    assert declined.answered(Outcome.FAILED, "SIM2", "other") == declined.answered(
        Outcome.PROCESSING, None, None
    )  # settled: only the count of questions moves
    taken = declined.answered(Outcome.SUCCEEDED, "SIM1", None)
    assert (taken.status, taken.reason, taken.attempts) == (Status.SUCCEEDED, None, 2)


def test_an_order_id_is_the_same_for_the_same_key_names_its_loan_and_fits_a_gateway():
    assert order_id(12, "pay:12:k") == order_id(12, "pay:12:k") != order_id(12, "pay:12:j")
    longest = order_id(2**31 - 1, "cob:2147483647:2026-03-01:3")
    assert longest.startswith("FQ2147483647-")
    assert len(longest) <= 32
    assert longest.isascii()


SIGNER = Signer(b"s" * 32)


def test_a_signed_request_verifies_and_any_change_to_it_does_not():
    headers = SIGNER.request_headers("POST", "/v1/debits", b'{"amount": 100}')
    assert SIGNER.verify_request("POST", "/v1/debits", headers, b'{"amount": 100}')
    for method, path, body in (("PUT", "/v1/debits", b'{"amount": 100}'),
                               ("POST", "/v1/refunds", b'{"amount": 100}'),
                               ("POST", "/v1/debits", b'{"amount": 900}')):  # fmt: skip
        with pytest.raises(BadSignatureError):
            SIGNER.verify_request(method, path, headers, body)
    with pytest.raises(BadSignatureError):
        Signer(b"t" * 32).verify_request("POST", "/v1/debits", headers, b'{"amount": 100}')


def test_an_answer_verifies_only_as_the_answer_to_its_own_request():
    headers = SIGNER.message_headers(b"{}", nonce="n1")
    SIGNER.verify_message(headers, b"{}", "n1")
    with pytest.raises(BadSignatureError, match="another request"):
        SIGNER.verify_message(headers, b"{}", "n2")


@pytest.mark.parametrize("tamper", [
    {SIGNATURE: ""}, {TIMESTAMP: ""}, {NONCE: ""}, {TIMESTAMP: "１２３"},
    {TIMESTAMP: str(int(time.time()) - 301)}, {TIMESTAMP: str(int(time.time()) + 301)},
])  # fmt: skip
def test_a_notification_unsigned_or_out_of_its_window_is_refused(tamper):
    headers = {**SIGNER.message_headers(b"{}"), **tamper}
    with pytest.raises(BadSignatureError):
        SIGNER.verify_message(headers, b"{}")


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"short")
