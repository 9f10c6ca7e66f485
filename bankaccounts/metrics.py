"""The Prometheus metrics of a process, and their text for GET /metrics.

Every metric lives on prometheus_client's default registry, so the code that counts
(the web's middleware, the feed hub, the followers' pages, the conflict retries, the
feed subscription) only imports its object here. Counters count from the start of
the process. Gauges of state kept elsewhere (each follower's position and lag, the
connection pools) are read when scraped, from the applications that a process
registers with watch_applications(); a scrape of the lags costs what `bankaccounts
status` costs: a few indexed queries per follower and upstream, and counting at
most LAG_COUNT_LIMIT notifications.

A process forked by uvicorn's --workers keeps counters of its own; a scrape reaches
one of them (see the README's metrics paragraph).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from bankaccounts.logs import one_line

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from eventsourcing.application import Application

    from bankaccounts.deploy.status import FollowerStatus

logger = logging.getLogger(__name__)

# Without a *_created sample per series: Prometheus does not use them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Latency buckets in seconds: an API read takes a millisecond or two.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

HTTP_REQUESTS = Counter(
    "bankaccounts_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "bankaccounts_http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
COMMANDS_RECORDED = Counter(
    "bankaccounts_commands_recorded",
    "Money commands recorded by this web process (deposit, withdrawal, transfer).",
    ["kind"],
)
TRANSACTIONS_FINISHED = Counter(
    "bankaccounts_transactions_finished",
    "Transactions seen to finish in the feed since the process started, by outcome.",
    ["outcome"],
)
FOLLOWER_POSITION = Gauge(
    "bankaccounts_follower_position",
    "The last notification id of the upstream that the follower has processed.",
    ["follower", "upstream"],
)
FOLLOWER_LAG = Gauge(
    "bankaccounts_follower_lag",
    "Notifications of the follower's topics in the upstream after its position "
    "(counted up to 10000).",
    ["follower", "upstream"],
)
PAGES_PROCESSED = Counter(
    "bankaccounts_pages_processed",
    "Pages of upstream events recorded by a follower, one commit each.",
    ["application"],
)
EVENTS_PROCESSED = Counter(
    "bankaccounts_events_processed",
    "Upstream events processed by a follower (in the pages recorded).",
    ["application"],
)
RECONNECTS = Counter(
    "bankaccounts_reconnects",
    "Connections to PostgreSQL made again after a failure, by what reconnected "
    "(a worker, or a web process's feed subscription).",
    ["process"],
)
VERSION_CONFLICTS = Counter(
    "bankaccounts_version_conflicts",
    "Writes refused because another writer saved the same aggregate version first.",
    ["application"],
)
CONFLICT_RETRIES = Counter(
    "bankaccounts_conflict_retries",
    "Writes tried again after a version conflict.",
    ["application"],
)
POOL_CONNECTIONS = Gauge(
    "bankaccounts_pool_connections",
    "Connections of an application's PostgreSQL pool: in_use, idle, and waiting "
    "(requests waiting for a connection).",
    ["application", "state"],
)
WEBSOCKET_CLIENTS = Gauge(
    "bankaccounts_websocket_clients",
    "Websocket clients connected to the feed.",
)
WEBSOCKET_OVERRUNS = Counter(
    "bankaccounts_websocket_overruns",
    "Websocket clients told to reconnect because their queue of messages overflowed.",
)

_sources: list[Callable[[], Mapping[str, Application[Any]]]] = []
_scrape_lock = threading.Lock()


def watch_applications(
    applications: Callable[[], Mapping[str, Application[Any]]],
) -> Callable[[], None]:
    """Reads positions, lags and pools from these applications at each scrape.

    applications() gives the process's applications by name (Bank.applications, or
    a worker's follower and upstreams). Returns a function that stops watching.
    """
    _sources.append(applications)

    def unwatch() -> None:
        if applications in _sources:
            _sources.remove(applications)

    return unwatch


def render_metrics() -> tuple[bytes, str]:
    """The metrics in the Prometheus text format, and its content type.

    The gauges read at scrape time are refreshed first; a source that fails (its
    database is unreachable) leaves them out and is logged, the rest is served.
    """
    with _scrape_lock:
        FOLLOWER_POSITION.clear()
        FOLLOWER_LAG.clear()
        POOL_CONNECTIONS.clear()
        for source in list(_sources):
            try:
                apps = source()
                refresh_followers(follower_statuses(apps))
                refresh_pools(apps)
            except Exception as error:
                logger.warning(
                    "metrics: cannot read the followers' positions: %s: %s",
                    type(error).__name__,
                    one_line(error),
                )
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def follower_statuses(apps: Mapping[str, Application[Any]]) -> list[FollowerStatus]:
    """Each follower's position and lag, for the followers whose upstreams are here.

    With every application of the system (a web process, the embedded bank), as
    `bankaccounts status` reads them; a worker has only its follower and upstreams.
    """
    from bankaccounts.deploy.status import follower_status, read_statuses
    from bankaccounts.system.definition import BankAccountSystem

    follows = BankAccountSystem().follows
    if all(name in apps for name in follows) and all(
        upstream in apps for upstreams in follows.values() for upstream in upstreams
    ):
        return read_statuses(apps)
    return [
        follower_status(apps[follower_name], apps[upstream_name])
        for follower_name, upstream_names in follows.items()
        if follower_name in apps and all(name in apps for name in upstream_names)
        for upstream_name in upstream_names
    ]


def refresh_followers(statuses: list[FollowerStatus]) -> None:
    """Sets the position and lag gauges of each follower in each upstream."""
    for status in statuses:
        FOLLOWER_POSITION.labels(status.follower, status.upstream).set(status.position)
        FOLLOWER_LAG.labels(status.follower, status.upstream).set(status.lag)


def refresh_pools(apps: Mapping[str, Application[Any]]) -> None:
    """Sets the pool gauges of each application that keeps a PostgreSQL pool."""
    for name, app in apps.items():
        stats = pool_stats(app)
        if stats is None:
            continue
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        POOL_CONNECTIONS.labels(name, "in_use").set(max(size - idle, 0))
        POOL_CONNECTIONS.labels(name, "idle").set(idle)
        POOL_CONNECTIONS.labels(name, "waiting").set(stats.get("requests_waiting", 0))


def pool_stats(app: Application[Any]) -> dict[str, int] | None:
    """psycopg_pool's statistics of the application's pool (None: not PostgreSQL)."""
    from eventsourcing.postgres import PostgresFactory

    factory = app.factory
    if not isinstance(factory, PostgresFactory):
        return None
    stats: dict[str, int] = factory.datastore.pool.get_stats()
    return stats
