"""The initial schema: reference data, borrowers, loans and their books, idempotency and audit.

On PostgreSQL a deferred constraint trigger also refuses, at commit, any journal entry whose
debits and credits differ, so no writer can leave the books unbalanced.

Revision ID: 0001
Revises:
Create Date: 2026-01-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# (code, name, kind): the chart of accounts (科目表) in docs/domain.md#the-books.
CHART_OF_ACCOUNTS = [
    ("principal_receivable", "Loan principal receivable 贷款本金应收", "asset"),
    ("interest_receivable", "Interest receivable 应收利息", "asset"),
    ("fee_receivable", "Fee receivable 应收手续费", "asset"),
    ("penalty_receivable", "Penalty interest receivable 应收罚息", "asset"),
    ("interest_income", "Interest income 利息收入", "income"),
    ("fee_income", "Fee income 手续费收入", "income"),
    ("penalty_income", "Penalty interest income 罚息收入", "income"),
    ("merchant_payable", "Payable to merchants 应付商户款", "liability"),
    ("credit_balance", "Borrower credit balances 借款人溢缴款", "liability"),
    ("write_off_expense", "Loan write-off expense 贷款核销损失", "expense"),
    ("recoveries", "Recoveries of written-off loans 已核销贷款收回", "income"),
    ("cash_clearing:bank_card", "Cash clearing, bank card 银行卡资金清算", "asset"),
    ("cash_clearing:alipay", "Cash clearing, Alipay 支付宝资金清算", "asset"),
    ("cash_clearing:wechat", "Cash clearing, WeChat Pay 微信支付资金清算", "asset"),
    ("cash_clearing:manual", "Cash clearing, manual entry 人工入账资金清算", "asset"),
]

# Row by row, deferred to commit, so an entry may be written line by line inside a transaction.
# The sum is read from the table the trigger fired on (a partition, once postings are
# partitioned by loan_id), so it holds under any search_path.
ENTRY_BALANCED_FUNCTION = """
CREATE FUNCTION postings_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    touched record;
    debits numeric;
    credits numeric;
BEGIN
    FOR touched IN
        SELECT DISTINCT loan_id, entry_no FROM (
            SELECT OLD.loan_id, OLD.entry_no WHERE TG_OP IN ('UPDATE', 'DELETE')
            UNION ALL
            SELECT NEW.loan_id, NEW.entry_no WHERE TG_OP IN ('INSERT', 'UPDATE')
        ) AS lines (loan_id, entry_no)
    LOOP
        EXECUTE format(
            'SELECT coalesce(sum(debit), 0), coalesce(sum(credit), 0) FROM %I.%I'
            ' WHERE loan_id = $1 AND entry_no = $2',
            TG_TABLE_SCHEMA, TG_TABLE_NAME
        ) INTO debits, credits USING touched.loan_id, touched.entry_no;
        IF debits <> credits THEN
            RAISE EXCEPTION 'journal entry % of loan % is unbalanced: debits % fen, credits % fen',
                touched.entry_no, touched.loan_id, debits, credits
                USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$
"""
ENTRY_BALANCED_TRIGGER = """
CREATE CONSTRAINT TRIGGER postings_entry_balanced
    AFTER INSERT OR UPDATE OR DELETE ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION postings_entry_balanced()
"""


def upgrade() -> None:
    _reference_tables()
    _borrower_tables()
    _loan_tables()
    _cross_cutting_tables()
    accounts = sa.table(
        "accounts",
        sa.column("code", sa.String()),
        sa.column("name", sa.String()),
        sa.column("kind", sa.String()),
    )
    op.bulk_insert(
        accounts,
        [dict(zip(("code", "name", "kind"), row, strict=True)) for row in CHART_OF_ACCOUNTS],
    )
    if op.get_context().dialect.name == "postgresql":
        op.execute(ENTRY_BALANCED_FUNCTION)
        op.execute(ENTRY_BALANCED_TRIGGER)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS postings_entry_balanced ON postings")
        op.execute("DROP FUNCTION IF EXISTS postings_entry_balanced()")
    for table in (
        "audit_log", "idempotency_keys", "postings", "journal_entries", "receipts", "loan_events",
        "consents", "loans", "orders", "sim_accounts", "payment_methods", "borrowers", "products",
        "accounts",
    ):  # fmt: skip
        op.drop_table(table)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _reference_tables() -> None:
    op.create_table(
        "accounts",
        sa.Column("code", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_accounts")),
        sa.CheckConstraint(
            "kind IN ('asset', 'liability', 'income', 'expense')", name=op.f("ck_accounts_kind")
        ),
    )
    op.create_table(
        "products",
        sa.Column("code", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        _timestamp("loaded_at"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_products")),
    )


def _borrower_tables() -> None:
    op.create_table(
        "borrowers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("credit_limit", sa.BigInteger(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_borrowers")),
        sa.UniqueConstraint("phone", name=op.f("uq_borrowers_phone")),
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("borrower_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("masked_account", sa.String(), nullable=False),
        sa.Column("token_ref", sa.String(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.ForeignKeyConstraint(
            ["borrower_id"], ["borrowers.id"], name=op.f("fk_payment_methods_borrower_id_borrowers")
        ),
        sa.UniqueConstraint("token_ref", name=op.f("uq_payment_methods_token_ref")),
    )
    op.create_index(op.f("ix_payment_methods_borrower_id"), "payment_methods", ["borrower_id"])
    op.create_table(
        "sim_accounts",
        sa.Column("token_ref", sa.String(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token_ref", name=op.f("pk_sim_accounts")),
    )


def _loan_tables() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("borrower_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_orders")),
    )
    op.create_table(
        "loans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("borrower_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("merchant", sa.String(), nullable=False),
        sa.Column("product_code", sa.String(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("outstanding_principal", sa.BigInteger(), nullable=False),
        sa.Column("dpd", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("booked_through", sa.Date(), nullable=False),
        sa.Column("opened", sa.Date(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loans")),
    )
    op.create_index(op.f("ix_loans_borrower_id"), "loans", ["borrower_id"])
    op.create_table(
        "consents",
        sa.Column("loan_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("shown", sa.JSON(), nullable=False),
        _timestamp("consented_at"),
        sa.PrimaryKeyConstraint("loan_id", name=op.f("pk_consents")),
    )
    op.create_table(
        "loan_events",
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("effective", sa.Date(), nullable=False),
        _timestamp("booked_at"),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("loan_id", "seq", name=op.f("pk_loan_events")),
    )
    op.create_table(
        "receipts",
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("receipt_no", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("loan_id", "seq", name=op.f("pk_receipts")),
    )
    op.create_table(
        "journal_entries",
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("entry_no", sa.Integer(), nullable=False),
        sa.Column("booked_date", sa.Date(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=True),
        sa.Column("memo", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("loan_id", "entry_no", name=op.f("pk_journal_entries")),
    )
    op.create_table(
        "postings",
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("entry_no", sa.Integer(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("debit", sa.BigInteger(), nullable=False),
        sa.Column("credit", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("loan_id", "entry_no", "line_no", name=op.f("pk_postings")),
        sa.ForeignKeyConstraint(
            ["account"], ["accounts.code"], name=op.f("fk_postings_account_accounts")
        ),
        sa.CheckConstraint(
            "debit >= 0 AND credit >= 0 AND (debit = 0 OR credit = 0) AND debit + credit > 0",
            name=op.f("ck_postings_one_sided_positive"),
        ),
    )
    op.create_index(op.f("ix_postings_account"), "postings", ["account"])


def _cross_cutting_tables() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _timestamp("at"),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
