#!/usr/bin/env bash
# What fenqi does, in a minute: real quotes from the default catalog, then a borrower's whole
# story on an embedded SQLite database. Run by `make demo`.
set -euo pipefail

say() { printf '\n\033[1m== %s\033[0m\n' "$1"; }

say "A phone on 12 mall installments (商城分期 12期): 5,999.00 at a 0.6% monthly fee"
fenqi quote --product mall-12 --principal 5999

say "'Only 0.6% a month' with 1,000.00 taken up front: the APR tells the truth"
fenqi quote --method flat-fee --principal 100000 --periods 12 --fee-rate 0.6% --upfront-fee 1000 --json |
  python3 -c 'import json, sys; q = json.load(sys.stdin); print({k: q[k] for k in ("net_received", "total_fee", "apr_simple", "apr_compound")})'

say "Refused: 3% a month breaks the 24% cap (exit code 2, one line on stderr)"
fenqi quote --method flat-fee --principal 3000 --periods 6 --fee-rate 3% || echo "(exit code $?)"

rm -f demo.sqlite3 demo.sqlite3-wal demo.sqlite3-shm
# Simulation mode: the payment simulator's balances may be set (README, "Simulation mode").
export FENQI_DATABASE_URL="sqlite:///$PWD/demo.sqlite3" FENQI_ACTOR=demo FENQI_SIMULATION=1

say "A borrower's story (README, 'A borrower's story'), on $FENQI_DATABASE_URL"
fenqi db init
fenqi borrower create --name 张三 --phone 13800138000 --limit 20000 --json >/dev/null
fenqi method bind --borrower 1 --kind bank_card --account 6222020000001234567 --sim-balance 1000 --json >/dev/null
# Each step runs on its own day (FENQI_TODAY): staff book no further back than 31 days.
FENQI_TODAY=2026-01-15 fenqi checkout --borrower 1 --order JD-0001 --merchant 华为商城 --item "华为 Mate 70" --amount 10000 --product cash --periods 12 --date 2026-01-15 --json >/dev/null
echo "checked out loan 1: 10,000.00 over 12 months; card bound with 1,000.00 on it"

say "Feb 15: the first installment is debited from the card"
FENQI_TODAY=2026-02-15 fenqi pay 1 --amount 888.49 --date 2026-02-15

say "Mar 15: the card holds too little, so the debit is declined and nothing moves"
FENQI_TODAY=2026-03-15 fenqi pay 1 --amount 888.49 --date 2026-03-15 || echo "(exit code $?)"

say "Mar 25: past the 3 grace days, installment 2 is overdue: penalty interest and a late fee"
fenqi loan show 1 --as-of 2026-03-25

say "She tops up the card and pays what is due: penalty, late fee, then the installment"
fenqi method fund 1 --sim-balance 10000 --json >/dev/null
FENQI_TODAY=2026-03-25 fenqi pay 1 --amount 936.89 --date 2026-03-25
FENQI_TODAY=2026-04-15 fenqi pay 1 --amount 888.49 --date 2026-04-15 --json >/dev/null

say "Apr 30, 15 days into period 4: what paying everything off costs (docs/domain.md#payoff), and paying it"
fenqi payoff-quote 1 --date 2026-04-30
FENQI_TODAY=2026-04-30 fenqi prepay 1 --full --date 2026-04-30

say "The books: every movement a balanced entry, every loan's books equal to its replay"
fenqi ledger trial-balance
fenqi ledger check

say "A portfolio to look at: 300 more loans with borrowers who pay on time, by hand, late, or not"
today=$(python3 -c 'from fenqi.clock import today; print(today())')  # fenqi's today: Beijing's
fenqi seed --loans 300 --borrowers 60 --start "$today" --json >/dev/null
three_months_ago=$(python3 -c "import datetime as d; print(d.date.fromisoformat('$today') - d.timedelta(days=95))")
FENQI_TODAY="$three_months_ago" fenqi checkout --borrower 1 --order TM-0002 --merchant 天猫 --item "小米 15" --amount 5999 --product mall-12 --date "$three_months_ago" --json >/dev/null
# A password is never an argument (ps and shell history would show it): piped in on stdin.
echo agent-password | fenqi user create --username agent --role agent --password-stdin --json >/dev/null
echo admin-password | fenqi user create --username admin --role admin --password-stdin --json >/dev/null
port=${FENQI_DEMO_PORT:-8000}
cat <<EOF2

fenqi is serving on http://127.0.0.1:$port  (API docs: http://127.0.0.1:$port/docs)
  Borrower page  http://127.0.0.1:$port/me/login   phone 13800138000 (张三); ask for a code,
                 then read it with: .venv/bin/fenqi sms sent --phone 13800138000
  Console        http://127.0.0.1:$port/console/login   agent / agent-password, admin / admin-password
  Database       $FENQI_DATABASE_URL (closed through $today by the seed)
EOF2
if [ -t 1 ]; then
  echo "Press Ctrl-C to stop."
  exec fenqi serve --simulate --port "$port"
fi
# Not on a terminal (CI, a script): start it, show that it answers, and stop.
fenqi serve --simulate --port "$port" & server=$!
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz')" 2>/dev/null && break
  sleep 0.2
done
python3 -c "import urllib.request; print('healthz:', urllib.request.urlopen('http://127.0.0.1:$port/healthz').read().decode())"
kill "$server"
