"""The incremental run on PostgreSQL, in two round trips (bench/README.md: a run had a fixed
cost of a dozen statements, each a round trip, about as much as the UPDATE's own work).

H needs `LOCK TABLE inventory_events IN SHARE MODE` (stock.py), which must not be held while
waiting for product row locks (an adjustment holds its product's row while it inserts an event:
a deadlock), so the lease, the checkpoint and H come from a first short transaction, and the
fold from a second one that gives the lease back (fencing: it fails if the lease was taken
over), then one UPDATE of product_stock ... FROM (the aggregate) moves every touched product
whose mark is at or below the checkpoint, RETURNING its sku, old stock and sum. It locks rows
as it goes, in id order; a row a one-product run moved past the checkpoint meanwhile is skipped
by PostgreSQL's re-check of the WHERE, and such products (rare) are then locked and folded from
their own marks.

The transactions are sent as statements separated by semicolons, each with its own BEGIN and
COMMIT, on a connection in autocommit mode (so the driver sends no BEGIN or COMMIT of its
own): the first message holds the whole first transaction and the second one's fold, the
second message the checkpoint, the summary (written once the fold's rows are back) and the
COMMIT (`postgres_run`). The first transaction still commits before the fold locks any row.
The fold reads the range from a session setting that the first transaction sets as it
commits (`_RUN_SETTING`, naming the run's lease owner): an error ends the message (the server
runs none of the rest of it), and the fold checks the setting anyway, so it never runs after
a first transaction that failed or found the lease busy. After an error the client reads that
setting to learn whether the first transaction committed (the lease then held).
Parameters are bound on the client (psycopg's ClientCursor, which quotes each value as a
literal): the simple query protocol that runs several statements takes none. PostgreSQL gives
each statement of such a message its own snapshot in READ COMMITTED, as separate round trips
would.

The statements themselves (the lease, LOCK, state and H; the fold; the checkpoint and summary)
run as PL/pgSQL functions of the connection's session, made in pg_temp the first time a pooled
connection serves a run (`_session`): PL/pgSQL keeps their plans for the session, so a run no
longer parses, analyses and plans them (~0.5 ms of server CPU a run; SQL-level PREPARE would
not last: psycopg sends DEALLOCATE ALL whenever it rolls back a transaction on a connection
where it had prepared statements). Transaction control stays in the messages. A session
without them (no TEMP privilege, its temporary objects discarded) gets the statements, in
three round trips (`postgres_start`, `postgres_fold`).

Longer than ~400 lines: the run is written in two forms that must say the same thing, the
session's functions and the plain statements a session without them falls back to, each
function built from the Core statement of its fallback and kept beside it so the two cannot
drift; and the error paths of the two transactions in one message (which one committed, is
the lease held) read only as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import ARRAY, Integer, any_, bindparam, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Select, Update

from kolaq_console.inventory.fold import is_product_data_error
from kolaq_console.inventory.lease import Lease, LeaseLost, acquire_stmt, give_back_stmt
from kolaq_console.inventory.runs import (
    ChangeRows,
    ReconcileResult,
    close_run,
    save_state_stmt,
    summary_stmt,
)
from kolaq_console.inventory.stock import (
    CHECKPOINT_KEY,
    HWM_LOCK_TIMEOUT,
    EventsBusy,
    above_mark,
    checkpoint_of,
)
from kolaq_console.models import InventoryEvent, ProductStock, utcnow

_E = InventoryEvent.__table__  # type: ignore[attr-defined]
_S = ProductStock.__table__  # type: ignore[attr-defined]
_first = itemgetter(0)
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out
_UNDEFINED_FUNCTION = "42883"


def _naive(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None)  # UTCDateTime's stored form


@cache
def _compiled(stmt: Any) -> tuple[str, dict[str, Any]]:
    from sqlalchemy.dialects.postgresql.psycopg import dialect

    compiled = stmt.compile(dialect=dialect())
    return str(compiled), dict(compiled.params)


@contextmanager
def _autocommit(engine: Engine) -> Iterator[PoolProxiedConnection]:
    """A pooled connection whose driver sends no BEGIN/COMMIT: the statements carry their own.
    The pool's connection itself, not SQLAlchemy's Connection around it (whose checkout and
    isolation-level bookkeeping cost more client CPU than a round trip); it goes back as it
    came (autocommit off), a transaction left open by an error rolled back first."""
    from psycopg import Error
    from psycopg.pq import TransactionStatus

    conn = engine.raw_connection()
    raw = conn.driver_connection
    try:
        raw.autocommit = True
        yield conn
    finally:
        try:
            if raw.pgconn.transaction_status != TransactionStatus.IDLE:
                raw.rollback()
            raw.autocommit = False
        except Error:
            conn.invalidate()  # broken: the pool drops it (the first error propagates)
        conn.close()


def _send(conn: PoolProxiedConnection, sql: str,
          params: dict[str, Any]) -> list[tuple[int, list[tuple]]]:
    """Run several statements in one round trip; (rowcount, rows) of each. A driver error is
    raised as SQLAlchemy's (DataError, OperationalError...)."""
    import psycopg

    cursor = psycopg.ClientCursor(conn.driver_connection)
    try:
        cursor.execute(sql, params)
        out = []
        while True:
            out.append((cursor.rowcount,
                        cursor.fetchall() if cursor.description is not None else []))
            if not cursor.nextset():
                return out
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc
    finally:
        cursor.close()


