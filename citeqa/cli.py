"""`citeqa` command line: parses arguments, calls the Python API, formats. No logic of its own."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from citeqa import plural
from citeqa.errors import CiteqaError, InputError


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def _config(args: argparse.Namespace):
    from citeqa.config import Config

    return Config.resolve(collection=getattr(args, "collection", None), backend=getattr(args, "backend", None),
                          min_confidence=getattr(args, "min_confidence", None))


def cmd_index_add(args: argparse.Namespace) -> int:
    from index import ingest

    report = ingest.add([Path(p) for p in args.paths], _config(args), progress=False if args.json else None)
    for s in report.skipped:
        print(f"skipped: {s['path']} {s['reason']}" + (f". Fix: {s['fix']}" if s["fix"] else ""), file=sys.stderr)
    for r in report.renamed:
        print(f"note: {r['path']} is indexed as {r['doc_id']!r}: the id {r['taken']!r} belongs to {r['by']}",
              file=sys.stderr)
    if args.json:
        _print_json(report.to_dict())
    else:
        skipped = f"; skipped {plural(len(report.skipped), 'file')} (listed above)" if report.skipped else ""
        print(f"added {report.documents_added}, updated {report.documents_updated}, unchanged "
              f"{report.documents_unchanged} documents; {plural(report.chunks_added, 'chunk')} in "
              f"{report.seconds:.1f} s{skipped}")
    return 1 if report.failed else 0


def cmd_index_list(args: argparse.Namespace) -> int:
    from index import ingest

    listing = ingest.listing(_config(args))
    if args.json:
        _print_json(listing)
    else:
        print(f"collection {listing['collection']} ({listing['embedding_model']})")
        for d in listing["documents"]:
            print(f"  {d['doc_id']}  {plural(d['chunks'], 'chunk')}  {d['sha256'][:12]}  {d['source']}")
    return 0


def cmd_index_remove(args: argparse.Namespace) -> int:
    from index import ingest

    result = ingest.remove(args.doc_id, _config(args))
    print(f"removed {result['removed']} ({plural(result['chunks'], 'chunk')})")
    return 0


def _show(answer, as_json: bool) -> None:
    if as_json:
        _print_json(answer.to_dict())
        return
    for w in answer.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(answer.answer)
    if not answer.refused:
        print(f"(confidence {answer.confidence:.2f})")
    for c in answer.citations:
        page = f" p. {c.page}" if c.page else ""
        print(f"\n[{c.n}] {c.doc_id}{page} chars {c.start_char}-{c.end_char} (score {c.score:.2f})\n    {c.text}")


def read_batch(path: Path) -> list[tuple[object, str, list[dict]]]:
    """(id, question, history) for each line of a batch file, every line checked before any is asked, so
    a bad line 50 costs no answers. A line is a JSON object {"id", "question", "history"} or, when it does
    not start with "{" or "[", the question itself (its id is its line number). Blank lines are skipped.

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "q.txt"
    >>> _ = f.write_text('Who retook the town?\\n\\n{"id": "q2", "question": "When?"}\\n')
    >>> read_batch(f)
    [(1, 'Who retook the town?', []), ('q2', 'When?', [])]
    """
    from agent.inputs import check_history

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the batch file {path}: {exc.strerror}",
                         fix="pass a file with one question, or one JSON object, per line") from None
    except UnicodeDecodeError:
        raise InputError(f"the batch file {path} is not UTF-8", fix="save it as UTF-8") from None
    items = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not line.lstrip().startswith(("{", "[")):
            items.append((line_no, line.strip(), []))
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("question"), str):
                raise ValueError("no string \"question\"")
            history = check_history(item.get("history"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise InputError(f"{path}:{line_no} is not a JSON object with a \"question\" ({exc})",
                             fix='write lines like {"id": "q1", "question": "...", "history": []}, '
                                 'or the question alone') from None
        except InputError as exc:
            raise InputError(f"{path}:{line_no}: {exc.message}", fix=exc.fix) from None
        items.append((item.get("id", line_no), item["question"], history))
    if not items:
        raise InputError(f"the batch file {path} holds no question",
                         fix="write one question, or one JSON object, per line")
    return items


def cmd_ask(args: argparse.Namespace) -> int:
    from agent import Agent

    agent = Agent(config=_config(args))
    if args.batch:
        for item_id, question, history in read_batch(Path(args.batch)):
            _print_json({"id": item_id, **agent.ask(question, history=history, docs=args.doc).to_dict()})
        return 0
    if not args.question:
        raise InputError("no question given", fix='run `citeqa ask "QUESTION"` or `citeqa ask --batch FILE.jsonl`')
    _show(agent.ask(args.question, docs=args.doc), args.json)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from evals import runner

    if args.compare:
        from evals import llamaindex_recipe

        summaries = llamaindex_recipe.compare(args.set, _config(args))
        if args.json:
            _print_json(summaries)
        else:
            print(llamaindex_recipe.table(summaries))
        return 0
    suite = runner.load_suite(args.set)
    summary, rows = runner.run_suite(suite, _config(args), progress=False if args.json else None)
    if args.report:
        runner.write_report(Path(args.report), summary, rows)
    if args.save_baseline:
        Path(args.save_baseline).write_text(json.dumps(runner.baseline_dict(summary, rows), indent=1) + "\n",
                                            encoding="utf-8")
    if args.json:
        _print_json(summary)
    else:
        for key, value in summary.items():
            if not isinstance(value, (dict, list)):
                print(f"{key:>24}: {value}")
    if args.check:
        failures = runner.check(summary, rows, json.loads(Path(args.check).read_text(encoding="utf-8")))
        for f in failures:
            print(f"REGRESSION {f}", file=sys.stderr)
        if failures:
            return 1
        print(f"eval gate passed against {args.check}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from citeqa import bench

    return bench.main(args)


def cmd_chat(args: argparse.Namespace) -> int:
    import app  # the top-level app.py, installed with the package (py-modules)

    return app.main([f"--{k}={v}" for k, v in (("host", args.host), ("port", args.port)) if v is not None])


def cmd_mcp(args: argparse.Namespace) -> int:
    from citeqa import mcp_server  # imports the mcp SDK, which no other command needs

    mcp_server.serve(_config(args), allow_add=args.allow_add)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="citeqa", description="Ask your documents; every answer cites its span.")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--collection", help="Chroma collection (env CITEQA_COLLECTION, default citeqa)")

    idx = sub.add_parser("index", help="add, list or remove documents").add_subparsers(dest="action", required=True)
    a = idx.add_parser("add", parents=[common], help="index files or folders (.txt .md .html .pdf .docx)")
    a.add_argument("paths", nargs="+")
    a.add_argument("--json", action="store_true", help="print a JSON report as the last line")
    a.set_defaults(func=cmd_index_add)
    ls = idx.add_parser("list", parents=[common], help="list indexed documents")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_index_list)
    rm = idx.add_parser("remove", parents=[common], help="remove one document by doc id")
    rm.add_argument("doc_id")
    rm.set_defaults(func=cmd_index_remove)

    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", help="extractive (default), openai, openai-compatible, local "
                                           "(env CITEQA_BACKEND)")
    backend.add_argument("--min-confidence", type=float, metavar="P",
                         help="say \"I don't know\" when no passage reaches this confidence, 0-1 (env "
                              "CITEQA_MIN_CONFIDENCE; default: the reader's calibrated threshold)")
    ask = sub.add_parser("ask", parents=[common, backend], help="answer a question with citations")
    ask.add_argument("question", nargs="?")
    ask.add_argument("--json", action="store_true", help="print Answer.to_dict() as JSON")
    ask.add_argument("--batch", metavar="FILE", help='one question per line, or {"id", "question", "history"} '
                     'JSON lines; one JSON answer per line')
    ask.add_argument("--doc", action="append", metavar="DOC_ID",
                     help="search only this document (repeatable; ids from `citeqa index list`)")
    ask.set_defaults(func=cmd_ask)

    ev = sub.add_parser("eval", parents=[backend], help="run an eval suite and gate on a baseline")
    ev.add_argument("--set", default="article",
                    help="article, squad-dev, squad-v2, off-index, held-out (training articles held out, for "
                         "choosing), everyday (other genres, evals/everyday), or a .jsonl path")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--report", metavar="PATH", help="write a Markdown report with per-question rows")
    ev.add_argument("--check", metavar="BASELINE.json", help="exit 1 when a metric is worse than the baseline")
    ev.add_argument("--save-baseline", metavar="PATH", help="write this run as the new baseline (make baseline)")
    ev.add_argument("--compare", choices=["llamaindex"], help="also run llama-index's CitationQueryEngine recipe")
    ev.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="measure ingest, retrieval and answer speed")
    b.add_argument("--quick", action="store_true", help="a small run (under 3 minutes on 2 cores)")
    b.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    b.add_argument("--plots", metavar="DIR", help="write PNG plots here (needs matplotlib)")
    b.add_argument("--chroma-server", action="store_true", help="also measure against a `chroma run` server")
    b.add_argument("--embed-url", metavar="URL", help="only measure embedding throughput (texts/s, sentences/s) "
                                                      "against this OpenAI-compatible embeddings server")
    b.set_defaults(func=cmd_bench)

    chat = sub.add_parser("chat", help="the web chat (the same as `python app.py`)")
    chat.add_argument("--host", help="address to bind (default 127.0.0.1; env CITEQA_HOST); others need CITEQA_AUTH")
    chat.add_argument("--port", type=int, help="port (default 7860; env CITEQA_PORT)")
    chat.set_defaults(func=cmd_chat)

    mcp = sub.add_parser("mcp", parents=[common], help="serve the documents to MCP clients over stdio (docs/mcp.md)")
    mcp.add_argument("--allow-add", action="store_true", help="also offer the add tool, which indexes files")
    mcp.set_defaults(func=cmd_mcp)
    return p


def _dash_hint(argv: list[str]) -> None:
    """After argparse refused the arguments: name files whose names start with "-" (taken for options)."""
    dashed = [a for a in argv if a.startswith("-") and a != "--" and Path(a).exists()]
    if dashed:
        print(f"error: {dashed[0]!r} is a file, but its name starts with '-' and was taken for an option. "
              f"Fix: put `--` before the paths: citeqa index add -- {dashed[0]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            _dash_hint(sys.argv[1:] if argv is None else argv)
        raise
    try:
        return int(args.func(args) or 0)
    except CiteqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `citeqa ask --batch q.txt | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
