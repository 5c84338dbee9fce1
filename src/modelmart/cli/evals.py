"""``modelmart eval run|list|report|pairwise`` and ``modelmart leaderboard``."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

from modelmart.core.errors import GatewayError
from modelmart.core.money import usd_to_pico
from modelmart.store.errors import StoreError

from .common import CLIError, add_database_arg, print_json, run_with_store


def _settings(args):
    from modelmart.api.settings import Settings

    settings = Settings.from_env()
    changes = {}
    if args.config:
        changes["config_path"] = args.config
    if args.database:
        changes["database_url"] = args.database
    return dataclasses.replace(settings, **changes) if changes else settings


def _options(args, run=None):
    from modelmart.evals.runner import RunOptions

    if run is not None:  # --resume: the run's own options, whatever the flags say
        p = run.params
        return RunOptions(models=list(run.models), epochs=p.get("epochs", 1),
                          limit=p.get("limit"), judge=p.get("judge"),
                          max_tokens=p.get("max_tokens"), temperature=p.get("temperature"),
                          budget_pico=run.budget_pico, concurrency=args.concurrency,
                          retries=args.retries)
    if not args.models:
        raise CLIError("--models is required (comma-separated model ids)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(set(models)) != len(models):
        raise CLIError("--models lists a model twice")
    try:
        budget = usd_to_pico(args.budget) if args.budget is not None else None
    except ValueError as exc:
        raise CLIError(f"--budget: {exc}") from None
    return RunOptions(models=models, epochs=args.epochs, limit=args.limit,
                      concurrency=args.concurrency, budget_pico=budget, judge=args.judge,
                      retries=args.retries, max_tokens=args.max_tokens,
                      temperature=args.temperature)


async def _gateway(args):
    """The gateway to evaluate through, and the store to close after (remote only)."""
    from modelmart.evals.gateway import InProcessGateway, RemoteGateway
    from modelmart.store.base import open_store

    settings = _settings(args)
    if args.server:
        if not args.api_key:
            raise CLIError("--server needs --api-key")
        store = await open_store(settings.database_url)
        gateway = RemoteGateway(args.server, args.api_key, store, settings)
    else:
        gateway, store = InProcessGateway(settings), None
    await gateway.start()
    return gateway, store


async def _eval_run(args) -> int:
    from modelmart.evals.progress import Progress
    from modelmart.evals.registry import load_task
    from modelmart.evals.results import print_summary
    from modelmart.evals.runner import Runner, open_run
    from modelmart.store.evals import EvalStore

    task = load_task(args.task, scorer=args.scorer)
    gateway, store = await _gateway(args)
    try:
        evals = EvalStore(gateway.store)
        run = None
        if args.resume is not None:
            run = await evals.get_run(args.resume)
            if run is None:
                raise CLIError(f"no evaluation run {args.resume}")
        options = _options(args, run)
        if task.needs_judge and not options.judge:
            raise CLIError(f"{task.name} needs a judge: --judge MODEL")
        for model in options.models + ([options.judge] if options.judge else []):
            gateway.check_model(model)
        run, resumed = await open_run(evals, task, options, args.resume)
        print(f"{'resuming' if resumed else 'starting'} run {run.id}: {task.name}@{task.version}"
              f" on {', '.join(options.models)}", file=sys.stderr)
        runner = Runner(gateway, evals, task, options, Progress(f"run {run.id}"))
        spent = await runner.spent_so_far(run)
        remaining = None if options.budget_pico is None else options.budget_pico - spent
        key_id = await gateway.issue_key(remaining, f"eval-run-{run.id}")
        if key_id is not None and key_id not in run.key_ids:
            run.key_ids.append(key_id)
            await evals.update_run(run)
        run = await runner.run(run)
        await print_summary(evals, run)
        return 0 if run.status in ("done", "budget") else 1
    finally:
        await gateway.close()
        if store is not None:
            await store.close()


async def _eval_pairwise(args) -> int:
    from modelmart.evals.leaderboard import leaderboard, render
    from modelmart.evals.pairwise import judge_pairs
    from modelmart.evals.progress import Progress
    from modelmart.evals.registry import load_task
    from modelmart.store.evals import EvalStore

    gateway, store = await _gateway(args)
    try:
        evals = EvalStore(gateway.store)
        run = await evals.get_run(int(args.run))
        if run is None:
            raise CLIError(f"no evaluation run {args.run}")
        if len(run.models) < 2:
            raise CLIError(f"run {run.id} has one model: nothing to compare")
        task = load_task(run.task)
        if task.version != run.task_version:
            raise CLIError(f"run {run.id} was made with another version of {run.task}")
        gateway.check_model(args.judge)
        await gateway.issue_key(None, f"eval-pairwise-{run.id}")
        await judge_pairs(gateway, evals, run, task, args.judge, args.concurrency,
                          Progress(f"pairwise {run.id}"))
        print(render(await leaderboard(evals, task=run.task), "table"))
        return 0
    finally:
        await gateway.close()
        if store is not None:
            await store.close()


def _pairwise(args) -> int:
    return _guarded(_eval_pairwise, args)


def _run(args) -> int:
    return _guarded(_eval_run, args)


def _guarded(command, args) -> int:
    try:
        return asyncio.run(command(args))
    except (CLIError, ValueError, StoreError) as exc:
        print(f"modelmart: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"modelmart: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("modelmart: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _list(args) -> int:
    from modelmart.store.evals import EvalStore

    async def body(store) -> int:
        runs = await EvalStore(store).list_runs(args.task)
        rows = [{"id": r.id, "task": r.task, "version": r.task_version,
                 "models": ",".join(r.models), "status": r.status,
                 "wall_s": round(r.wall_s, 1)} for r in runs]
        if args.json:
            print_json(rows)
        else:
            from .common import print_table
            print_table(rows, ["id", "task", "version", "models", "status", "wall_s"])
        return 0
    return run_with_store(args, body)


def _leaderboard(args) -> int:
    from modelmart.evals.leaderboard import leaderboard, load_reported, render

    async def body(store) -> int:
        from modelmart.store.evals import EvalStore
        reported = load_reported(args.reported) if args.reported else None
        board = await leaderboard(EvalStore(store), task=args.task, seed=args.seed,
                                  reported=reported)
        print(render(board, args.format))
        return 0
    return run_with_store(args, body)


def _report(args) -> int:
    from modelmart.evals.report import write_report

    async def body(store) -> int:
        from modelmart.store.evals import EvalStore
        paths = await write_report(EvalStore(store), int(args.run), args.out, seed=args.seed,
                                   label=args.label)
        for path in paths:
            print(path)
        return 0
    return run_with_store(args, body)


def _export(args) -> int:
    """A run's item-level records as JSON lines: everything a statistic is made of."""
    import json
    from dataclasses import asdict

    async def body(store) -> int:
        from modelmart.store.evals import EvalStore
        evals = EvalStore(store)
        if await evals.get_run(int(args.run)) is None:
            raise CLIError(f"no evaluation run {args.run}")
        records = await evals.records(run_id=int(args.run))
        out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
        try:
            for rec in records:
                out.write(json.dumps(asdict(rec), ensure_ascii=False) + "\n")
        finally:
            if args.out:
                out.close()
        return 0
    return run_with_store(args, body)