@cache
def _start_sql(lock_timeout: float) -> str:
    # stock.high_water_mark says why the SHARE lock makes the mark safe. The state is read by a
    # statement after the lease's: a statement's snapshot is taken when it starts, and the
    # lease may have been granted only once the previous holder's final transaction (which
    # moved the checkpoint) committed. A lease held by another run leaves nothing written (the
    # SHARE lock is still taken, waiting for event inserts in flight, until the COMMIT).
    return ("BEGIN; SET LOCAL synchronous_commit = off; "
            f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'; "
            f"{_compiled(acquire_stmt('postgresql'))[0]}; "
            "LOCK TABLE inventory_events IN SHARE MODE; "
            f"SELECT (SELECT value FROM system_state WHERE key = '{CHECKPOINT_KEY}'), "
            "coalesce(max(id), 0) FROM inventory_events; COMMIT")


_START_FUNCTION = "pg_temp.kolaq_inventory_start"
# The session's record of the run whose first transaction committed last on it: the lease's
# owner (one per run), the state read and H. A session-level setting made inside that
# transaction, so a rollback takes it back.
_RUN_SETTING = "kolaq.inventory_run"


def _in_function(stmt: Any, params: tuple[str, ...]) -> str:
    """A compiled statement for a function's body: its parameters become the function's
    (p_<name>), the values SQLAlchemy bound itself literals."""
    sql, literals = _compiled(stmt)
    for name in params:
        sql = sql.replace(f"%({name})s", f"p_{name}")
    for name, value in literals.items():
        if name not in params:
            literal = "NULL" if value is None else "'{}'".format(value.replace("'", "''"))
            sql = sql.replace(f"%({name})s", literal)
    if "%(" in sql:
        raise ValueError(f"unbound parameter left in {sql!r}")
    return sql


@cache
def _start_function_sql() -> str:
    """_start_sql's lease, LOCK and state and H as a function of the session, in the same
    order, each statement with its own snapshot as in the message (see `_fold_function_sql`):
    ~0.15 ms less server CPU a run. The lease's statement is lease.py's."""
    acquire = _in_function(acquire_stmt("postgresql"),
                           ("b_key", "b_value", "b_now", "b_now_ts", "b_owner"))
    return (f"CREATE OR REPLACE FUNCTION {_START_FUNCTION}(p_b_key varchar, p_b_value json, "
            "p_b_now timestamp, p_b_now_ts double precision, p_b_owner varchar, "
            "p_lock_timeout text) "
            "RETURNS TABLE (acquired boolean, previous json, high_water integer) "
            "LANGUAGE plpgsql AS $start$ #variable_conflict use_column\n"
            "DECLARE got varchar; state json; hw integer; BEGIN "
            "PERFORM set_config('synchronous_commit', 'off', true), "
            "set_config('lock_timeout', p_lock_timeout, true); "
            f"{acquire} INTO got; "
            "LOCK TABLE inventory_events IN SHARE MODE; "
            "SELECT (SELECT value FROM system_state "
            f"WHERE key = '{CHECKPOINT_KEY}'), coalesce(max(id), 0) INTO state, hw "
            "FROM inventory_events; "
            # for the fold in the same message, and for the client should that fail: the
            # session's setting, kept only if this transaction commits (`_RUN_SETTING`)
            "IF got IS NOT NULL THEN PERFORM set_config("
            f"'{_RUN_SETTING}', json_build_object('owner', p_b_owner, 'state', state, "
            "'hw', hw)::text, false); END IF; "
            "RETURN QUERY SELECT got IS NOT NULL, state, hw; END $start$")


