"""The storage adapter on SQLite and PostgreSQL: migrations, the seeded chart of accounts, the
ledger's constraints, and how the database URL is chosen."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect, make_url, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from fenqi.store import database
from fenqi.store.database import (
    DEFAULT_URL,
    DatabaseNotReadyError,
    current_revision,
    make_engine,
    require_current,
    schema_is_current,
    upgrade,
)
from fenqi.store.schema import (
    AccountRow,
    Base,
    BorrowerRow,
    JournalEntryRow,
    LoanEventRow,
    LoanRow,
    PaymentMethodRow,
    PostingRow,
)

HEAD = "0016"
CHART = {
    "principal_receivable": "asset",
    "interest_receivable": "asset",
    "fee_receivable": "asset",
    "penalty_receivable": "asset",
    "interest_income": "income",
    "fee_income": "income",
    "penalty_income": "income",
    "merchant_payable": "liability",
    "credit_balance": "liability",
    "write_off_expense": "expense",
    "recoveries": "income",
    "cash_clearing:bank_card": "asset",
    "cash_clearing:alipay": "asset",
    "cash_clearing:wechat": "asset",
    "cash_clearing:manual": "asset",
}
NOON = datetime(2026, 1, 15, 12, tzinfo=UTC)


def post(connection: Connection, entry_no: int, *lines: tuple[str, int, int]) -> None:
    """Writes a journal entry of loan 1 with the (account, debit, credit) lines given."""
    connection.execute(
        text(
            "INSERT INTO journal_entries (loan_id, entry_no, booked_date, memo) "
            "VALUES (1, :entry_no, :day, 'test')"
        ),
        {"entry_no": entry_no, "day": date(2026, 1, 15)},
    )
    connection.execute(
        text(
            "INSERT INTO postings (loan_id, entry_no, line_no, account, debit, credit) "
            "VALUES (1, :entry_no, :line_no, :account, :debit, :credit)"
        ),
        [
            {"entry_no": entry_no, "line_no": n, "account": a, "debit": d, "credit": c}
            for n, (a, d, c) in enumerate(lines, start=1)
        ],
    )


def requires_postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no trigger; the domain checks every entry")


# Migrations -------------------------------------------------------------------------------------


def test_upgrade_creates_every_table(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
    assert current_revision(engine) == HEAD


def test_the_head_every_command_checks_is_alembics_own() -> None:
    """``schema_is_current`` reads the head from the migrations' numbers, without Alembic:
    it is the revision Alembic itself finds at the end of the chain."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - the check this test is about

    script = ScriptDirectory.from_config(database._alembic_config())
    assert database.head() == script.get_current_head() == HEAD


