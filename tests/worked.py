"""The worked numbers of docs/domain.md#worked-numbers as data, asserted both through the domain
(tests/unit) and through ``fenqi quote --json`` (tests/e2e)."""

from __future__ import annotations

from typing import NamedTuple

from fenqi.domain.schedule import Terms
from tests.plans import START, plan


class Worked(NamedTuple):
    """One plan of the table: its terms, every payment, its total interest or fee, its APRs."""

    method: str
    principal: str
    periods: int
    rate: str  # the annual rate, or for flat-fee the fee per period
    payments: tuple[str, ...]
    cost: str
    apr: tuple[str, str] | None  # simple, compounded; to ±0.01 percentage points

    @property
    def name(self) -> str:
        return f"{self.method}-{self.principal}-{self.rate}"

    def terms(self) -> Terms:
        rate = {"fee": self.rate} if self.method == "flat-fee" else {"rate": self.rate}
        return plan(self.method, self.principal, self.periods, **rate)

    def options(self) -> list[str]:
        rate = "--fee-rate" if self.method == "flat-fee" else "--annual-rate"
        return ["--method", self.method, "--principal", self.principal,
                "--periods", str(self.periods), rate, self.rate, "--start", START.isoformat()]  # fmt: skip


FALLING = tuple(f"{1120 - 10 * k}.00" for k in range(12))  # 1,120.00 falling by 10.00 to 1,010.00

# fmt: off
WORKED = (
    Worked("equal-installment", "10000", 12, "12%", ("888.49",) * 11 + ("888.47",), "661.86", ("0.1200", "0.1268")),
    Worked("equal-principal", "12000", 12, "12%", FALLING, "780.00", ("0.1200", "0.1268")),
    Worked("interest-only", "10000", 12, "12%", ("100.00",) * 11 + ("10100.00",), "1200.00", ("0.1200", "0.1268")),
    Worked("flat-fee", "12000", 12, "0.6%", ("1072.00",) * 12, "864.00", ("0.1303", "0.1384")),
    Worked("flat-fee", "10000", 12, "0.6%", ("893.33",) * 11 + ("893.37",), "720.00", ("0.1303", "0.1384")),
    Worked("flat-fee", "12000", 12, "0.625%", ("1075.00",) * 12, "900.00", ("0.1357", "0.1444")),
    Worked("bullet", "10000", 3, "12%", ("10300.00",), "300.00", None),  # 90 days from Jan 15, /360
)
# fmt: on
