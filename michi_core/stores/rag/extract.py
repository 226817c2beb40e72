"""Plain text out of the files a user adds: .txt, .md, .pdf, .html/.htm, .docx.

Extraction works on bytes already read (the ingester reads each file once, so the content hash
and the text always describe the same version). Every way a file can be unusable raises
`ExtractionError` with a message the user can act on; problems that still leave usable text
(a page that would not decode, a legacy encoding) become notes instead.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".html", ".htm", ".docx")
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
            heading = re.match(r"#\s+(.+)", result.text)
            result.title = heading.group(1).strip() if heading else None
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
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), []
    head = data[:65536]
    control = sum(1 for byte in head if byte < 32 and byte not in b"\t\n\r\f")
    if b"\x00" in head or control > len(head) // 20:
        raise ExtractionError("this looks like a binary file, not text: check it is the file you meant")
    for encoding in filter(None, (declared, "utf-8-sig")):
        try:
            return data.decode(encoding), []
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as error:
        raise ExtractionError(
            f"not valid UTF-8 text (bad byte at offset {error.start}) nor Windows-1252: "
            "re-save the file as UTF-8"
        ) from error
    return text, ["not UTF-8: read as Windows-1252 (Latin-1); re-save as UTF-8 if characters look wrong"]


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