@cache
def _start_call_sql(lock_timeout: float) -> str:
    return (f"BEGIN; SELECT * FROM {_START_FUNCTION}(%(b_key)s, %(b_value)s, %(b_now)s, "
            f"%(b_now_ts)s, %(b_owner)s, '{int(lock_timeout * 1000)}ms'); COMMIT")


def _events_busy(lock_timeout: float) -> EventsBusy:
    return EventsBusy(
        "inventory events are being written by a transaction that has stayed open "
        f"more than {lock_timeout:g} s; reconciliation will retry")


def postgres_start(engine: Engine, lease: Lease,
                   lock_timeout: float = HWM_LOCK_TIMEOUT) -> tuple[dict[str, Any] | None, int]:
    """The first, short transaction of a PostgreSQL bulk run, in one round trip: the lease,
    the state (checkpoint) and the safe high-water mark H. Raises LeaseBusy or EventsBusy."""
    params = {**_compiled(acquire_stmt("postgresql"))[1], **lease.acquire_params()}
    params["b_now"] = _naive(params["b_now"])
    params["b_value"] = json.dumps(params["b_value"])
    with _autocommit(engine) as conn:
        try:
            if _session(conn)[1]:
                try:
                    results = _send(conn, _start_call_sql(lock_timeout), params)
                except DBAPIError as exc:
                    if getattr(exc.orig, "sqlstate", None) != _UNDEFINED_FUNCTION:
                        raise
                    _lost_functions(conn)
                else:
                    # BEGIN, (lease acquired, the state, H), COMMIT
                    [(acquired, previous, high_water)] = results[1][1]
                    if not acquired:
                        raise lease.busy()
                    lease.held = True
                    return previous, int(high_water)
            results = _send(conn, _start_sql(lock_timeout), params)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            raise _events_busy(lock_timeout) from exc
    # BEGIN, SET, SET, the lease, LOCK, the state and H, COMMIT
    if not results[3][1]:
        raise lease.busy()
    lease.held = True
    [(previous, high_water)] = results[5][1]
    return previous, int(high_water)


# The new events summed per product (a range of the primary key), the products whose cache
# covers the checkpoint (mark <= it: nearly all) moved by that sum, RETURNING each one's sku, old
# stock, sum and number of events (runs.ChangeRow: the run's changes are these rows, a `Change`
# made of one only when read); then one row, flagged by a
# NULL id, of counts: the products touched, those with a non-zero sum, and those whose events
# sum to zero but whose mark, read under its row lock (FOR NO KEY UPDATE returns the row as the
# lock holder left it), is past the checkpoint: a one-product run may have folded part of those
# events. A product with a sum that the UPDATE left alone is one that a one-product run moved
# past the checkpoint before we got it (the UPDATE locks each row as it goes, and PostgreSQL
# re-checks the WHERE of a row that changed meanwhile and skips it): fewer rows than non-zero
# sums, or any zero-sum product past the checkpoint, sends the run down the marked-products path
# (`_pg_lock_marked`, rare). Counting is cheaper than listing the products left alone (an
# anti-join of the aggregate with the UPDATE's rows cost ~0.3 ms a run). One statement: the ids
# never travel to the client and back, and the common run needs no further statement.
# The UPDATE is a nested loop over the non-zero sums in product order (the transaction turns
# hash and merge joins off: `_fold_sql`): each touched product read by its primary key and
# locked in id order. Left to itself the planner may hash-join the aggregate with a scan of
# every product; `id = ANY(ARRAY(...))` plus a hash join, the form before, cost ~0.25 ms a run
# more server CPU than the nested loop (the array built, sorted and probed, then a hash table).
_PG_FOLD = """
WITH agg AS MATERIALIZED (
    SELECT product_id, sum(delta) AS delta, count(*) AS n FROM inventory_events
    WHERE id > %(cp)s AND id <= %(hw)s GROUP BY product_id
), moved AS (
    UPDATE product_stock s SET stock = s.stock + agg.delta
    FROM (SELECT product_id, delta, n FROM agg WHERE delta != 0 ORDER BY product_id) agg
    WHERE s.product_id = agg.product_id AND s.stock_event_id <= %(cp)s
    RETURNING s.product_id AS id, s.sku, s.stock - agg.delta AS old, agg.delta AS drift, agg.n
), zero AS (
    SELECT product_id AS id, stock_event_id FROM product_stock
    WHERE product_id = ANY(ARRAY(SELECT product_id FROM agg WHERE delta = 0))
    ORDER BY product_id FOR NO KEY UPDATE
)
SELECT id, sku, old, drift, n FROM moved
UNION ALL
SELECT NULL, NULL, count(*), count(*) FILTER (WHERE delta != 0),
    (SELECT count(*) FROM zero WHERE stock_event_id > %(cp)s) FROM agg
"""