def test_upgrade_again_changes_nothing(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == HEAD
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM accounts")) == len(CHART)


def test_workers_upgrading_at_once_all_succeed(empty_engine: Engine) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        for done in [pool.submit(upgrade, empty_engine) for _ in range(3)]:
            done.result()
    assert schema_is_current(empty_engine)
    with empty_engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM accounts")) == len(CHART)


def test_the_migration_creates_exactly_what_the_models_describe(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_downgrade_removes_everything_and_upgrade_restores_it(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            functions = (
                "SELECT count(*) FROM pg_proc WHERE proname = 'postings_entry_balanced'"
                " AND pronamespace = current_schema()::regnamespace"
            )
            assert connection.scalar(text(functions)) == 0
    assert current_revision(engine) is None
    upgrade(engine)
    assert schema_is_current(engine)


def test_the_schema_is_current_only_after_upgrade(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    assert not schema_is_current(empty_engine)
    upgrade(empty_engine)
    assert schema_is_current(empty_engine)


def test_an_empty_database_is_refused_with_the_command_that_fixes_it(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(password="s3cret")  # the test server trusts local connections
    empty = make_engine(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(DatabaseNotReadyError) as refused:
            require_current(empty)
        shown = url.render_as_string(hide_password=True)
        assert str(refused.value) == (
            f"database {shown} is not initialised or not up to date; run: fenqi db init"
        )
        assert "s3cret" not in str(refused.value)
        upgrade(empty)
        require_current(empty)
    finally:
        empty.dispose()


def test_the_chart_of_accounts_is_seeded(engine: Engine) -> None:
    with Session(engine) as session:
        accounts = session.scalars(select(AccountRow)).all()
    assert {account.code: account.kind for account in accounts} == CHART
    names = {account.code: account.name for account in accounts}
    assert names["principal_receivable"] == "Loan principal receivable 贷款本金应收"
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in name) for name in names.values())


# The ledger's constraints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("debit", "credit"),
    [(-100, 0), (0, -100), (-100, 100), (100, 100), (0, 0)],
    ids=["negative-debit", "negative-credit", "negative-and-positive", "double-sided", "empty"],
)
def test_a_posting_line_is_one_sided_and_positive(engine: Engine, debit: int, credit: int) -> None:
    with engine.connect() as connection, pytest.raises(IntegrityError, match="one_sided_positive"):
        post(connection, 1, ("principal_receivable", debit, credit))


def test_a_posting_to_an_unknown_account_is_refused(engine: Engine) -> None:
    lines = (("no_such_account", 100, 0), ("merchant_payable", 0, 100))
    with engine.connect() as connection, pytest.raises(IntegrityError):
        post(connection, 1, *lines)


def test_postgresql_refuses_an_unbalanced_entry_at_commit(engine: Engine) -> None:
    requires_postgresql(engine)
    with engine.connect() as connection:
        post(connection, 1, ("principal_receivable", 100_00, 0), ("merchant_payable", 0, 99_99))
        with pytest.raises(IntegrityError, match="journal entry 1 of loan 1 is unbalanced"):
            connection.commit()
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM postings")) == 0


def test_postgresql_commits_a_balanced_entry_written_line_by_line(engine: Engine) -> None:
    requires_postgresql(engine)
    with engine.begin() as connection:
        post(
            connection,
            1,
            ("principal_receivable", 100_00, 0),
            ("merchant_payable", 0, 95_00),
            ("fee_income", 0, 5_00),
        )
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT sum(debit) - sum(credit) FROM postings")) == 0


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE postings SET credit = 99 WHERE line_no = 2",
        "DELETE FROM postings WHERE line_no = 2",
        "UPDATE postings SET entry_no = 2 WHERE line_no = 2",
    ],
    ids=["amount", "delete-a-line", "move-a-line"],
)
def test_postgresql_refuses_a_change_that_unbalances_an_entry(engine: Engine, change: str) -> None:
    requires_postgresql(engine)
    with engine.begin() as connection:
        post(connection, 1, ("cash_clearing:alipay", 100, 0), ("interest_receivable", 0, 100))
    with engine.connect() as connection:
        connection.execute(text(change))
        with pytest.raises(IntegrityError, match="unbalanced"):
            connection.commit()


def test_postgresql_lets_a_whole_entry_be_deleted(engine: Engine) -> None:
    requires_postgresql(engine)
    with engine.begin() as connection:
        post(connection, 1, ("cash_clearing:alipay", 100, 0), ("interest_receivable", 0, 100))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM postings"))


# Rows, transactions and connections -------------------------------------------------------------


def test_rows_round_trip_through_the_models(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        borrower = BorrowerRow(
            name="张三", phone="13800000000", credit_limit=2_000_000, created_at=NOON
        )
        session.add(borrower)
        session.flush()
        session.add(
            PaymentMethodRow(
                borrower_id=borrower.id,
                kind="alipay",
                masked_account="138****0000",
                token_ref="tok-1",
                is_default=True,
                status="active",
                created_at=NOON,
            )
        )
        loan = LoanRow(
            borrower_id=borrower.id,
            order_id="order-1",
            merchant="mall",
            product_code="mall-12",
            terms={"principal": "5999.00", "periods": 12},
            policy={"grace_days": 3},
            status="active",
            outstanding_principal=599_900,
            dpd=0,
            version=1,
            booked_through=date(2026, 1, 15),
            opened=date(2026, 1, 15),
            created_at=NOON,
        )
        session.add(loan)
        session.flush()
        session.add(
            LoanEventRow(
                loan_id=loan.id,
                seq=1,
                kind="disbursed",
                effective=date(2026, 1, 15),
                booked_at=NOON,
                payload={"amount": "5999.00"},
            )
        )
        session.add(
            JournalEntryRow(
                loan_id=loan.id, entry_no=1, booked_date=date(2026, 1, 15), event_seq=1, memo="放款"
            )
        )
        session.add_all(
            [
                PostingRow(loan_id=loan.id, entry_no=1, line_no=1,
                           account="principal_receivable", debit=599_900, credit=0),
                PostingRow(loan_id=loan.id, entry_no=1, line_no=2,
                           account="merchant_payable", debit=0, credit=599_900),
            ]
        )  # fmt: skip
        loan_id = loan.id
    with Session(engine) as session:
        stored = session.get_one(LoanRow, loan_id)
        assert stored.terms == {"principal": "5999.00", "periods": 12}
        assert stored.created_at == NOON
        assert stored.created_at.tzinfo is UTC
        assert stored.booked_through == date(2026, 1, 15)
        lines = session.scalars(select(PostingRow).where(PostingRow.loan_id == loan_id)).all()
        assert sum(line.debit for line in lines) == sum(line.credit for line in lines) == 599_900


def test_times_are_stored_as_instants_and_read_back_in_utc(engine: Engine) -> None:
    beijing = timezone(timedelta(hours=8))
    with Session(engine) as session, session.begin():
        session.add(BorrowerRow(name="李四", phone="1", credit_limit=0,
                                created_at=datetime(2026, 1, 15, 20, tzinfo=beijing)))  # fmt: skip
    with Session(engine) as session:
        stored = session.scalars(select(BorrowerRow)).one()
        assert stored.created_at == NOON
        assert stored.created_at.tzinfo is UTC


def test_a_naive_time_is_refused(engine: Engine) -> None:
    naive = BorrowerRow(
        name="王五", phone="2", credit_limit=0, created_at=datetime(2026, 1, 15, 12)
    )
    with Session(engine) as session:
        session.add(naive)
        with pytest.raises(StatementError, match="naive datetime"):
            session.flush()


def test_a_rolled_back_transaction_takes_its_savepoints_with_it(engine: Engine) -> None:
    insert = text("INSERT INTO sim_accounts (token_ref, balance) VALUES (:token, 100)")
    with engine.connect() as connection:
        with connection.begin() as transaction:
            with connection.begin_nested():
                connection.execute(insert, {"token": "kept-by-savepoint"})
            transaction.rollback()
        assert connection.scalar(text("SELECT count(*) FROM sim_accounts")) == 0


def test_sqlite_connections_get_fenqis_pragmas(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    with engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA foreign_keys").scalar() == 1
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA busy_timeout").scalar() == 30000
        assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL


# Choosing the database --------------------------------------------------------------------------


def test_the_url_is_the_option_else_the_environment_else_a_local_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FENQI_DATABASE_URL", raising=False)
    assert database.database_url(None) == DEFAULT_URL == "sqlite:///fenqi.sqlite3"
    monkeypatch.setenv("FENQI_DATABASE_URL", "sqlite:///from-env.sqlite3")
    assert database.database_url(None) == "sqlite:///from-env.sqlite3"
    assert database.database_url("sqlite:///given.sqlite3") == "sqlite:///given.sqlite3"
    monkeypatch.setenv("FENQI_DATABASE_URL", "")
    assert database.database_url(None) == DEFAULT_URL


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/fenqi", "postgresql+psycopg://u:p@db:5432/fenqi"),
        ("postgres://u@db/fenqi", "postgresql+psycopg://u@db/fenqi"),
        ("postgresql+psycopg://u@db/fenqi", "postgresql+psycopg://u@db/fenqi"),
        ("sqlite:////var/lib/fenqi.sqlite3", "sqlite:////var/lib/fenqi.sqlite3"),
    ],
)
def test_a_bare_postgresql_url_uses_psycopg_3(given: str, used: str) -> None:
    assert database.database_url(given) == used


def test_a_url_is_shown_without_its_password() -> None:
    shown = database.url_without_password("postgresql+psycopg://fenqi:s3cret@db:5432/fenqi")
    assert shown == "postgresql+psycopg://fenqi:***@db:5432/fenqi"
