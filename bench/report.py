"""The results table, the issue #6 goals beside the figures, the plot, and docs/benchmarks.md.

Also a command: ``python bench/report.py bench/results/latest.json`` rewrites the page from
saved results without running anything.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import litellm_env
from modes import EXTRA_CONCURRENCY, MODES

REF = "upstream"
MM, MM2, LITELLM, FLOOR = "modelmart", "modelmart-w2", "litellm", "passthrough"
REDIS = "modelmart-redis"


# ---- machine and versions ---------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else None


def _pkg(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect_meta(command: str, litellm_venv: Path) -> dict:
    nginx = _first_line(["nginx", "-v"]) or ""
    wrk = _first_line(["wrk", "-v"]) or ""
    commit = _first_line(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"])
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
        "kernel": platform.release(), "commit": commit, "command": command,
        "versions": {"modelmart": _pkg("modelmart"), "litellm": litellm_env.version(litellm_venv),
                     "nginx": nginx.split("/")[-1] if "/" in nginx else nginx,
                     "wrk": (re.findall(r"wrk (\S+)", wrk) or [wrk])[0],
                     "aiohttp": _pkg("aiohttp"), "httptools": _pkg("httptools"),
                     "uvloop": _pkg("uvloop")},
    }


# ---- figures ----------------------------------------------------------------------------
def _cell(results: dict, target: str, mode: str, conc: int) -> dict | None:
    for cell in results["cells"]:
        if (cell["target"], cell["mode"], cell["concurrency"]) == (target, mode, conc):
            return cell
    return None


def _added(results: dict, target: str, mode: str, conc: int, key: str) -> float | None:
    cell, ref = _cell(results, target, mode, conc), _cell(results, REF, mode, conc)
    if cell is None or ref is None or not cell["requests"]:
        return None
    return cell[key] - ref[key]


def _peak_rps(results: dict, target: str, mode: str) -> float | None:
    values = [c["rps"] for c in results["cells"] if c["target"] == target and c["mode"] == mode]
    return max(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def main_modes(results: dict) -> list[str]:
    return [m for m in results["modes"] if m not in MODES or MODES[m].main]


def extra_modes(results: dict) -> list[str]:
    return [m for m in results["modes"] if m in MODES and not MODES[m].main]


def added_ttft(results: dict, target: str) -> float | None:
    ttft = results["targets"].get(target, {}).get("ttft")
    ref = results["targets"].get(REF, {}).get("ttft")
    return ttft["p50_ms"] - ref["p50_ms"] if ttft and ref else None


def _f(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def _x(value: float | None) -> str:
    return "—" if value is None else (f"{value:.1f}×" if value < 100 else f"{value:.0f}×")


# ---- tables -----------------------------------------------------------------------------
def main_table(results: dict) -> list[str]:
    modes = main_modes(results)
    head = ["target", "conc."]
    for mode in modes:
        head += [f"{mode} req/s", f"{mode} +p50 ms", f"{mode} +p99 ms", f"{mode} CPU µs/req"]
    head += ["+TTFT p50 ms", "peak RSS MB", "errors", "others' CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, info in results["targets"].items():
        if info["status"] != "ok":
            blanks = ["—"] * (len(head) - 2)
            lines.append(f"| {info['label']} — **{info['status']}**: {info['reason']} | "
                         + " | ".join(["—"] + blanks) + " |")
            continue
        for i, conc in enumerate(results["concurrency"]):
            row = [info["label"] if i == 0 else "", str(conc)]
            errors, others = 0, []
            for mode in modes:
                cell = _cell(results, name, mode, conc)
                if cell is None:
                    row += ["—"] * 4
                    continue
                errors += cell["errors"]
                if cell.get("others_cores") is not None:
                    others.append(cell["others_cores"])
                if not cell["requests"]:  # nothing finished within the cell
                    row += ["0", f"— (none in {results['duration']:g} s)", "—", "—"]
                    continue
                if name == REF:
                    row += [_f(cell["rps"], 0), f"ref {_f(cell['p50_ms'])}", f"ref {_f(cell['p99_ms'])}"]
                else:
                    row += [_f(cell["rps"], 0), _f(_added(results, name, mode, conc, "p50_ms")),
                            _f(_added(results, name, mode, conc, "p99_ms"))]
                row.append(_f(cell.get("cpu_us_per_req"), 0))
            if i == 0:
                ttft = info.get("ttft")
                row.append(f"ref {_f(ttft['p50_ms'])}" if name == REF and ttft
                           else _f(added_ttft(results, name)))
                row.append(_f(info.get("peak_rss_mb"), 0))
            else:
                row += ["", ""]
            row.append(str(errors))
            worst = max(others) if others else None
            row.append("—" if worst is None else f"{worst:.2f}" + (" ⚠" if worst >= 0.2 else ""))
            lines.append("| " + " | ".join(row) + " |")
    return lines


def ratio_table(results: dict) -> list[str]:
    concs = results["concurrency"]
    head = ["throughput ratio"] + [f"c={c}" for c in concs] + ["peak ÷ peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    pairs = [(MM, LITELLM, "modelmart ÷ LiteLLM"), (MM, FLOOR, "modelmart ÷ minimal pass-through"),
             (MM2, MM, "modelmart 2 workers ÷ 1 worker")]
    for a, b, label in pairs:
        for mode in main_modes(results):
            cells = []
            for conc in concs:
                ca, cb = _cell(results, a, mode, conc), _cell(results, b, mode, conc)
                cells.append(_x(_ratio(ca and ca["rps"], cb and cb["rps"])))
            peak = _ratio(_peak_rps(results, a, mode), _peak_rps(results, b, mode))
            lines.append(f"| {label} ({mode}) | " + " | ".join(cells) + f" | {_x(peak)} |")
    # CPU per request is the figure least moved by other load on a shared machine.
    for a, b, label in ((LITELLM, MM, "CPU per request: LiteLLM ÷ modelmart"),
                        (MM, FLOOR, "CPU per request: modelmart ÷ minimal pass-through")):
        for mode in main_modes(results):
            cells = []
            for conc in concs:
                ca, cb = _cell(results, a, mode, conc), _cell(results, b, mode, conc)
                cells.append(_x(_ratio(ca and ca.get("cpu_us_per_req"), cb and cb.get("cpu_us_per_req"))))
            lines.append(f"| {label} ({mode}) | " + " | ".join(cells) + " | |")
    return lines


BASE = "modelmart-base"


def paired_table(results: dict) -> list[str]:
    """modelmart against itself at ``--base``, cell by cell of the same run."""
    base = results["targets"].get(BASE, {})
    if base.get("status") != "ok":
        return []
    rev = next((n.split()[1] for n in base.get("notes") or [] if n.startswith("commit ")), "?")
    lines = [f"Against commit {rev} (`--base`), measured in the same run, cell after cell: "
             "change = (this checkout − base) / base; for req/s higher is better, for CPU "
             "and latency lower is better.", "",
             "| mode | conc. | req/s | base req/s | change | CPU µs/req | base CPU µs/req | "
             "change | p50 ms | base p50 ms | p99 ms | base p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode in results["modes"]:
        for conc in sorted({c["concurrency"] for c in results["cells"]}):
            now, then = _cell(results, MM, mode, conc), _cell(results, BASE, mode, conc)
            if not now or not then or not now["requests"] or not then["requests"]:
                continue
            rps = (now["rps"] - then["rps"]) / then["rps"] * 100 if then["rps"] else None
            a, b = now["cpu_us_per_req"], then["cpu_us_per_req"]
            cpu = (a - b) / b * 100 if a and b else None
            lines.append(f"| {mode} | {conc} | {now['rps']:,.0f} | {then['rps']:,.0f} | "
                         f"{_f(rps, 1, ' %')} | {_f(a, 0)} | {_f(b, 0)} | {_f(cpu, 1, ' %')} | "
                         f"{_f(now['p50_ms'])} | {_f(then['p50_ms'])} | {_f(now['p99_ms'])} | "
                         f"{_f(then['p99_ms'])} |")
    return lines


def extra_table(results: dict) -> list[str]:
    """Issue 15's real traffic: each mode at its one concurrency, every target that runs it."""
    conc = EXTRA_CONCURRENCY[0]
    lines = ["| load | target | req/s | p50 ms | p99 ms | CPU µs/req | errors | others' CPU |",
             "|---|---|---|---|---|---|---|---|"]
    for mode in ["stream"] + extra_modes(results):
        first = True
        for name, info in results["targets"].items():
            cell = _cell(results, name, mode, conc)
            if cell is None:
                continue
            others = cell.get("others_cores")
            lines.append(
                f"| {MODES[mode].label if first else ''} | {info['label']} | {_f(cell['rps'], 0)} | "
                f"{_f(cell['p50_ms'])} | {_f(cell['p99_ms'])} | {_f(cell.get('cpu_us_per_req'), 0)} | "
                f"{cell['errors']} | {'—' if others is None else f'{others:.2f}'} |")
            first = False
    return lines


