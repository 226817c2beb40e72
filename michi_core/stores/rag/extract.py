"""Plain text out of the files a user adds: .txt, .md, .pdf, .html/.htm, .docx.

Extraction works on bytes already read (the ingester reads each file once, so the content hash
and the text always describe the same version). Every way a file can be unusable raises
`ExtractionError` with a message the user can act on; problems that still leave usable text
(a page that would not decode, a legacy encoding) become notes instead.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

TEXT_SUFFIXES = (".txt", ".md", ".markdown")  # read as a stream (see `text_sections`)
SUPPORTED_SUFFIXES = (*TEXT_SUFFIXES, ".pdf", ".html", ".htm", ".docx")
# Text is chunked a section at a time, so memory stays bounded for any length (chunks do not
# straddle sections: an overlap is lost once per MB of text, no more).
SECTION_CHARS = 1 << 20
# A .docx is a zip: cap what its main part may inflate to, so a zip bomb cannot eat the memory.
MAX_DOCX_XML_BYTES = 200 * 1024 * 1024


class ExtractionError(Exception):
    """The file holds no text Michi can index; the message says why and what to do."""


@dataclass
class ExtractedText:
    text: str
    title: str | None = None  # from the file's own metadata, when it has one
    page_starts: list[int] | None = None  # char offset where each page begins (PDF only)
    notes: list[str] = field(default_factory=list)  # things the user should know, file still indexed

    @property
    def page_count(self) -> int | None:
        return len(self.page_starts) if self.page_starts is not None else None


def extract(path: Path, data: bytes) -> ExtractedText:
    """Dispatch on the file extension; the result's text is normalised and never blank."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ExtractionError(
            f"unsupported file type '{suffix or path.name}': Michi reads {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not data:
        raise ExtractionError("the file is empty")
    if suffix == ".pdf":
        result = _extract_pdf(data)
    elif suffix == ".docx":
        result = _extract_docx(data)
    elif suffix in (".html", ".htm"):
        result = _extract_html(data)
    else:
        result = _plain(decode_text(data))
        if suffix in (".md", ".markdown"):
            result.title = markdown_title(result.text)
    if not result.text.strip():
        raise ExtractionError("no text found in the file")
    return result


def normalize(text: str) -> str:
    """One newline style, no NULs or runs of spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, list[str]]:
    """Bytes that should be text -> (text, notes); binary data raises ExtractionError.

    UTF-8 (with or without BOM) and BOM-marked UTF-16 are read as such; anything else that is
    not binary is read as Windows-1252 (a superset of Latin-1, what most legacy Western text
    is) and says so in a note, because a wrong guess shows up as odd characters in results.
    """
    probe = EncodingProbe(declared)
    probe.feed(data)
    encoding, notes = probe.finish()
    return data.decode(encoding), notes


class EncodingProbe:
    """Decides a text file's encoding from its bytes fed block by block (see `decode_text`), so a
    large file is judged without holding it whole."""

    HEAD_BYTES = 65536  # the binary check looks at the start only

    def __init__(self, declared: str | None = None):
        self.head = b""
        self.size = 0
        self.candidates = []  # (encoding, incremental decoder): the ones that still decode
        for encoding in filter(None, (declared, "utf-8-sig", "cp1252")):
            try:
                self.candidates.append((encoding, codecs.getincrementaldecoder(encoding)()))
            except LookupError:
                continue
        self.utf8_error: int | None = None  # offset of the first byte that is not UTF-8

    def feed(self, block: bytes) -> None:
        if len(self.head) < self.HEAD_BYTES:
            self.head += block[: self.HEAD_BYTES - len(self.head)]
        if not self.head.startswith((b"\xff\xfe", b"\xfe\xff")):
            still = []
            for encoding, decoder in self.candidates:
                try:
                    decoder.decode(block)
                    still.append((encoding, decoder))
                except UnicodeDecodeError as error:
                    if encoding == "utf-8-sig" and self.utf8_error is None:
                        self.utf8_error = self.size + error.start
            self.candidates = still
        self.size += len(block)

    def finish(self) -> tuple[str, list[str]]:
        """(encoding, notes) for the whole file; raises ExtractionError for binary or undecodable data."""
        if self.head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "utf-16", []
        head = self.head
        control = sum(1 for byte in head if byte < 32 and byte not in b"\t\n\r\f")
        if b"\x00" in head or control > len(head) // 20:
            raise ExtractionError("this looks like a binary file, not text: check it is the file you meant")
        for encoding, decoder in self.candidates:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                if encoding == "utf-8-sig" and self.utf8_error is None:
                    self.utf8_error = self.size
                continue
            if encoding == "cp1252":
                note = "not UTF-8: read as Windows-1252 (Latin-1); re-save as UTF-8 if characters look wrong"
                return encoding, [note]
            return encoding, []
        raise ExtractionError(
            f"not valid UTF-8 text (bad byte at offset {self.utf8_error}) nor Windows-1252: "
            "re-save the file as UTF-8"
        )


def text_sections(blocks: Iterable[bytes], encoding: str, section_chars: int = SECTION_CHARS) -> Iterator[str]:
    """A plain-text file's normalized text in pieces of about `section_chars`, cut at paragraph
    (else line, else word) boundaries, blank pieces left out: the document's text is these pieces
    joined by blank lines. Memory stays bounded however long the file is."""
    decoder = codecs.getincrementaldecoder(encoding)()
    buffer = ""
    for block in blocks:
        buffer += decoder.decode(block)
        while len(buffer) >= section_chars:
            cut = _section_cut(buffer, section_chars)
            piece, buffer = normalize(buffer[:cut]), buffer[cut:]
            if piece:
                yield piece
    piece = normalize(buffer + decoder.decode(b"", final=True))
    if piece:
        yield piece


def split_sections(text: str, section_chars: int = SECTION_CHARS) -> Iterator[tuple[int, str]]:
    """(offset, piece) of an extracted text cut like `text_sections`, pieces exactly text[offset:...]."""
    offset = 0
    while len(text) - offset > section_chars:
        cut = offset + _section_cut(text[offset : offset + section_chars], section_chars)
        yield offset, text[offset:cut]
        offset = cut
    yield offset, text[offset:]


def _section_cut(buffer: str, section_chars: int) -> int:
    """Where to cut a piece of at most section_chars: the last paragraph break in its second half,
    else the last line break, else the last space, else hard."""
    for separator in ("\n\n", "\n", " "):
        cut = buffer.rfind(separator, section_chars // 2, section_chars)
        if cut > 0:
            return cut
    return section_chars


def markdown_title(text: str) -> str | None:
    """A Markdown document's title: its first line when that is a heading."""
    heading = re.match(r"#\s+(.+)", text)
    return heading.group(1).strip() if heading else None


