"""Benchmark 3: atomic transfers per second in the simple application.

SimpleBankAccountApplication.transfer_funds between random pairs of accounts, in a
time-boxed loop, next to the library's single-save rate measured in the same run.
"""

from __future__ import annotations

import random
from decimal import Decimal

from bankaccounts.simpleapplication import SimpleBankAccountApplication
from bench.common import STORE_LABELS, Chart, Options, Result, ratio_row
from bench.limits import apps_env, loop_rate, measure_limits, save_pair_rate

KEY = "simple"
ACCOUNTS = 100
TARGET = 0.8


def transfer_rate(env: dict[str, str], seconds: float) -> float:
    """Transfers/s between random pairs of ACCOUNTS funded accounts."""
    app = SimpleBankAccountApplication(env=env)
    try:
        ids = [app.create_account() for _ in range(ACCOUNTS)]
        for account_id in ids:
            app.deposit_funds(account_id, Decimal(1_000_000))
        pick = random.Random(1).sample
        amount = Decimal("1.00")

        def transfer() -> None:
            debit, credit = pick(ids, 2)
            app.transfer_funds(debit, credit, amount)

        return loop_rate(transfer, seconds)
    finally:
        app.close()


def run(options: Options) -> Result:
    """Transfers/s per store against Application.save()/s."""
    seconds = 0.75 if options.quick else 4.0
    rows = []
    figures: list[float] = []
    limits: list[float] = []
    for store in options.common_stores:
        label = STORE_LABELS[store]
        options.progress(f"simple: {label}")
        limit = measure_limits(store, options).save
        pair = save_pair_rate(store, 0.5 if options.quick else 1.0, options.workdir)
        with apps_env(
            store, options.workdir, [SimpleBankAccountApplication.name]
        ) as env:
            figure = transfer_rate(env, seconds)
        options.progress(f"  {figure:,.0f} transfers/s; save() of two {pair:,.0f}/s")
        rows.append(
            ratio_row(
                f"{label}: the library's save() of two events (two aggregates, one "
                "call), no transfer around it",
                pair,
                "saves/s",
                limit,
                "Application.save()/s",
                at_least=TARGET,
            )
        )
        figures.append(figure)
        limits.append(limit)
        rows.append(
            ratio_row(
                f"{label}: transfer_funds",
                figure,
                "transfers/s",
                limit,
                "Application.save()/s",
                at_least=TARGET,
            )
        )
    return Result(
        key=KEY,
        title="3. Simple application: atomic transfers",
        description=(
            "`SimpleBankAccountApplication.transfer_funds` between random pairs of "
            f"{ACCOUNTS} funded accounts, one after another in one thread for "
            f"{seconds:g} s (each transfer reads both accounts from the aggregate "
            "cache and saves both new events in one atomic write). The limit is the "
            "library's `Application.save()` of one event (benchmark 1), measured "
            f"again just before. Target: >= {TARGET} x the single-save rate. "
            "A transfer writes two events, so the library's own save() of two "
            "events on two aggregates, with no reading, checking or mapping of "
            "accounts around it, is measured too: where that row misses the "
            "target, no transfer can meet it."
        ),
        rows=rows,
        chart=Chart(
            kind="bar",
            title="Simple application: transfers/s vs single-save rate",
            xlabel="store",
            ylabel="per second (log scale)",
            x=[STORE_LABELS[s] for s in options.common_stores],
            series={"transfers/s": figures, "Application.save()/s": limits},
            logy=True,
        ),
        notes=[
            "A transfer saves two events (one per account) in one write, so the "
            "same commit carries twice the events of the limit's save.",
        ],
    )


if __name__ == "__main__":
    from bench.run import main_one

    main_one(KEY)
