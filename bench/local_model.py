"""The bundled model's tokens/s through the gateway against llama-cpp-python alone.

Same GGUF, same thread count, same extra-buffer choice, same prompt, seed and sampling, so
both produce the same tokens. The library side is a process of its own that loads the
model once and runs ``Llama.generate`` on command (the loop a program using the library
would write: sample, stop at end of turn, detokenize each token); the gateway side is
``modelmart serve`` streamed by the OpenAI SDK. Runs alternate (library, gateway,
library, ...) so that other load on the machine falls on both alike; tokens/s is output
tokens over the time from the request to its last token (prompt included, both sides).

    python bench/local_model.py [--rounds 5] [--max-tokens 256] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import HOST, Processes, free_port, wait_listening  # noqa: E402

MODEL = "smollm2-135m"
PROMPT = "Write a long story about a lighthouse keeper and a storm, in many paragraphs."
SEED, TEMPERATURE, TOP_P, TOP_K = 7, 0.2, 0.9, 40  # the gateway's defaults for top_k


# ---- the library alone (runs in its own process) -----------------------------------------
def library_worker(threads: int, extra_buffers: bool) -> None:
    """Reads "N\\n" lines: generates up to N tokens, prints {"tokens", "seconds"}."""
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    params = llama_cpp.llama_model_default_params

    def patched():
        p = params()
        p.use_extra_bufts = extra_buffers
        return p

    llama_cpp.llama_cpp.llama_model_default_params = patched
    llama = llama_cpp.Llama(model_path=_gguf(), n_ctx=2048, n_threads=threads,
                            n_threads_batch=threads, verbose=False)
    llama_cpp.llama_cpp.llama_model_default_params = params
    text = llama._model.token_get_text
    fmt = Jinja2ChatFormatter(template=llama.metadata["tokenizer.chat_template"],
                              eos_token=text(llama.token_eos()), bos_token=text(llama.token_bos()))
    vocab = llama._model.vocab
    print("ready", flush=True)
    for line in sys.stdin:
        limit = int(line)
        started = time.perf_counter()
        result = fmt(messages=[{"role": "user", "content": PROMPT}])
        prompt = llama.tokenize(result.prompt.encode(), add_bos=not result.added_special,
                                special=True)
        llama.reset()
        llama.set_seed(SEED)
        count, pieces = 0, []
        tokens = llama.generate(prompt, temp=TEMPERATURE, top_p=TOP_P, top_k=TOP_K,
                                repeat_penalty=1.0)
        for token in tokens:
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            count += 1
            pieces.append(llama.detokenize([token]))
            if count >= limit:
                break
        tokens.close()
        seconds = time.perf_counter() - started
        print(json.dumps({"tokens": count, "seconds": seconds}), flush=True)


def _gguf() -> str:
    from modelmart.providers.local.model import bundled_model_path

    return bundled_model_path()


class Library:
    def __init__(self, threads: int, extra: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--library-worker", "--threads", str(threads)]
            + (["--extra-buffers"] if extra else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the library worker did not start")

    def run(self, max_tokens: int) -> dict:
        self.proc.stdin.write(f"{max_tokens}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---- the gateway ------------------------------------------------------------------------
def start_gateway(procs: Processes, workdir: Path, threads: int, extra: bool,
                  options: dict | None = None, env: dict | None = None) -> tuple[str, str]:
    """``modelmart serve`` with the bundled model only (its deployment's ``options`` added,
    the environment ``env`` added); returns (base URL, key)."""
    home = Path(tempfile.mkdtemp(prefix="modelmart-local-", dir=workdir))
    options = {"n_threads": threads, "cpu_extra_buffers": extra, **(options or {})}
    catalog = home / "modelmart.yaml"
    catalog.write_text(json.dumps({"bundled_model": False, "models": {MODEL: {
        "owned_by": "modelmart", "max_output_tokens": 256,
        "deployments": [{"provider": "local", "name": f"{MODEL}/local", "options": options}]}}}))
    env = dict(os.environ, **(env or {}), MODELMART_DATABASE_URL=f"sqlite:///{home / 'modelmart.db'}")
    log = home / "modelmart.log"
    cli = [sys.executable, "-m", "modelmart.cli.main"]

    def run(argv: list[str]) -> str:
        done = subprocess.run(cli + argv, capture_output=True, text=True, env=env, timeout=120)
        if done.returncode:
            raise RuntimeError(f"modelmart {' '.join(argv)}: {done.stderr[-300:]}")
        return done.stdout

    run(["customers", "create", "bench"])
    key = json.loads(run(["keys", "create", "--customer", "bench", "--json"]))["secret"]
    port = free_port()
    proc = procs.start(cli + ["serve", "--config", str(catalog), "--host", HOST, "--port",
                              str(port), "--log-level", "warning"], log, env=env, cwd=home)
    wait_listening(port, proc, timeout=120, log=log)
    return f"http://{HOST}:{port}/v1", key


def gateway_run(client, max_tokens: int) -> dict:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True,
        max_tokens=max_tokens, temperature=TEMPERATURE, top_p=TOP_P, seed=SEED,
        stream_options={"include_usage": True})
    tokens = 0
    for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return {"tokens": tokens, "seconds": time.perf_counter() - started}


# ---- the comparison ---------------------------------------------------------------------
def compare(rounds: int, max_tokens: int, workdir: Path, procs: Processes,
            threads: int | None = None, extra: bool | None = None, log=print,
            options: dict | None = None) -> dict:
    """``rounds`` of each side, alternating; the gateway's own defaults unless given."""
    import openai

    threads = threads or os.cpu_count() or 1
    if extra is None:
        extra = False

    base_url, key = start_gateway(procs, workdir, threads, extra, options)
    library = Library(threads, extra)
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=300)
    try:
        gateway_run(client, 16), library.run(16)  # warm-up
        runs: dict[str, list[dict]] = {"library": [], "gateway": []}
        for i in range(rounds):
            for side in (("library", "gateway") if i % 2 == 0 else ("gateway", "library")):
                r = library.run(max_tokens) if side == "library" else gateway_run(client, max_tokens)
                r["rate"] = r["tokens"] / r["seconds"]
                runs[side].append(r)
                log(f"  round {i + 1} {side:8} {r['tokens']} tokens {r['seconds']:.2f} s "
                    f"{r['rate']:.1f} tokens/s")
    finally:
        client.close()
        library.close()
    summary = {side: {"median": statistics.median(r["rate"] for r in rs),
                      "min": min(r["rate"] for r in rs), "max": max(r["rate"] for r in rs),
                      "tokens": rs[0]["tokens"]} for side, rs in runs.items()}
    ratios = [g["rate"] / lib["rate"] for g, lib in zip(runs["gateway"], runs["library"])]
    summary["ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    summary.update(rounds=rounds, max_tokens=max_tokens, threads=threads, extra_buffers=extra)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--library-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--extra-buffers", action="store_true")
    p.add_argument("--options", type=json.loads, default=None,
                   help="more options of the gateway's local deployment, as JSON")
    args = p.parse_args()
    if args.library_worker:
        library_worker(args.threads, args.extra_buffers)
        return
    procs, workdir = Processes(), Path(tempfile.mkdtemp(prefix="modelmart-local-bench-"))
    try:
        summary = compare(args.rounds, args.max_tokens, workdir, procs, args.threads,
                          args.extra_buffers, options=args.options)
    finally:
        procs.stop_all()
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