_FOLD_FUNCTION = "pg_temp.kolaq_inventory_fold"


@cache
def _fold_function_sql() -> str:
    """_PG_FOLD as a function of the connection's session (pg_temp: no migration, gone with
    the connection), created once per pooled connection: PL/pgSQL keeps the plan of its
    statement for the session, so a run no longer parses, analyses and plans the fold (~0.3 ms
    of server CPU a run). The plan is the generic one (the range of events is a parameter):
    the same nested loop, and cheaper than a plan made for each run's values."""
    body = (_PG_FOLD.replace("%(cp)s", "p_cp").replace("%(hw)s", "p_hw")
            .replace("%(now)s", "p_now"))
    give_back = _in_function(give_back_stmt(), ("b_key", "b_value", "b_now", "b_owner"))
    return (f"CREATE OR REPLACE FUNCTION {_FOLD_FUNCTION}(p_cp integer, p_hw integer, "
            "p_now timestamp, p_b_key varchar, p_b_owner varchar, p_b_value json, "
            "p_lz4 boolean) RETURNS TABLE (id integer, sku varchar, old bigint, drift bigint, "
            "n bigint) LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off "
            "SET plan_cache_mode = force_generic_plan AS $fold$ #variable_conflict use_column\n"
            # the transaction's settings (not the SET clauses': those end with the function)
            "DECLARE run json; BEGIN "
            # no range given: this run's first transaction, sent in the same message
            # (`postgres_run`), left it in the session; nothing at all (not even the lease
            # given back) unless that transaction committed for this run (its lease's owner)
            # and found a checkpoint (none: the run is a full one, lease kept)
            "IF p_cp IS NULL THEN "
            f"run := nullif(current_setting('{_RUN_SETTING}', true), '')::json; "
            "IF run->>'owner' IS DISTINCT FROM p_b_owner "
            "OR json_typeof(run->'state') IS DISTINCT FROM 'object' THEN RETURN; END IF; "
            "p_cp := coalesce((run->'state'->>'event_id')::integer, 0); "
            "p_hw := greatest((run->>'hw')::integer, p_cp); END IF; "
            "PERFORM set_config('synchronous_commit', 'off', true); IF p_lz4 THEN "
            "PERFORM set_config('default_toast_compression', 'lz4', true); END IF; "
            f"{give_back.replace('p_b_now', 'p_now')}; "
            "IF NOT FOUND THEN RETURN; END IF; "  # the lease lost: no rows at all
            f"RETURN QUERY {body}; END $fold$")


@cache
def _fold_sql(lz4: bool, function: bool) -> str:
    """The second transaction's settings (the run's summary entry, ~14 KB of JSON for 500
    changes, compressed out of line: lz4, where the server has it, does that in a fraction of
    pglz's time, ~0.17 ms a run less server CPU; ~6.4 KB stored instead of ~5.2), the lease
    given back and the fold (the session's function, or the statement itself). One statement
    for the settings: each is a result to read."""
    if function:  # all of it in the function; no rows at all: the lease was lost
        return (f"BEGIN; SELECT * FROM {_FOLD_FUNCTION}(%(cp)s, %(hw)s, %(now)s, %(b_key)s, "
                f"%(b_owner)s, %(b_value)s, {'true' if lz4 else 'false'})")
    give_back = _compiled(give_back_stmt())[0].replace("%(b_now)s", "%(now)s")
    compression = ", set_config('default_toast_compression', 'lz4', true)" if lz4 else ""
    return ("BEGIN; SELECT set_config('synchronous_commit', 'off', true), "
            "set_config('enable_hashjoin', 'off', true), "
            f"set_config('enable_mergejoin', 'off', true){compression}; {give_back}; {_PG_FOLD}")


