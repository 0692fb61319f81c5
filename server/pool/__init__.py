"""The money pool (资金池): coupons and the guarantees they keep (coupons.py), the append-only
ledger of every move of money (ledger.py), the rounds' life cycle and the bureau's quota changes
(rounds.py), the hourly figures (rollup.py), the tamper-evident chain (chain.py), and the jobs
that run them (jobs.py)."""
