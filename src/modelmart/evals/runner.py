"""Run a task against models through the gateway, item by item, into the store.

- Each (model, item, epoch) is answered by the task's solver, scored by its scorer, and
  stored at once with the ledger's tokens, cost and latency of its requests: a run killed at
  any moment resumes from the records it has (``done_keys``), never redoing an item.
- Infrastructure failures (timeouts, 5xx, 429, refused calls) are retried with backoff, then
  the item is stored as excluded (score NULL, ``error_kind``), never as a wrong answer.
- The budget: before an item is sent, its worst case (every call at its token ceiling and
  the dearest deployment's price) is reserved against what the run's keys have been billed
  (the ledger) plus what is reserved in flight; the run stops before the first item that
  would not fit, so the budget holds whatever the answers cost. Each call is checked again
  as it is sent, by the gateway's own bound on the messages it carries
  (``metering.bounds``): a call the item's reservation does not cover (an answer longer in
  bytes than the ceiling guessed, a judge prompt) reserves the difference first or stops the
  run, so the gateway, whose evaluation key carries the remaining budget too, never has to
  refuse one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field

import orjson

from modelmart.metering.bounds import MESSAGE_TOKENS, TEMPLATE_TOKENS, text_chat_bound
from modelmart.store.evals import EvalRecord, EvalRun, EvalStore

from .gateway import BudgetRefused, Gateway
from .progress import Progress
from .task import InfraError, Sample, Task, TaskState, prompt_hash, prompt_text

log = logging.getLogger("modelmart.evals")

MESSAGE_OVERHEAD_TOKENS = 8  # a chat template's tokens around each message


def tokens_upper_bound(text: str) -> int:
    """At least as many tokens as any byte-level BPE tokenizer makes of ``text``: each
    token covers at least one byte."""
    return len(text.encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS


@dataclass(slots=True)
class RunOptions:
    models: list[str]
    epochs: int = 1
    limit: int | None = None
    concurrency: int = 4
    budget_pico: int | None = None
    judge: str | None = None
    retries: int = 3  # attempts per item after the first, for infrastructure failures
    backoff_s: float = 0.5
    max_tokens: int | None = None
    temperature: float | None = None

    def params(self) -> dict:
        return {"epochs": self.epochs, "limit": self.limit, "judge": self.judge,
                "max_tokens": self.max_tokens, "temperature": self.temperature}


def fingerprint(task: Task, options: RunOptions) -> str:
    """What decides a run's records: the same command resumes the same unfinished run."""
    data = {"task": task.name, "version": task.version, "models": options.models,
            **options.params(), "budget": options.budget_pico}
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


@dataclass(slots=True)
class _Account:
    """The run's money: billed so far (ledger) and reserved for items in flight."""

    budget: int | None
    spent: int = 0
    reserved: int = 0
    stopped: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def reserve(self, worst: int) -> bool:
        async with self.lock:
            if self.stopped:
                return False
            if self.budget is not None and self.spent + self.reserved + worst > self.budget:
                self.stopped = True
                return False
            self.reserved += worst
            return True

    async def top_up(self, extra: int) -> bool:
        """More for an item in flight; a refusal stops the run."""
        async with self.lock:
            if self.budget is not None and self.spent + self.reserved + extra > self.budget:
                self.stopped = True
                return False
            self.reserved += extra
            return True

    def settle(self, worst: int, actual: int) -> None:
        self.reserved -= worst
        self.spent += actual


@dataclass(slots=True)
class _ItemMoney:
    """One item's reservation, drawn on by each of its calls at the gateway's own bound."""

    account: _Account
    reserved: int
    drawn: int = 0

    async def draw(self, worst: int) -> None:
        self.drawn += worst
        if self.drawn > self.reserved:
            extra = self.drawn - self.reserved
            if not await self.account.top_up(extra):
                raise BudgetRefused("the run's budget does not cover this call")
            self.reserved += extra


