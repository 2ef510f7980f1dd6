"""The ``rap-assets`` command line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rap_assets.settings import project_root, rap_assets_home, watchlist_path


def _dagster_home() -> Path:
    """``DAGSTER_HOME``, defaulting to ``$RAP_ASSETS_HOME/dagster`` with the project's
    dagster.yaml, so the CLI's runs and ``rap-assets dev`` share one instance."""
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured) if configured else rap_assets_home() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    template = project_root() / "dagster.yaml"
    target = home / "dagster.yaml"
    if (
        not configured
        and template.is_file()
        and (not target.exists() or target.read_text() != template.read_text())
    ):
        shutil.copyfile(template, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from rap_assets.warehouse import Warehouse, migrate, redact_url

    warehouse = Warehouse(database_url=os.environ.get("DATABASE_URL") or None)
    applied = migrate(warehouse.url)
    target = redact_url(warehouse.url) if warehouse.database_url else "embedded pgserver"
    if applied:
        for m in applied:
            print(f"applied {m.version:03d}_{m.name}")
    else:
        print(f"{target}: schema is up to date")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    import dagster as dg

    _dagster_home()
    from rap_assets.automation import ARTISTS, load_watchlist
    from rap_assets.definitions import defs

    watchlist = load_watchlist()
    keys = [a.partition_key for a in watchlist]
    if args.artist:
        by_name = {a.name.lower(): a.partition_key for a in watchlist} | {k: k for k in keys}
        unknown = [name for name in args.artist if name.strip().lower() not in by_name]
        if unknown:
            print(
                f"not on the watchlist ({watchlist_path()}): {', '.join(unknown)}", file=sys.stderr
            )
            return 2
        keys = list(dict.fromkeys(by_name[name.strip().lower()] for name in args.artist))
    failures = 0
    with dg.DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(ARTISTS))
        missing = [k for k in keys if k not in known]
        if missing:
            instance.add_dynamic_partitions(ARTISTS, missing)

        def run(job_name: str, label: str, partition_key: str | None = None) -> bool:
            job = defs.resolve_job_def(job_name)
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=partition_key,
                instance=instance,
                raise_on_error=False,
                run_config=_refresh_config(job, args.full_refresh),
            )
            print(f"{label}: {_summary(result, started)}", flush=True)
            return result.success

        failures += not run("embedding_model", "[model] embedding model")
        for index, key in enumerate(keys, start=1):
            failures += not run("artist_refresh", f"[{index}/{len(keys)}] {key}", key)
        failures += not run("corpus_refresh", "[corpus] search index + evaluation")
    if failures:
        print(
            f"{failures} run(s) failed; see the Dagster UI (rap-assets dev) for the logs",
            file=sys.stderr,
        )
        return 1
    return 0


def _refresh_config(job: object, full_refresh: bool) -> dict[str, object]:
    # The CLI prints its own progress line per run; Dagster's step logs stay in the UI.
    quiet: dict[str, object] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    if not full_refresh:
        return quiet
    from rap_assets.assets import REFRESHABLE_ASSETS

    selected = {n.name for n in job.graph.node_defs}  # type: ignore[attr-defined]
    ops = {
        a.op.name: {"config": {"full_refresh": True}}
        for a in REFRESHABLE_ASSETS
        if a.op.name in selected
    }
    return {**quiet, "ops": ops}


def _summary(result: object, started: float) -> str:
    import dagster as dg

    assert isinstance(result, dg.ExecuteInProcessResult)
    parts = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        written = materialization.metadata.get("rows_written")
        value = getattr(written, "value", written)
        parts.append(f"{materialization.asset_key.to_user_string()}={value}")
    status = "ok" if result.success else "FAILED"
    if not result.success:
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            while (
                error is not None and error.cause is not None
            ):  # the user's error, not Dagster's wrapper
                error = error.cause
            message = error.message.strip().splitlines()[0] if error else "unknown error"
            parts.append(f"{event.step_key}: {message}")
    return f"{status} in {time.perf_counter() - started:.1f}s (rows written: {', '.join(parts)})"


def cmd_search(args: argparse.Namespace) -> int:
    from rap_assets.search import RapSearch

    search = RapSearch.from_env()
    explicit = {"yes": True, "no": False, None: None}[args.explicit]
    try:
        hits = search.search(
            args.query,
            limit=args.limit,
            mode=args.mode,
            artists=args.artist,
            year_from=args.year_from,
            year_to=args.year_to,
            mood=args.mood,
            min_quality=args.min_quality,
            explicit=explicit,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([h.model_dump(mode="json") for h in hits], indent=2, ensure_ascii=False))
    else:
        for hit in hits:
            print(hit)
        if not hits:
            print(
                "no results: materialize the pipeline first (rap-assets materialize)",
                file=sys.stderr,
            )
    return 0


def cmd_parse_lyrics(args: argparse.Namespace) -> int:
    from rap_assets.lyrics import UnreadablePage, parse_lyrics_html

    try:
        parsed = parse_lyrics_html(Path(args.page).read_bytes())
    except (OSError, UnreadablePage) as exc:
        print(f"error: cannot read {args.page}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(parsed.to_dict(), indent=2, ensure_ascii=False))
    elif parsed.text:
        print(parsed.text)
    else:
        print(f"({parsed.status})")
    return {"lyrics": 0, "instrumental": 3, "missing": 4}[parsed.status]


def cmd_dev(args: argparse.Namespace) -> int:
    home = _dagster_home()
    print(f"DAGSTER_HOME={home}")
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(project_root() / "workspace.yaml"),
        *args.dagster_args,
    ]
    os.execv(sys.executable, command)  # noqa: S606 - replaces this process with dagster dev; argv is fixed
    return 0  # pragma: no cover - execv does not return


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rap-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="warehouse administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", help="apply pending SQL migrations").set_defaults(
        func=cmd_db_migrate
    )

    mat = sub.add_parser(
        "materialize", help="materialize the whole lineage for every watchlist artist"
    )
    mat.add_argument("--artist", action="append", help="only this artist (repeatable)")
    mat.add_argument(
        "--full-refresh", action="store_true", help="re-fetch and recompute everything"
    )
    mat.set_defaults(func=cmd_materialize)

    search = sub.add_parser("search", help="search the lyrics")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=10)
    search.add_argument(
        "--mode",
        choices=("semantic", "keyword", "hybrid"),
        default=None,
        help="semantic (the default, fastest), keyword (full text) or hybrid (reciprocal rank "
        "fusion of the two; ranks best on the graded set)",
    )
    search.add_argument("--artist", action="append", help="only this artist (repeatable)")
    search.add_argument("--year-from", type=int, help="released in or after this year")
    search.add_argument("--year-to", type=int, help="released in or before this year")
    search.add_argument("--mood", action="append", help="only this mood (repeatable)")
    search.add_argument("--min-quality", type=float, help="analysed quality at least (1-10)")
    search.add_argument("--explicit", choices=["yes", "no"], help="Spotify's explicit flag")
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    parse = sub.add_parser("parse-lyrics", help="parse a saved genius.com song page")
    parse.add_argument("page")
    parse.add_argument("--json", action="store_true")
    parse.set_defaults(func=cmd_parse_lyrics)

    dev = sub.add_parser(
        "dev", help="run the Dagster UI and daemon (dagster dev) on the project instance"
    )
    dev.set_defaults(func=cmd_dev)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "dev":
        # everything after `dev` belongs to dagster dev (-p 3001, -h 0.0.0.0, ...)
        args.dagster_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