def _cpu(results: dict, target: str, mode: str, conc: int) -> float | None:
    cell = _cell(results, target, mode, conc)
    return cell.get("cpu_us_per_req") if cell else None


def extra_ratios(results: dict) -> list[str]:
    """What real chunks and other dialects cost modelmart, against its own stream row."""
    conc = EXTRA_CONCURRENCY[0]
    rows = []
    for mode, versus in (("stream", "stream-simple"), ("anthropic", "stream"), ("bedrock", "stream"),
                         ("long", "stream"), ("big", "json")):
        a, b = _cell(results, MM, mode, conc), _cell(results, MM, versus, conc)
        if a is None or b is None:
            continue
        rows.append(f"| {MODES[mode].label} ÷ {MODES[versus].label} | "
                    f"{_x(_ratio(a['rps'], b['rps']))} | "
                    f"{_x(_ratio(a.get('cpu_us_per_req'), b.get('cpu_us_per_req')))} |")
    if not rows:
        return []
    return [f"| modelmart (1 worker), c={conc} | req/s | CPU µs/req |", "|---|---|---|", *rows]


def local_model_lines(results: dict) -> list[str]:
    info = results.get("local_model")
    if not info:
        return []
    if "error" in info:
        return [f"The comparison failed: {info['error']}"]
    lib, gw, ratio = info["library"], info["gateway"], info["ratio"]
    return [
        f"{info['rounds']} rounds of {info['max_tokens']} tokens (the same prompt, seed and sampling, "
        f"so both produce the same tokens), {info['threads']} threads, extra CPU buffers "
        f"{'on' if info['extra_buffers'] else 'off'}; library and gateway runs alternate, and "
        "each ratio is a gateway run over the library run beside it.",
        "",
        "| | tokens/s median | min | max |",
        "|---|---|---|---|",
        f"| llama-cpp-python alone | {lib['median']:.1f} | {lib['min']:.1f} | {lib['max']:.1f} |",
        f"| through modelmart (OpenAI SDK, streaming) | {gw['median']:.1f} | {gw['min']:.1f} | "
        f"{gw['max']:.1f} |",
        f"| gateway ÷ library (paired) | {ratio['median']:.1%} | {ratio['min']:.1%} | "
        f"{ratio['max']:.1%} |",
    ]


