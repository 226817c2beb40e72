"""`michi docs`: add, list, search, enable/disable and remove documents from the command line.

It works on the same database as the Documents panel (`paths.database_path()`, or under
$MICHI_HOME). It is a command module (`michi_core.console`): `michi_core.cli` mounts its
`register`; it also runs alone as `python -m michi_core.stores.rag.cli docs ...`. Everything
that came from a file (names, titles, passages) is printed through `console.clean`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
import time

from michi_core.console import CliError, clean, open_store, record_id
from michi_core.console import main as run_alone
from michi_core.stores.rag.ingest import Ingestor, IngestProgress, IngestResult, expand_paths
from michi_core.stores.rag.store import FAILED, INDEXED, Document, DocumentStore

log = logging.getLogger(__name__)

PROGRESS_LOG_S = 10.0  # without a terminal, a progress line this often (a big file takes a while)


def cmd_add(args: argparse.Namespace) -> int:
    from michi_core.stores.rag.embedder import default_embedder

    paths = expand_paths(args.files)
    if not paths:
        raise CliError("no supported files found (Michi reads .txt, .md, .pdf, .html, .docx)")
    with open_store(DocumentStore, writing=True) as store:
        results = Ingestor(store, default_embedder()).ingest(paths, on_progress=_Progress(),
                                                             on_result=_print_result)
    return 1 if any(result.status == FAILED for result in results) else 0


def _print_result(result: IngestResult) -> None:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    where = f"#{result.document_id}" if result.document_id is not None else "-"
    details = []
    if result.status == INDEXED:
        details.append(f"{result.chunk_count} chunks")
        if result.page_count:
            details.append(f"{result.page_count} pages")
    if result.message:
        details.append(result.message)
    details.append(f"{result.seconds:.1f} s")
    print(f"{result.status:<9} {where:>5}  {clean(result.path)}  ({clean('; '.join(details))})", flush=True)


class _Progress:
    """Progress on stderr: a line redrawn in place on a terminal, else (a log file, a pipe, a
    service) a plain line every PROGRESS_LOG_S, so a big file never looks hung."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self.last_logged = time.monotonic()

    def __call__(self, progress: IngestProgress) -> None:
        percent = f" {progress.fraction:.0%}" if progress.stage == "embedding" else ""
        line = (f"[{progress.file_index + 1}/{progress.file_count}] {clean(progress.path.name)}: "
                f"{progress.stage}{percent}")
        if self.terminal:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        elif time.monotonic() - self.last_logged >= PROGRESS_LOG_S:
            self.last_logged = time.monotonic()
            print(line, file=sys.stderr, flush=True)


def cmd_list(args: argparse.Namespace) -> int:
    with open_store(DocumentStore, writing=False) as store:
        documents = store.documents()
    if not documents:
        print("no documents yet: add some with `michi docs add FILE...`")
        return 0
    print(f"{'ID':>5}  {'STATUS':<9} {'CHUNKS':>6} {'PAGES':>5}  TITLE")
    for document in documents:
        print(_list_row(document))
    return 0


def _list_row(document: Document) -> str:
    status = document.status if document.enabled else "disabled"
    pages = document.page_count if document.page_count is not None else "-"
    row = f"{document.id:>5}  {status:<9} {document.chunk_count:>6} {pages:>5}  {clean(document.title)}"
    row += f"\n{'':>30}{clean(document.path)}"
    if document.message:
        row += f"\n{'':>30}{clean(document.message)}"
    return row


def cmd_search(args: argparse.Namespace) -> int:
    from michi_core.stores.rag.embedder import default_embedder
    from michi_core.stores.rag.retrieval import Retriever

    with open_store(DocumentStore, writing=False) as store:
        passages = Retriever(store, default_embedder()).search(args.query, limit=args.limit)
    if not passages:
        print("no results (no documents indexed and enabled, or nothing matched)")
    for rank, passage in enumerate(passages, start=1):
        page = f", page {passage.page}" if passage.page else ""
        similarity = f"{passage.similarity:.2f}" if passage.similarity is not None else "-"
        print(f"{rank}. {clean(passage.title)}{page}  (doc #{passage.document_id}, chunk #{passage.chunk_id}, "
              f"cosine {similarity})")
        print(textwrap.indent(textwrap.fill(clean(" ".join(passage.text.split())), 100), "   "))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    missing = []
    with open_store(DocumentStore, writing=True) as store:
        for document_id in args.ids:
            if store.remove(document_id):
                print(f"removed #{document_id}")
            else:
                missing.append(document_id)
    for document_id in missing:
        print(f"no document #{document_id} (see `michi docs list`)", file=sys.stderr)
    return 1 if missing else 0


def cmd_enable(args: argparse.Namespace) -> int:
    with open_store(DocumentStore, writing=True) as store:
        if store.document(args.id) is None:
            print(f"no document #{args.id} (see `michi docs list`)", file=sys.stderr)
            return 1
        store.set_enabled(args.id, args.enabled)
    print(f"{'enabled' if args.enabled else 'disabled'} #{args.id}")
    return 0


def register(commands) -> None:
    """`docs` and its subcommands (see `michi_core.console`)."""
    docs = commands.add_parser("docs", help="documents the assistant can consult (RAG)")
    subcommands = docs.add_subparsers(dest="subcommand", required=True)

    p = subcommands.add_parser("add", help="index files (.txt .md .pdf .html .docx; folders are expanded)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_add)

    p = subcommands.add_parser("list", help="documents with their status and chunk counts")
    p.set_defaults(func=cmd_list)

    p = subcommands.add_parser("search", help="preview what retrieval finds for a question")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("-k", "--limit", type=int, default=5, help="passages to show")
    p.set_defaults(func=cmd_search)

    p = subcommands.add_parser("remove", help="delete documents and everything indexed from them")
    p.add_argument("ids", nargs="+", type=record_id, metavar="ID")
    p.set_defaults(func=cmd_remove)

    for name, enabled, text in (("enable", True, "use a document again"),
                                ("disable", False, "keep a document but stop retrieving from it")):
        p = subcommands.add_parser(name, help=text)
        p.add_argument("id", type=record_id, metavar="ID")
        p.set_defaults(func=cmd_enable, enabled=enabled)


def main(argv: list[str] | None = None) -> int:
    return run_alone(register, "python -m michi_core.stores.rag.cli", argv)


if __name__ == "__main__":
    sys.exit(main())