class Runner:
    def __init__(self, gateway: Gateway, evals: EvalStore, task: Task, options: RunOptions,
                 progress: Progress | None = None) -> None:
        self.gateway = gateway
        self.evals = evals
        self.task = task
        self.options = options
        self.progress = progress
        self.max_tokens = options.max_tokens or task.max_tokens
        self.temperature = (options.temperature if options.temperature is not None
                            else task.temperature)

    # ---- the plan ------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        return self.task.samples[:self.options.limit] if self.options.limit else self.task.samples

    def worst_case(self, model: str, sample: Sample) -> int:
        """Every model call and judge call of the item at its ceiling."""
        fixed = TEMPLATE_TOKENS + MESSAGE_TOKENS  # what admission adds once per call
        total, context = 0, fixed + tokens_upper_bound(sample.system or "")
        for turn in sample.turns:
            context += tokens_upper_bound(turn)
            total += self.gateway.worst_case_pico(model, context, self.max_tokens)
            context += self.max_tokens + MESSAGE_OVERHEAD_TOKENS
        if self.task.needs_judge and self.options.judge:
            judge_calls = getattr(self.task.scorer, "judge_calls", None)
            for prompt_tokens, out_tokens in (judge_calls(sample, self.max_tokens)
                                              if judge_calls else []):
                total += self.gateway.worst_case_pico(self.options.judge, prompt_tokens + fixed,
                                                      out_tokens)
        return total

    async def spent_so_far(self, run: EvalRun) -> int:
        """What the ledger has billed the run's keys, killed invocations included."""
        return sum([await self.gateway.store.spent(key_id=k) for k in run.key_ids])

    # ---- the run -------------------------------------------------------------------------
    async def run(self, run: EvalRun) -> EvalRun:
        done = await self.evals.done_keys(run.id)
        work = [(model, sample, epoch) for epoch in range(self.options.epochs)
                for sample in self.samples() for model in self.options.models
                if (model, sample.id, epoch) not in done]
        account = _Account(self.options.budget_pico, spent=await self.spent_so_far(run))
        if self.progress:
            self.progress.start(total=len(work) + len(done), done=len(done),
                                spent_pico=account.spent)
        started = time.monotonic()
        queue: asyncio.Queue = asyncio.Queue()
        for unit in work:
            queue.put_nowait(unit)
        workers = [asyncio.ensure_future(self._worker(run, queue, account))
                   for _ in range(max(1, self.options.concurrency))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            run.wall_s += time.monotonic() - started
            remaining = await self.evals.done_keys(run.id)
            complete = len(remaining) >= len(work) + len(done)
            run.status = "done" if complete else ("budget" if account.stopped else "interrupted")
            if run.status != "interrupted":
                run.finished_at = time.time()
            await self.evals.update_run(run)
            if self.progress:
                self.progress.finish(run.status)
        return run

    async def _worker(self, run: EvalRun, queue: asyncio.Queue, account: _Account) -> None:
        while not queue.empty() and not account.stopped:
            model, sample, epoch = queue.get_nowait()
            worst = self.worst_case(model, sample)
            if not await account.reserve(worst):
                return
            record, money = None, _ItemMoney(account, worst)
            try:
                record = await self._item(run, model, sample, epoch, money)
            except BudgetRefused:
                account.stopped = True
            finally:
                actual = (record.price_pico + record.judge_price_pico) if record else 0
                account.settle(money.reserved, actual)
            if record is None:
                return
            await self.evals.insert_records([record])
            if self.progress:
                self.progress.advance(error=record.score is None, spent_pico=account.spent)

    async def _item(self, run: EvalRun, model: str, sample: Sample, epoch: int,
                    money: _ItemMoney) -> EvalRecord:
        attempts, failed_ids = 0, []
        while True:
            attempts += 1
            state = TaskState(sample=sample, model=model,
                              judge=self._metered(self.options.judge,
                                                  self.gateway.caller(self.options.judge), money)
                              if self.options.judge else None)
            try:
                await self.task.solver(state, self._generate(model, money), self._task_view())
                score = await self.task.scorer(state, sample.target)
                break
            except InfraError as err:
                failed_ids += [g.request_id for g in state.generations if g.request_id]
                if err.request_id:
                    failed_ids.append(err.request_id)
                retryable = not err.kind.startswith("refused")
                if attempts > self.options.retries or not retryable:
                    log.warning("%s %s epoch %d excluded after %d attempts: %s (%s)", model,
                                sample.id, epoch, attempts, err.kind, err)
                    return await self._record(run, model, sample, epoch, state, None,
                                              attempts, failed_ids, error=err)
                await asyncio.sleep(self.options.backoff_s * 2 ** (attempts - 1))
        return await self._record(run, model, sample, epoch, state, score, attempts, failed_ids)

    def _generate(self, model: str, money: _ItemMoney):
        caller = self._metered(model, self.gateway.caller(model), money)
        max_tokens, temperature = self.max_tokens, self.temperature

        async def generate(messages, *, max_tokens=max_tokens, temperature=temperature):
            return await caller(messages, max_tokens=max_tokens, temperature=temperature)
        return generate

    def _metered(self, model: str, caller, money: _ItemMoney):
        """``caller`` drawing each call's worst case (the gateway's bound) on the item."""
        async def call(messages, *, max_tokens, temperature=None):
            tokens = text_chat_bound(m["content"] for m in messages
                                     if isinstance(m.get("content"), str))
            await money.draw(self.gateway.worst_case_pico(model, tokens, max_tokens))
            return await caller(messages, max_tokens=max_tokens, temperature=temperature)
        return call

    def _task_view(self) -> Task:
        """The task with this run's max_tokens and temperature."""
        from dataclasses import replace
        return replace(self.task, max_tokens=self.max_tokens, temperature=self.temperature)

    async def _record(self, run, model, sample, epoch, state, score, attempts, failed_ids,
                      error: InfraError | None = None) -> EvalRecord:
        rows = [await self.gateway.usage(g.request_id) for g in state.generations
                if g.request_id]
        judge_rows = [await self.gateway.usage(g.request_id)
                      for g in state.judge_generations if g.request_id]
        rows = [r for r in rows if r is not None]
        judge_rows = [r for r in judge_rows if r is not None]
        failed = [r for r in [await self.gateway.usage(i, wait_s=2.0) for i in failed_ids]
                  if r is not None]
        detail = dict(score.detail) if score else {}
        if len(state.answers) > 1:
            detail["answers"] = state.answers
        if score and score.explanation:
            detail["explanation"] = score.explanation
        if error is not None:
            detail["error"] = str(error)[:500]
        ids = [g.request_id for g in state.generations if g.request_id]
        return EvalRecord(
            run_id=run.id, task=self.task.name, task_version=self.task.version, model=model,
            item=sample.id, epoch=epoch, prompt_hash=prompt_hash(sample),
            deployment=rows[-1].deployment if rows else None, item_group=sample.group,
            prompt=prompt_text(sample), output=state.output if state.answers else None,
            score=None if error is not None or score is None else score.value,
            answer=score.answer if score else None, detail=detail,
            input_tokens=sum(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens
                             for r in rows),
            output_tokens=sum(r.output_tokens for r in rows),
            cost_pico=sum(r.cost_pico for r in rows),
            price_pico=sum(r.price_pico for r in rows) + sum(r.price_pico for r in failed),
            judge_price_pico=sum(r.price_pico for r in judge_rows),
            latency_ms=sum(r.latency_ms for r in rows) if rows else None,
            error_kind=error.kind if error is not None else (score.error_kind if score else None),
            attempts=attempts, request_id=ids[0] if ids else None,
            request_ids=ids + [i for i in failed_ids if i not in ids],
            created_at=time.time())


async def open_run(evals: EvalStore, task: Task, options: RunOptions,
                   resume: int | None = None) -> tuple[EvalRun, bool]:
    """The run to work on: ``resume``'s, else the unfinished run of the same command, else a
    new one. Returns it and whether it was resumed."""
    fp = fingerprint(task, options)
    run = await evals.get_run(resume) if resume is not None else await evals.unfinished_run(fp)
    if resume is not None and run is None:
        raise ValueError(f"no evaluation run {resume}")
    if run is not None:
        if run.task_version != task.version:
            raise ValueError(f"run {run.id} was made with {run.task}@{run.task_version}; "
                             f"this is {task.name}@{task.version}")
        return run, True
    now = time.time()
    params = {**options.params(), "kind": task.kind, "scale": list(task.scale)}
    run = EvalRun(id=0, task=task.name, task_version=task.version, models=options.models,
                  params=params, fingerprint=fp, status="running", created_at=now,
                  updated_at=now, budget_pico=options.budget_pico, key_ids=[])
    return await evals.create_run(run), False