def streams_table(results: dict) -> list[str]:
    lines = ["| target | streams wanted | open at once | failed | seconds to open | RSS before MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|"]
    for name, info in results["targets"].items():
        check = info.get("open_streams")
        if not check:
            continue
        if "error" in check:
            lines.append(f"| {info['label']} | {results['streams']} | — | — | — | — | — ({check['error']}) |")
            continue
        failed = str(check["failed"]) + (f" ({check['first_error']})" if check["first_error"] else "")
        lines.append(f"| {info['label']} | {check['wanted']} | {check['opened']} | {failed} | "
                     f"{_f(check['seconds_to_open'])} | {_f(check['rss_before_mb'], 0)} | "
                     f"{_f(check['peak_rss_mb'], 0)} |")
    return lines


def goals(results: dict) -> list[str]:
    """The issue #6 targets, each with the measured figure and whether it is met."""
    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("**met**" if ok else "**not met**")

    rows = []
    for mode in main_modes(results):
        r = _ratio(_peak_rps(results, MM, mode), _peak_rps(results, LITELLM, mode))
        rows.append((f"throughput ≥ 50× LiteLLM ({mode}, peak ÷ peak)", "≥ 50×", _x(r),
                     verdict(None if r is None else r >= 50)))
    for mode in main_modes(results):
        r = _ratio(_peak_rps(results, MM, mode), _peak_rps(results, FLOOR, mode))
        rows.append((f"throughput ≥ 75% of the minimal pass-through ({mode})", "≥ 75%",
                     "—" if r is None else f"{r:.1%}", verdict(None if r is None else r >= 0.75)))
    c1 = min(results["concurrency"])
    p50 = _added(results, MM, "json", c1, "p50_ms")
    rows.append((f"added p50 latency at concurrency {c1}", "≤ 0.5 ms", _f(p50, 2, " ms"),
                 verdict(None if p50 is None else p50 <= 0.5)))
    ttft = added_ttft(results, MM)
    rows.append(("added time to first token (streams, c=1)", "≤ 1 ms", _f(ttft, 2, " ms"),
                 verdict(None if ttft is None else ttft <= 1.0)))
    check = results["targets"].get(MM, {}).get("open_streams") or {}
    rss, opened = check.get("peak_rss_mb"), check.get("opened")
    rows.append((f"peak memory with {results['streams']:,} open streams", "< 200 MB",
                 "—" if rss is None else f"{rss:.0f} MB ({opened} open)",
                 verdict(None if rss is None else (rss < 200 and opened == check.get("wanted")))))
    cores = results["meta"]["cores"] or 1
    scale = _ratio(_peak_rps(results, MM2, "json"), _peak_rps(results, MM, "json"))
    rows.append((f"N workers scale with cores (2 workers ÷ 1, {cores} cores, JSON)",
                 "≥ 1.5× (75% of linear)", _x(scale), verdict(None if scale is None else scale >= 1.5)))
    rows = [(f"{goal} (#6)", *rest) for goal, *rest in rows]
    conc = EXTRA_CONCURRENCY[0]
    real, simple = _cell(results, MM, "stream", conc), _cell(results, MM, "stream-simple", conc)
    r = _ratio(real and real["rps"], simple and simple["rps"])
    rows.append((f"real-shape stream within 5% of the simplified chunks (modelmart, c={conc}, "
                 "req/s) (#15)", "≥ 95%", "—" if r is None else f"{r:.1%}",
                 verdict(None if r is None else r >= 0.95)))
    for mode in main_modes(results):
        r = _ratio(_cell(results, REDIS, mode, conc) and _cell(results, REDIS, mode, conc)["rps"],
                   _cell(results, MM, mode, conc) and _cell(results, MM, mode, conc)["rps"])
        rows.append((f"limits in Redis ÷ in-process limits, one replica ({mode}, c={conc}, "
                     "req/s) (#15)", "≥ 85%", "—" if r is None else f"{r:.1%}",
                     verdict(None if r is None else r >= 0.85)))
    local = results.get("local_model") or {}
    r = (local.get("ratio") or {}).get("median")
    rows.append(("bundled model through the gateway ÷ llama-cpp-python alone, tokens/s (#15)",
                 "≥ 95%", "—" if r is None else f"{r:.1%}", verdict(None if r is None else r >= 0.95)))
    lines = ["| goal (issue) | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return lines


# ---- plot -------------------------------------------------------------------------------
def plot(results: dict, path: Path) -> Path | None:
    names = [n for n, i in results["targets"].items() if i["status"] == "ok"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_svg(results, names, path.with_suffix(".svg"))
    modes, concs = main_modes(results), results["concurrency"]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.6), squeeze=False)
    width = 0.8 / max(1, len(names))
    for ax, mode in zip(axes[0], modes):
        for i, name in enumerate(names):
            values = [(_cell(results, name, mode, c) or {}).get("rps", 0) for c in concs]
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(concs))]
            bars = ax.bar(xs, values, width, label=results["targets"][name]["label"])
            for bar, v in zip(bars, values):
                if v:
                    ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, v),
                                ha="center", va="bottom", fontsize=6, rotation=90,
                                xytext=(0, 2), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 4)  # room for the bar labels
        ax.set_xticks(range(len(concs)), [f"concurrency {c}" for c in concs])
        ax.set_ylabel("requests/s (log scale)")
        ax.set_title(f"{mode}: requests/s, one machine ({results['meta']['cores']} cores)")
        ax.grid(axis="y", alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_svg(results: dict, names: list[str], path: Path) -> Path:
    """Without matplotlib: peak JSON requests/s per target as horizontal bars."""
    peaks = [(results["targets"][n]["label"], _peak_rps(results, n, "json") or 0) for n in names]
    top = max((v for _, v in peaks), default=1) or 1
    rows = []
    for i, (label, value) in enumerate(peaks):
        y, w = 30 + i * 28, 420 * value / top
        rows.append(f'<text x="10" y="{y + 14}" font-size="12">{label}</text>'
                    f'<rect x="230" y="{y}" width="{w:.1f}" height="18" fill="#4878a8"/>'
                    f'<text x="{236 + w:.1f}" y="{y + 14}" font-size="12">{value:,.0f}</text>')
    height = 50 + 28 * len(peaks)
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}">'
                    f'<text x="10" y="18" font-size="13">peak requests/s (JSON)</text>'
                    + "".join(rows) + "</svg>\n")
    return path