@cache
def _finish_sql(function: bool) -> str:
    """The checkpoint (runs.save_state_stmt) and the run's summary entry (what
    runs.finish_run writes), then the commit."""
    if function:
        return (f"SELECT {_FINISH_FUNCTION}(%(b_key)s, %(b_value)s, %(b_now)s, %(actor)s, "
                "%(details)s); COMMIT")
    return (f"{_compiled(save_state_stmt('postgresql'))[0]}; "
            f"{_compiled(summary_stmt())[0]}; COMMIT")


_FINISH_FUNCTION = "pg_temp.kolaq_inventory_finish"


@cache
def _finish_function_sql() -> str:
    """_finish_sql's two statements as a function of the session (`_fold_function_sql`)."""
    save = _in_function(save_state_stmt("postgresql"), ("b_key", "b_value", "b_now"))
    summary = _in_function(summary_stmt(), ("actor", "details", "b_now"))
    return (f"CREATE OR REPLACE FUNCTION {_FINISH_FUNCTION}(p_b_key varchar, p_b_value json, "
            "p_b_now timestamp, p_actor varchar, p_details json) RETURNS void "
            "LANGUAGE plpgsql AS $finish$ DECLARE got integer; "
            f"BEGIN {save}; {summary} INTO got; END $finish$")


_SESSION = "kolaq.inventory_pg"  # key of the driver connection's info: (lz4, fold function)
_LZ4_SQL = ("SELECT coalesce(bool_or(enumvals @> '{lz4}'), false) FROM pg_settings "
            "WHERE name = 'default_toast_compression'")


def _session(conn: PoolProxiedConnection) -> tuple[bool, bool]:
    """Once per driver connection (the pool's `info` lives and dies with it): whether the
    server can compress with lz4 (PostgreSQL 14+ built with it), and the fold function made
    (False where the session cannot have one: no TEMP privilege, say)."""
    info = conn.info
    if _SESSION not in info:
        try:
            [*_, (_, [(lz4,)])] = _send(
                conn, f"{_fold_function_sql()}; {_start_function_sql()}; "
                f"{_finish_function_sql()}; {_LZ4_SQL}", {})
            info[_SESSION] = (lz4, True)
        except DBAPIError:
            [(_, [(lz4,)])] = _send(conn, _LZ4_SQL, {})
            info[_SESSION] = (lz4, False)
    return info[_SESSION]


def _lost_functions(conn: PoolProxiedConnection) -> None:
    """The session's functions are gone (its temporary schema dropped: DISCARD, a pooler
    handing out server sessions): the failed transaction rolled back, and the statements sent
    themselves from then on on this connection."""
    conn.driver_connection.rollback()
    conn.info[_SESSION] = (conn.info[_SESSION][0], False)


def _send_fold(conn: PoolProxiedConnection, params: dict[str, Any]) -> list[tuple] | None:
    """The second transaction's first message (`_lost_functions` if need be): the fold's rows,
    or None if the lease was lost."""
    lz4, function = _session(conn)
    if function:
        try:
            results = _send(conn, _fold_sql(lz4, True), params)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _UNDEFINED_FUNCTION:
                raise
            _lost_functions(conn)
        else:
            return results[1][1] or None  # BEGIN, the fold's rows
    results = _send(conn, _fold_sql(lz4, False), params)
    # BEGIN, the settings, the lease given back, the fold
    return results[3][1] if results[2][0] == 1 else None


def _in_ids(name: str) -> Any:
    # `id = ANY(:ids)`: primary-key lookups in id order (an IN (subquery) would be planned as
    # a hash join over a scan of every product)
    return _S.c.product_id == any_(bindparam(name, type_=ARRAY(Integer)))


