"""``fenqi db init`` and ``fenqi db upgrade`` end to end, on a SQLite file."""

from pathlib import Path

import pytest

from fenqi.catalog import shipped_catalog_text
from tests.e2e.cli import fenqi, refused

HEAD = "0016"


def test_init_creates_the_database_and_can_run_again(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    url = f"sqlite:///{path}"
    first = fenqi("db", "init", "--db", url, "--json")
    assert first.json() == {"url": url, "revision": HEAD, "products_loaded": 5}
    assert path.is_file()
    again = fenqi("db", "init", "--db", url, "--json")  # the catalog is there: left as it is
    assert again.json() == {"url": url, "revision": HEAD, "products_loaded": 0}


def test_upgrade_brings_a_new_or_current_database_to_the_newest_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    for _ in range(2):
        done = fenqi("db", "upgrade", "--db", url)
        assert done.code == 0, done.err
        assert done.out.strip() == f"database {url} is at revision {HEAD}"
    assert (tmp_path / "x.sqlite3").is_file()


def test_the_url_comes_from_the_environment_without_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.sqlite3'}"
    monkeypatch.setenv("FENQI_DATABASE_URL", url)
    assert fenqi("db", "init", "--json").json() == {
        "url": url,
        "revision": HEAD,
        "products_loaded": 5,
    }


def test_a_bad_url_is_refused_in_one_line(tmp_path: Path) -> None:
    done = fenqi("db", "init", "--db", "not-a-url")
    assert done.code == 2
    assert done.err.startswith('fenqi: error: --db: "not-a-url" is not a database URL')
    assert done.err.count("\n") == 1


def test_an_unreachable_database_is_reported_without_its_password() -> None:
    done = fenqi("db", "init", "--db", "postgresql://fenqi:s3cret@127.0.0.1:1/fenqi")
    assert done.code == 1
    assert done.err.startswith("fenqi: error: cannot use database postgresql+psycopg://fenqi:***@")
    assert "s3cret" not in done.err


def test_a_database_without_products_says_how_to_load_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    fenqi("db", "upgrade", "--db", url)  # tables only
    fenqi("borrower", "create", "--name", "张三", "--phone", "13800138000", "--limit", "20000",
          "--db", url)  # fmt: skip
    order = ("checkout", "--borrower", "1", "--order", "O-1", "--merchant", "m", "--amount", "100",
             "--product", "cash", "--periods", "3", "--db", url)  # fmt: skip
    refused(fenqi(*order), "no products are loaded: fenqi product load [FILE]")
    own = tmp_path / "own.toml"
    only_mall_3 = shipped_catalog_text().split("[[product]]")[1]
    own.write_text(f"[[product]]{only_mall_3}", encoding="utf-8")
    assert [
        p["code"] for p in fenqi("product", "load", str(own), "--db", url, "--json").json()
    ] == ["mall-3"]
    refused(fenqi(*order), 'unknown product "cash"; choose one of: mall-3')
    shipped = fenqi("product", "load", "--db", url, "--json").json()  # no FILE: the shipped one
    assert {"mall-3", "mall-6", "mall-12", "mall-24", "cash"} <= {p["code"] for p in shipped}
    assert fenqi(*order, "--json").json()["id"] == 1