# ---- the page ---------------------------------------------------------------------------
def render(results: dict, image: str | None) -> str:
    meta, v = results["meta"], results["meta"]["versions"]
    notes = [f"- **{i['label']}**: {'; '.join(i.get('notes') or [])}"
             for i in results["targets"].values() if i.get("notes")]
    parts = [
        "# Benchmarks",
        "",
        "Issue #6 (\"Speed\"): modelmart side by side with its peers, the same load, one machine, "
        "one run. Regenerate this page with one command (about 20 minutes on 2 cores):",
        "",
        "```sh\npython bench/run.py            # or bench/run.sh; --quick: a 5-minute smoke run\n"
        "python bench/run.py --only modelmart,litellm --concurrency 1,16 --duration 5\n"
        "python bench/profile.py --mode stream   # py-spy flame graph of modelmart under load\n```",
        "",
        "It needs `wrk` and `nginx` (Debian packages); LiteLLM is installed on first use into its "
        "own virtualenv under `~/.cache/modelmart-bench/` (a failed install shows as \"not "
        "available\"). Everything it starts listens on free loopback ports and is stopped at "
        "the end, also on Ctrl-C.",
        "",
        f"- date: {meta['date']}; commit {meta.get('commit') or '?'} (plus any uncommitted changes)",
        f"- machine: {meta['cores']} cores, {meta['cpu']}, Linux {meta['kernel']}, Python {meta['python']}",
        f"- versions: modelmart {v['modelmart']}, LiteLLM {v['litellm'] or 'not installed'}, "
        f"nginx {v['nginx']}, wrk {v['wrk']}, aiohttp {v['aiohttp']} (the pass-through), "
        f"httptools {v.get('httptools')}, "
        f"uvloop {v['uvloop']}",
        f"- command: `{meta['command']}`",
        f"- load: wrk, {results['threads']} thread(s), connections = concurrency, "
        f"{results['duration']:g} s per cell after a {results['warmup']:g} s warm-up; the body is a short "
        "chat request (2 messages, `max_tokens` 16); `stream` rows send `\"stream\": true`",
        "",
        "## Results",
        "",
        "`+p50`/`+p99`: latency added over the upstream called directly at the same concurrency "
        "(the `upstream` row shows its own latency, `ref`). For streams wrk times the whole "
        "response. `+TTFT`: added time to the first `data:` chunk, p50 of "
        f"{results['ttft_requests']} sequential streaming requests at concurrency 1. "
        "`peak RSS`: the target's whole process tree, sampled every 0.25 s during the load. "
        "`CPU µs/req`: CPU time (user + system) of the target's process tree during the cell "
        "divided by the requests it answered; it is the figure least disturbed by other load "
        "on the machine. "
        "`errors`: wrk's socket errors, timeouts (10 s) and non-2xx replies (both modes). "
        "Differences under ~0.1 ms at p50 and ~1 ms at p99 are noise on this machine (a "
        "negative figure means the target measured faster than the reference). `others' CPU`: "
        "cores kept busy by processes outside the benchmark during the row's cells (the worse "
        f"of the two modes); each cell first waits up to {results.get('quiet_wait', 30):g} s for "
        "the machine to be quiet, and "
        "a row marked ⚠ ran beside 0.2 cores or more of someone else's work.",
        "",
        *main_table(results),
        "",
        *ratio_table(results),
        "",
        *(["### Against an earlier commit", "", *paired_table(results), ""]
          if paired_table(results) else []),
        "### Real traffic (issue 15)",
        "",
        "The upstream sends what the providers send (see `bench/upstream.py`). Beside the "
        "`stream` rows above: the simplified chunks the bench sent before (to show what real "
        f"chunks cost), a 500-chunk stream, a 200 KB prompt, and two cross-dialect paths, each "
        f"at concurrency {EXTRA_CONCURRENCY[0]}. The pass-throughs cannot translate between "
        "dialects, so the cross-dialect rows are modelmart's alone.",
        "",
        *extra_table(results),
        "",
        *extra_ratios(results),
        "",
        "### The bundled model: through the gateway and alone",
        "",
        "`bench/local_model.py`: SmolLM2 streamed through modelmart to the OpenAI SDK, against "
        "llama-cpp-python alone (the same GGUF and settings, `Llama.generate` in a loop that "
        "stops at end of turn and detokenizes each token); tokens/s is output tokens over the "
        "time from the request to its last token.",
        "",
        *local_model_lines(results),
        "",
        f"### {results['streams']:,} concurrent open streams",
        "",
        "A slow fake upstream (`bench/slow_upstream.py`) sends one chunk per second; the bench "
        f"opens {results['streams']:,} streaming requests at once through each gateway, waits "
        f"(at most {results.get('streams_deadline_s', 15):g} s) until each has its first chunk, "
        "and samples the gateway's RSS meanwhile.",
        "",
        *streams_table(results),
        "",
        "## Goals from issues #6 and #15",
        "",
        *goals(results),
        "",
    ]
    if image:
        parts += [f"![requests per second by target and concurrency]({image})", ""]
    notes_file = Path(__file__).with_name("profile-notes.md")
    if notes_file.exists():  # hand-written: where modelmart spends its time, and proposals
        parts += [notes_file.read_text().strip(), ""]
    parts += ["## What runs", "", *notes, "",
              "The load generator shares the machine with the target, so on a 2-core machine "
              "wrk and the target compete for CPU: absolute figures are lower than on a "
              "dedicated load box, and multi-worker scaling is understated. Ratios between "
              "targets, and CPU per request, are the figures to compare; on a machine shared with "
              "other work, read the `others' CPU` column first.", ""]
    return "\n".join(parts)


def write(results: dict, output: Path) -> None:
    image = plot(results, output.with_name(output.stem))
    rel = image.name if image else None
    output.write_text(render(results, rel))
    print(f"\nwrote {output}" + (f" and {image}" if image else ""))


def console(results: dict) -> str:
    return "\n".join(["", *main_table(results), "", *ratio_table(results), "",
                      *paired_table(results), "",
                      *extra_table(results), "", *extra_ratios(results), "",
                      *local_model_lines(results), "", *streams_table(results), "",
                      *goals(results)])


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
    print(console(data))
    write(data, out)