@cache
def _pg_lock_marked() -> Select:
    """The touched products a one-product run took past the checkpoint (rare), locked in id
    order; the statement after this one reads their marks as those runs left them. Every
    touched product at or below the checkpoint is already locked by the fold (moved, or a
    zero sum), so none can cross the checkpoint meanwhile."""
    touched = (select(_E.c.product_id).distinct()
               .where(_E.c.id > bindparam("cp"), _E.c.id <= bindparam("hw")))
    return (select(_S.c.product_id)
            .where(_S.c.product_id == any_(func.array(touched.scalar_subquery())),
                   _S.c.stock_event_id > bindparam("cp"))
            .order_by(_S.c.product_id).with_for_update(key_share=True))


@cache
def _pg_fold_marked() -> Update:
    """Locked products moved by the sum of their events above their own mark."""
    delta, n = above_mark()
    return (
        update(_S)
        .where(_in_ids("marked"), delta != 0)
        .values(stock=_S.c.stock + delta)
        .returning(_S.c.product_id, _S.c.sku, _S.c.stock, delta, n)
    )


def postgres_fold(engine: Engine, lease: Lease, checkpoint: int, high_water: int,
                  previous: dict[str, Any] | None, actor: str, started: float,
                  max_stock: int | None = None) -> ReconcileResult:
    """The second (and last) transaction of a PostgreSQL incremental run, after
    `postgres_start` (the run without the session's functions)."""
    now = utcnow()
    params = {"cp": checkpoint, "hw": high_water, "now": _naive(now)}
    with _autocommit(engine) as conn:
        # the lease given back (fencing: a run that lost it cannot commit), the fold
        found = _send_fold(conn, {**_compiled(give_back_stmt())[1], **_give_back(lease),
                                  **params})
        return _complete(conn, lease, found, params, previous, actor, started, now, max_stock)


def _give_back(lease: Lease) -> dict[str, Any]:
    params = lease.give_back_params()
    params["b_value"] = json.dumps(params.pop("b_value"))
    del params["b_now"]
    return params


def _complete(conn: PoolProxiedConnection, lease: Lease, found: list[tuple] | None,
              params: dict[str, Any], previous: dict[str, Any] | None, actor: str,
              started: float, now: datetime, max_stock: int | None) -> ReconcileResult:
    """The rest of the second transaction, once the fold's rows are back: the marked
    products (rare), then the checkpoint and the summary, and the commit."""
    result = ReconcileResult(mode="incremental")
    if found is None:
        lease.held = False
        raise LeaseLost(f"lease {lease.name!r} expired and was taken by another run")
    counts = found.pop() if found and found[-1][0] is None else None
    if counts is None:  # UNION ALL keeps its branches' order; never rely on it
        counts = next(row for row in found if row[0] is None)
        found.remove(counts)
    _, _, result.checked, nonzero, zero_marked = counts
    if len(found) != nonzero or zero_marked:
        sql, literals = _compiled(_pg_lock_marked())
        [(_, locked)] = _send(conn, sql, {**literals, **params})
        if locked:
            sql, literals = _compiled(_pg_fold_marked())
            [(_, marked)] = _send(conn, sql, {**literals, **params,
                                              "marked": [pid for pid, in locked]})
            found += [(pid, sku, new - int(delta), int(delta), int(n))
                      for pid, sku, new, delta, n in marked]
    found.sort(key=_first)  # RETURNING has no order
    applied = ChangeRows(found)  # each Change made when first read (runs.py)
    state = close_run(result, applied, params["cp"], params["hw"], previous, started, now,
                      max_stock)
    function = _session(conn)[1]
    try:
        _send(conn, _finish_sql(function), {
            **_compiled(summary_stmt())[1], "b_key": CHECKPOINT_KEY,
            "b_value": json.dumps(state), "b_now": params["now"], "actor": actor,
            "details": json.dumps(result.log_details())})
    except DBAPIError as exc:
        if function and getattr(exc.orig, "sqlstate", None) == _UNDEFINED_FUNCTION:
            conn.info[_SESSION] = (conn.info[_SESSION][0], False)  # the next run's
        raise
    lease.held = False  # given back by the transaction that committed
    return result