def register(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate models on tasks through the gateway")
    actions = ev.add_subparsers(dest="action", required=True)
    p = actions.add_parser("run", help="run a task against models")
    p.add_argument("task", help="humaneval, mt-bench, or a .jsonl file of your own")
    p.add_argument("--models", help="comma-separated model ids")
    p.add_argument("--limit", type=int, help="the first N items only")
    p.add_argument("--epochs", type=int, default=1, help="samples per item (pass@k needs k)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--budget", help="USD: the run stops before it could spend more")
    p.add_argument("--judge", help="the catalog model that judges (mt-bench, judge scorers)")
    p.add_argument("--scorer", help="for .jsonl tasks: exact, regex, numeric, choice or judge")
    p.add_argument("--max-tokens", type=int, help="per answer (default: the task's)")
    p.add_argument("--temperature", type=float, help="default: the task's (0 for pass@1)")
    p.add_argument("--retries", type=int, default=3,
                   help="retries of an item after infrastructure failures (then excluded)")
    p.add_argument("--resume", type=int, metavar="RUN", help="resume this run")
    p.add_argument("--server", help="a running gateway's URL (default: in-process)")
    p.add_argument("--api-key", help="an API key of the server (with --server)")
    p.add_argument("--config", help="the catalog file (default $MODELMART_CONFIG)")
    add_database_arg(p)
    p.set_defaults(func=_run)

    p = actions.add_parser("pairwise", help="judge a run's answers pair by pair (both orders)")
    p.add_argument("run", help="run id")
    p.add_argument("--judge", required=True, help="the catalog model that judges")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--server", help="a running gateway's URL (default: in-process)")
    p.add_argument("--api-key", help="an API key of the server (with --server)")
    p.add_argument("--config", help="the catalog file (default $MODELMART_CONFIG)")
    add_database_arg(p)
    p.set_defaults(func=_pairwise)

    p = actions.add_parser("list", help="evaluation runs")
    p.add_argument("--task")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_list)

    p = actions.add_parser("report", help="charts and a markdown summary of a run")
    p.add_argument("run", help="run id")
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", help="a note for the title (e.g. who judged)")
    add_database_arg(p)
    p.set_defaults(func=_report)

    p = actions.add_parser("export", help="a run's item-level records as JSON lines")
    p.add_argument("run", help="run id")
    p.add_argument("--out", help="file to write (default: stdout)")
    add_database_arg(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("leaderboard", help="models per task: score, interval, frontier gap, cost")
    p.add_argument("--task")
    p.add_argument("--format", choices=["table", "json", "md"], default="table")
    p.add_argument("--reported", metavar="FILE",
                   help="published scores (YAML: task, model, score, source), shown apart")
    p.add_argument("--seed", type=int, default=0)
    add_database_arg(p)
    p.set_defaults(func=_leaderboard)
