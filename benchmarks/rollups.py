"""Benchmark: the marts at ``--devices 2000 --days 90``.

Figures, each beside a baseline measured in the same run:

1. every mart built from an extracted warehouse, for every day (as-of marts for
   every as-of date) (aim: under 60 s);
2. one daily partition of every mart after a daily run's raw load, staging included (aim: under 5 s),
   beside the same with a whole staging pass;
3. publishing all as-of rows to Cheeko's warehouse schema through ``pipelines.writes`` (aim: under 5 s
   per 100k rows), first write and an unchanged re-run;
baseline: the current streak per device written directly in PostgreSQL on the
source (gaps and islands over the same qualifying events, local days included).

    .venv/bin/python benchmarks/rollups.py [--devices 2000] [--days 90]
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from common import END, arguments, drop_databases, fresh_databases, generate_fleet, query_all, timed
from extract import everything_window, extract_all
from pipelines import rollups, warehouse
from pipelines.source_tables import source_tables


# The baseline: streaks as of END computed where the data lives, with no warehouse at all.
POSTGRES_STREAKS = """
WITH zones AS (
    SELECT lower(d.mac_address) AS mac, coalesce(k.timezone, p.timezone, 'UTC') AS zone
    FROM ai_device d LEFT JOIN kid_profile k ON k.id = d.kid_id LEFT JOIN parent_profile p ON p.user_id = d.user_id
),
events AS (
    SELECT lower(mac_address) AS mac, created_at AS at FROM ai_agent_chat_history WHERE chat_type = 1
    UNION ALL SELECT lower(mac_address), coalesce(attempt_time, answered_at, created_at) FROM analytics_game_attempts
    UNION ALL SELECT lower(mac_address), created_at FROM analytics_media_playback WHERE event_type IN ('play', 'complete')
    UNION ALL SELECT lower(mac_address), created_at FROM rfid_scan_log
),
days AS (
    SELECT DISTINCT e.mac, (e.at AT TIME ZONE coalesce(z.zone, 'UTC'))::date AS day
    FROM events e LEFT JOIN zones z USING (mac)
),
islands AS (
    SELECT mac, day, day - (row_number() OVER (PARTITION BY mac ORDER BY day))::int AS island FROM days WHERE day <= %(end)s
),
runs AS (SELECT mac, min(day) AS run_start, max(day) AS run_end FROM islands GROUP BY mac, island)
SELECT mac, max(run_end - run_start + 1) AS longest,
       max(CASE WHEN run_end >= %(end)s::date - 1 THEN run_end - run_start + 1 ELSE 0 END) AS current
FROM runs GROUP BY mac
"""


def main() -> None:
    args = arguments(__doc__)
    urls = fresh_databases()
    first = END - dt.timedelta(days=args.days - 1)
    as_of = dt.datetime.combine(END, dt.time(0), dt.UTC) + dt.timedelta(days=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        generate_fleet(urls, args, Path(tmp) / "gen")
        window = everything_window()
        extract_all(urls, path, source_tables(), {t.key: window for t in source_tables()})

        baseline = min(timed(lambda: query_all(urls["cheeko"], POSTGRES_STREAKS, {"end": END}))
                       for _ in range(2))
        with warehouse.connect(path) as con:
            def restage() -> None:
                # The staging pass (local days, dedup) over all of history, as after a change of staging SQL.
                rollups.prepare(con, whole=True)

            staging = timed(restage)
            per_mart: dict[str, float] = {}
            for name in rollups.build_order():
                per_mart[name] = timed(lambda: rollups.build_mart(con, name, as_of_time=as_of, first_day=first, last_day=END))
            everything = staging + sum(per_mart.values())
            streaks_all_dates = per_mart["device_streaks"]
            streaks_one = timed(lambda: rollups.build_mart(con, "device_streaks", as_of_time=as_of, first_day=END, last_day=END))
            one_day_whole = timed(restage) + timed(lambda: rollups.build(con, as_of_time=as_of, first_day=END, last_day=END))
            rows = sum(con.execute("SELECT count(*) FROM query_table(?) WHERE as_of_date = ?", [f"marts.{m}", END]).fetchone()[0]
                       for m in ("device_streaks", "device_progress", "learning_progress"))
            first_write = timed(lambda: rollups.publish(con, urls["cheeko"], as_of_date=END))
            rewrite = timed(lambda: rollups.publish(con, urls["cheeko"], as_of_date=END))
        # A daily run's raw load: every table again, the daily ones over END and the day before (assets.partitions);
        # staging then rebuilds the event rows of that window only.
        daily = dt.datetime.combine(END - dt.timedelta(days=1), dt.time(0), dt.UTC)
        extract_all(urls, path, source_tables(), {t.key: (daily, daily + dt.timedelta(days=2)) for t in source_tables()})
        with warehouse.connect(path) as con:
            one_day = timed(lambda: rollups.build(con, as_of_time=as_of, first_day=END, last_day=END))
            staging_pass = rollups.last_pass(con)

    print(f"rollups --devices {args.devices} --days {args.days}")
    print(f"baseline: current streaks as of {END} computed in PostgreSQL on the source   {baseline:6.2f} s")
    print(f"   staging pass over all history (MACs, local days, dedup; shared by every mart) {staging:6.2f} s")
    print(f"   device_streaks as of the same date, from staging                 {streaks_one:6.2f} s")
    print(f"   staging + device_streaks                                         {staging + streaks_one:6.2f} s   "
          f"{(staging + streaks_one) / baseline:.2f}x the baseline's time")
    print(f"   device_streaks for all {args.days} as-of dates                          {streaks_all_dates:6.2f} s")
    print(f"1. every mart, every day ({args.days} days; as-of marts for every date), staging included {everything:6.2f} s   (aim < 60 s)")
    for name, seconds in sorted(per_mart.items(), key=lambda kv: -kv[1])[:5]:
        print(f"      {name:<28} {seconds:6.2f} s")
    print(f"2. one daily partition of every mart, after a new raw load (staging included) {one_day:6.2f} s   (aim < 5 s)")
    why = f" ({staging_pass.reason})" if staging_pass.reason else ""
    print(f"      staging pass: {staging_pass.kind}{why}; the same with a whole staging pass {one_day_whole:6.2f} s")
    print(f"3. publishing {rows:,} as-of rows: first {first_write:5.2f} s ({first_write / rows * 1e5:.2f} s per 100k), "
          f"unchanged re-run {rewrite:5.2f} s (aim < 5 s per 100k)")
    drop_databases()


if __name__ == "__main__":
    main()