def _plain(decoded: tuple[str, list[str]]) -> ExtractedText:
    text, notes = decoded
    return ExtractedText(normalize(text), notes=notes)


def _extract_pdf(data: bytes) -> ExtractedText:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("the PDF is password-protected: save an unprotected copy and add that")
        pages = reader.pages
        page_count = len(pages)
    except DependencyError as error:
        raise ExtractionError(f"this PDF's encryption needs an extra package: {error}") from error
    except ExtractionError:
        raise
    except Exception as error:  # pypdf raises many types on damaged files
        kind = "damaged or not a PDF" if isinstance(error, PdfReadError) else "could not be read as a PDF"
        raise ExtractionError(f"{kind} ({error}): try re-exporting it") from error

    texts, notes, unreadable = [], [], []
    for number in range(page_count):
        try:
            texts.append(normalize(pages[number].extract_text() or ""))
        except Exception:  # one broken page should not lose the others
            texts.append("")
            unreadable.append(number + 1)
    if unreadable:
        notes.append(f"could not read text on page(s) {_ranges(unreadable)}")
    if page_count and not any(texts):
        raise ExtractionError(
            "no text found in the PDF: it seems to be scanned images; run OCR on it first "
            "(e.g. ocrmypdf) and add the result"
        )
    text, page_starts = "", []
    for page_text in texts:
        if text:
            text += "\n\n"
        page_starts.append(len(text))
        text += page_text
    try:
        title = str((reader.metadata or {}).get("/Title") or "").strip() or None
    except Exception:  # damaged metadata is no reason to refuse readable pages
        title = None
    return ExtractedText(text, title=title, page_starts=page_starts, notes=notes)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts = []
    start = previous = numbers[0]
    for current in numbers[1:] + [None]:
        if current is not None and current == previous + 1:
            previous = current
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = current
    return ", ".join(parts)


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with line breaks where blocks end."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg"})
    _BLOCK = frozenset({
        "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
        "header", "footer", "blockquote", "pre", "table", "ul", "ol", "dd", "dt", "hr",
    })

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skipping:
            self.parts.append(data)


def _extract_html(data: bytes) -> ExtractedText:
    charset = re.search(rb"""<meta[^>]+charset=["']?([\w-]+)""", data[:4096], re.IGNORECASE)
    text, notes = decode_text(data, declared=charset.group(1).decode("ascii") if charset else None)
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    title = " ".join("".join(parser.title_parts).split()) or None
    # HTML whitespace inside a block is not a line break.
    body = "".join(re.sub(r"\s+", " ", part) if part.strip() else part for part in parser.parts)
    return ExtractedText(normalize(body), title=title, notes=notes)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"


def _extract_docx(data: bytes) -> ExtractedText:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        info = archive.getinfo("word/document.xml")
    except (zipfile.BadZipFile, KeyError) as error:
        raise ExtractionError("not a valid .docx file (damaged, or another format renamed): "
                              "re-save it from Word or LibreOffice") from error
    if info.file_size > MAX_DOCX_XML_BYTES:
        raise ExtractionError(f"the .docx text part inflates to {info.file_size / 2**20:.0f} MB; "
                              f"Michi reads up to {MAX_DOCX_XML_BYTES / 2**20:.0f} MB")
    try:
        root = ElementTree.fromstring(archive.read(info))
    except (ElementTree.ParseError, zipfile.BadZipFile, OSError) as error:
        raise ExtractionError(f"the .docx is damaged ({error}): re-save it") from error
    paragraphs = []
    for paragraph in root.iter(f"{_W}p"):
        pieces = []
        for node in paragraph.iter():
            if node.tag == f"{_W}t" and node.text:
                pieces.append(node.text)
            elif node.tag == f"{_W}tab":
                pieces.append("\t")
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                pieces.append("\n")
        paragraphs.append("".join(pieces))
    title = None
    if "docProps/core.xml" in archive.namelist():
        try:
            node = ElementTree.fromstring(archive.read("docProps/core.xml")).find(_DC_TITLE)
            title = node.text.strip() if node is not None and node.text and node.text.strip() else None
        except ElementTree.ParseError:
            title = None
    return ExtractedText(normalize("\n\n".join(paragraphs)), title=title)