@cache
def _run_sql(lock_timeout: float, lz4: bool) -> str:
    """Both transactions' first messages in one: the first transaction (committed before any
    product row is locked: stock.py), then the second one's fold, which takes the range from
    the session's `_RUN_SETTING` (and does nothing unless the first committed for this run).
    An error stops the server from running the rest of the message (a failed first
    transaction never reaches the fold; the fold's own check is a second guard)."""
    return (f"{_start_call_sql(lock_timeout)}; BEGIN; SELECT * FROM {_FOLD_FUNCTION}(NULL, "
            "NULL, %(now)s, %(b_key)s, %(b_owner)s, %(g_value)s, "
            f"{'true' if lz4 else 'false'})")


def _committed_run(conn: PoolProxiedConnection,
                   lease: Lease) -> tuple[dict[str, Any] | None, int] | None:
    """After an error in `_run_sql`'s message: whether its first transaction committed for
    this run (then the lease is held), and if so its state and H. Raises if the connection
    cannot tell (broken)."""
    conn.driver_connection.rollback()
    [(_, [(run,)])] = _send(conn, f"SELECT current_setting('{_RUN_SETTING}', true)", {})
    if not run:
        return None
    run = json.loads(run)
    if run["owner"] != lease.owner:
        return None
    return run["state"], int(run["hw"])


Begun = tuple[dict[str, Any] | None, int, DBAPIError | None]


def postgres_run(engine: Engine, lease: Lease, actor: str, started: float,
                 max_stock: int | None = None,
                 lock_timeout: float = HWM_LOCK_TIMEOUT) -> ReconcileResult | Begun:
    """A PostgreSQL incremental run in two round trips: the first transaction and the second
    one's fold in one message (`_run_sql`), then the checkpoint, the summary and the commit.
    Raises LeaseBusy, EventsBusy or LeaseLost. Returns (state, H, None) with the lease held
    when nothing was reconciled before (a full run is due), and (state, H, the error) when
    the fold hit a product's data error (the caller goes product by product); on any other
    error after the first transaction committed, the lease is held for the caller to release.
    Without the session's functions: `postgres_start`, then `postgres_fold`."""
    now = utcnow()
    params = {**_compiled(acquire_stmt("postgresql"))[1], **lease.acquire_params(),
              "now": _naive(now)}
    params["b_now"] = _naive(params["b_now"])
    params["b_value"] = json.dumps(params["b_value"])
    params["g_value"] = _give_back(lease)["b_value"]
    begun: tuple[dict[str, Any] | None, int] | None = None
    with _autocommit(engine) as conn:
        lz4, function = _session(conn)
        if function:
            try:
                results = _send(conn, _run_sql(lock_timeout, lz4), params)
            except DBAPIError as exc:
                try:
                    begun = _committed_run(conn, lease)
                except Exception:
                    lease.held = True  # cannot tell: the caller releases it if it is ours
                    raise exc from None
                lease.held = begun is not None
                code = getattr(exc.orig, "sqlstate", None)
                if code == _UNDEFINED_FUNCTION:
                    _lost_functions(conn)
                elif begun is None and code == _LOCK_NOT_AVAILABLE:
                    raise _events_busy(lock_timeout) from exc
                elif begun is not None and is_product_data_error(exc):
                    return (*begun, exc)
                else:
                    raise
            else:
                # BEGIN, (lease acquired, the state, H), COMMIT, BEGIN, the fold's rows
                [(acquired, previous, high_water)] = results[1][1]
                if not acquired:
                    raise lease.busy()
                lease.held = True
                checkpoint = checkpoint_of(previous)
                if previous is None:
                    return previous, high_water, None  # the second transaction rolled back
                params["cp"], params["hw"] = checkpoint, max(high_water, checkpoint)
                return _complete(conn, lease, results[4][1] or None, params, previous, actor,
                                 started, now, max_stock)
    if begun is None:
        begun = postgres_start(engine, lease, lock_timeout)
    previous, high_water = begun
    if previous is None:
        return previous, high_water, None
    checkpoint = checkpoint_of(previous)
    try:
        return postgres_fold(engine, lease, checkpoint, max(high_water, checkpoint), previous,
                             actor, started, max_stock)
    except DBAPIError as exc:
        if not is_product_data_error(exc):
            raise
        return previous, high_water, exc
